"""Start, reuse, stop and status against real MLflow servers (lifecycle/start.py, stop.py,
status.py): recover, refuse bad input."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys

import psutil
import pytest
from conftest import free_port, python, rest, serve_processes, wait_for

import mlflow_magic
from mlflow_magic.errors import (
    ConfigError,
    ConnectError,
    PortInUseError,
    SettingsMismatchError,
    StartFailedError,
    StartTimeoutError,
)
from mlflow_magic.results import Launched, Reused
from mlflow_magic.settings import config
from mlflow_magic.settings.config import resolve
from mlflow_magic.settings.options import ServerOptions
from mlflow_magic.state import processes, records


def tree_pids(pid: int) -> set[int]:
    proc = psutil.Process(pid)
    return {proc.pid, *(c.pid for c in proc.children(recursive=True))}


@pytest.mark.integration
def test_start_log_and_find_the_run(folder, clean_tracking_env):
    result = mlflow_magic.start(folder)
    assert isinstance(result, Launched)
    server = result.server
    assert os.environ["MLFLOW_TRACKING_URI"] == server.url
    assert (folder / "mlflow.db").is_file()

    # A training script that only inherits the environment, like `!python train.py`.
    done = python("""
        import mlflow
        mlflow.set_experiment("demo")
        with mlflow.start_run(run_name="first") as run:
            mlflow.log_params({"alpha": 0.5, "l1_ratio": 0.1})
            for step in range(3):
                mlflow.log_metric("rmse", 1.0 / (step + 1), step=step)
            mlflow.log_text("hello", "notes/hello.txt")
        print(run.info.run_id)
    """)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]

    run = rest(server.url, f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {
        "alpha": "0.5", "l1_ratio": "0.1"}
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"rmse": 1.0 / 3}
    stored = list(folder.glob(f"artifacts/*/{run_id}/artifacts/notes/hello.txt"))
    assert [p.read_text() for p in stored] == ["hello"]
    assert records.read_record(folder).pid == server.pid


def test_reuse_from_another_process(shared_server):
    done = python(f"""
        import mlflow_magic, os
        r = mlflow_magic.start({shared_server.data_dir!r})
        print(type(r).__name__, r.server.pid, os.environ["MLFLOW_TRACKING_URI"])
        print(r)
    """)
    assert done.returncode == 0, done.stderr
    kind, pid, uri = done.stdout.split("\n")[0].split()
    assert (kind, int(pid), uri) == ("Reused", shared_server.pid, shared_server.url)
    assert f"Reusing MLflow server at {shared_server.url} (pid {shared_server.pid}" in done.stdout


def test_reuse_does_not_import_mlflow(shared_server):
    done = python(f"""
        import sys, mlflow_magic
        mlflow_magic.start({shared_server.data_dir!r})
        print("mlflow" in sys.modules)
    """)
    assert done.stdout.strip() == "False", done.stderr


def test_reuse_updates_an_imported_mlflow(shared_server, clean_tracking_env):
    import mlflow

    result = mlflow_magic.start(shared_server.data_dir)
    assert isinstance(result, Reused)
    assert mlflow.get_tracking_uri() == shared_server.url


@pytest.mark.integration
def test_stop_leaves_no_process_and_frees_the_port(folder):
    server = mlflow_magic.start(folder, use=False, jobs=True).server
    wait_for(lambda: len(tree_pids(server.pid)) > 1, timeout=60)  # the job runner is up
    pids = tree_pids(server.pid)
    stopped = mlflow_magic.stop(folder)
    assert stopped.server is not None and stopped.server.pid == server.pid
    assert not [p for p in pids if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert processes.port_is_free("127.0.0.1", server.port)
    assert records.read_record(folder) is None
    assert "No MLflow server is running" in str(mlflow_magic.stop(folder))
    assert mlflow_magic.status(folder).state == "stopped"


@pytest.mark.integration
def test_stale_record_with_a_reused_pid_never_kills_that_process(folder):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    records.prepare_folder(folder)
    try:
        record = records.ServerRecord(
            data_dir=str(folder), pid=bystander.pid, create_time=1.0, host="127.0.0.1",
            port=free_port(), url="http://127.0.0.1:1", started_at=0.0, mlflow_version="x",
            settings={}, command=[], log_path="")
        records.write_record(record)
        assert mlflow_magic.status(folder).state == "crashed"
        assert mlflow_magic.stop(folder).server is None
        records.write_record(record)
        assert isinstance(mlflow_magic.start(folder, use=False), Launched)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_settings_mismatch_is_reported_not_reused(shared_server, tmp_path):
    with pytest.raises(SettingsMismatchError) as info:
        mlflow_magic.start(shared_server.data_dir, use=False,
                           artifacts_destination=str(tmp_path / "other"))
    assert "--artifacts-destination" in str(info.value)
    assert "restart" in str(info.value)
    assert records.read_record(shared_server.data_dir).pid == shared_server.pid


@pytest.mark.integration
def test_auto_port_skips_a_busy_port(folder):
    probe = processes.listen_on_first_free("127.0.0.1", config.first_port())
    first_free = probe.getsockname()[1]
    probe.close()
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", first_free))
        holder.listen()
        server = mlflow_magic.start(folder, use=False).server
    assert server.port > first_free


def test_port_held_by_a_foreign_process(folder):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"Port {port} .* not an MLflow server"):
            mlflow_magic.start(folder, use=False, port=port)
    assert not serve_processes(str(folder))


def test_port_held_by_another_mlflow_server(folder, shared_server):
    with pytest.raises(PortInUseError, match="connect"):
        mlflow_magic.start(folder, use=False, port=shared_server.port)


@pytest.mark.integration
def test_crash_during_start_shows_exit_code_and_log(folder):
    with pytest.raises(StartFailedError) as info:
        mlflow_magic.start(folder, use=False, extra_args=("--no-such-flag",))
    assert info.value.exit_code == 2
    assert "exited with code 2" in str(info.value)
    assert "No such option '--no-such-flag'" in info.value.log_tail
    assert "after `--`" in str(info.value)
    assert not serve_processes(str(folder))
    assert records.read_record(folder) is None


@pytest.mark.integration
def test_unreachable_database_fails_at_once_with_a_hint(folder):
    """MLflow would retry the database for minutes; the start stops at the first refusal its
    log shows, within the timeout (a time-out is another message), with that one line."""
    port = free_port()  # nothing listens there
    with pytest.raises(StartFailedError) as info:
        mlflow_magic.start(folder, use=False, timeout=60,
                           backend_store_uri=f"postgresql://nobody:pw@127.0.0.1:{port}/db")
    message = str(info.value)
    assert not isinstance(info.value, StartTimeoutError)
    assert "cannot reach its database, so it was stopped" in message
    assert "does not accept connections" in message
    assert "Connection refused" in info.value.log_tail
    assert ":pw@" not in message
    assert not serve_processes(str(folder))
    assert records.read_record(folder) is None


@pytest.mark.integration
def test_out_of_date_schema_suggests_db_upgrade(folder):
    mlflow_magic.start(folder, use=False)
    mlflow_magic.stop(folder)
    with sqlite3.connect(folder / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")
    with pytest.raises(StartFailedError, match="mlflow db upgrade"):
        mlflow_magic.start(folder, use=False)
    assert not serve_processes(str(folder))


@pytest.mark.integration
def test_status_list_logs_and_stop_all(folder, tmp_path, monkeypatch):
    # Its own list of known servers, so `stop --all` leaves the session's shared server alone.
    monkeypatch.setenv("MLFLOW_MAGIC_STATE_DIR", str(tmp_path / "state"))
    other = tmp_path / "second"
    try:
        a = mlflow_magic.start(folder, use=False).server
        b = mlflow_magic.start(other, use=False).server
        status = mlflow_magic.status(folder)
        assert status.running and status.server.pid == a.pid
        text = str(status)
        for fact in (a.url, str(a.pid), str(folder), "sqlite:///", "artifacts", "server.log"):
            assert fact in text
        assert a.url in status._repr_html_()
        listed = {s.server.pid for s in mlflow_magic.list_servers().servers}
        assert {a.pid, b.pid} <= listed
        assert "Uvicorn running" in mlflow_magic.logs(folder, lines=50).lines
        stopped = {s.server.pid for s in mlflow_magic.stop(all=True).stopped if s.server}
        assert {a.pid, b.pid} <= stopped
        assert not serve_processes(str(folder)) and not serve_processes(str(other))
        assert mlflow_magic.list_servers().servers == []
    finally:
        mlflow_magic.stop(other)


@pytest.mark.integration
def test_file_store_backend(folder):
    server = mlflow_magic.start(folder, use=False, file_store=True).server
    rest(server.url, "/api/2.0/mlflow/experiments/create", {"name": "in-files"})
    assert (folder / "mlruns").is_dir()


def test_connect_points_the_kernel_at_a_server(shared_server, clean_tracking_env):
    result = mlflow_magic.connect(shared_server.url, registry_uri=shared_server.url)
    assert result.version and shared_server.url in str(result)
    assert os.environ["MLFLOW_TRACKING_URI"] == shared_server.url
    assert os.environ["MLFLOW_REGISTRY_URI"] == shared_server.url


@pytest.mark.integration
def test_connect_to_nothing_is_a_clear_error(clean_tracking_env):
    with pytest.raises(ConnectError, match="No MLflow tracking server answers"):
        mlflow_magic.connect(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectError, match="http"):
        mlflow_magic.connect("postgresql://u:pw@h/db")
    assert "MLFLOW_TRACKING_URI" not in os.environ


@pytest.mark.integration
def test_restart_applies_new_settings(folder):
    first = mlflow_magic.start(folder, use=False).server
    port = free_port()
    second = mlflow_magic.restart(folder, use=False, port=port).server
    assert second.port == port and second.pid != first.pid
    assert not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == "zombie"


def test_start_config_never_creates_anything_on_bad_flags(tmp_path):
    with pytest.raises(ConfigError):
        resolve(ServerOptions(path=tmp_path / "d", port=99999))
    assert not (tmp_path / "d").exists()
