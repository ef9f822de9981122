"""The lifecycle promises of the README's "Guarantees", each proven on real servers.

Start, reuse, restart and stop do exactly what was asked across processes,
crashes, pauses and shared homes, or say why not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import crash_loop
import psutil
import pytest
from conftest import Kernel, as_host, python, rest, serve_processes, serving, wait_for

import mlflow_magic
from mlflow_magic import contract
from mlflow_magic.errors import ForeignHostError, SettingsMismatchError, UnresponsiveError
from mlflow_magic.lifecycle import diagnosis
from mlflow_magic.results import Launched, Reused
from mlflow_magic.state import processes, records


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.integration
def test_eight_processes_starting_one_fresh_folder_get_one_server(folder):
    code = f"""
        import mlflow_magic
        r = mlflow_magic.start({str(folder)!r}, use=False)
        print(type(r).__name__, r.server.pid, r.url)
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(8)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outs
    kinds = sorted(out.split()[0] for out, _ in outs)
    assert kinds == ["Launched"] + ["Reused"] * 7
    assert len({out.split()[1] for out, _ in outs}) == 1
    assert len({out.split()[2] for out, _ in outs}) == 1
    assert len(serve_processes(str(folder))) == 1


STEPS = 150


def test_eight_writers_lose_no_point(shared_server):
    writer = f"""
        import mlflow, sys
        mlflow.set_experiment("writers")
        with mlflow.start_run() as run:
            for step in range({STEPS}):
                mlflow.log_metric("one_by_one", step, step=step)
            mlflow.MlflowClient().log_batch(run.info.run_id, metrics=[
                mlflow.entities.Metric("batched", float(i), 0, i) for i in range({STEPS})])
        print(run.info.run_id)
    """
    env = {**os.environ, "MLFLOW_TRACKING_URI": shared_server.url}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(writer)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for _ in range(8)]
    outs = [p.communicate(timeout=280) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err[-2000:] for _, err in outs]
    for out, _ in outs:
        run_id = out.split()[-1]
        for key in ("one_by_one", "batched"):
            history = rest(shared_server.url, f"/api/2.0/mlflow/metrics/get-history?run_id="
                                              f"{run_id}&metric_key={key}&max_results=1000")
            assert sorted(m["step"] for m in history["metrics"]) == list(range(STEPS))


@pytest.mark.integration
def test_a_paused_server_is_waited_for_never_replaced(folder):
    server = mlflow_magic.start(folder, use=False).server
    paused = serving(server).pid  # the MLflow server itself (its keeper only holds the port)
    os.kill(paused, signal.SIGSTOP)
    resumer = threading.Timer(6.0, os.kill, (paused, signal.SIGCONT))
    resumer.start()
    phases = []
    try:
        again = mlflow_magic.start(folder, use=False,
                                   on_progress=lambda phase, _: phases.append(phase))
    finally:
        resumer.join()
        os.kill(paused, signal.SIGCONT)
    assert isinstance(again, Reused) and again.server.pid == server.pid
    assert diagnosis.BUSY_PHASE in phases
    assert len(serve_processes(str(folder))) == 1


@pytest.mark.integration
def test_a_server_that_never_answers_is_reported_and_left_running(folder):
    server = mlflow_magic.start(folder, use=False).server
    paused = serving(server).pid
    os.kill(paused, signal.SIGSTOP)
    try:
        with pytest.raises(UnresponsiveError) as info:
            mlflow_magic.start(folder, use=False, timeout=3)
        assert mlflow_magic.status(folder).state == "unresponsive"
    finally:
        os.kill(paused, signal.SIGCONT)
    message = str(info.value)
    assert f"pid {server.pid}" in message and "left running" in message
    assert "restart" in message and "Uvicorn running" in message  # the log tail
    assert mlflow_magic.status(folder).state == "running"
    assert records.read_record(folder).pid == server.pid


@pytest.mark.integration
def test_sigint_to_the_starting_process_group_then_a_new_kernel_reuses(folder):
    """Jupyter's "interrupt kernel" signals the kernel's group; a restarted kernel reuses.

    A real ipykernel, interrupted by jupyter_client as Jupyter does it (SIGINT to the
    kernel's process group): a stand-in ``python -c`` would not do, since a process started
    as a background job of a shell without job control (as CI runs the suite) ignores SIGINT
    for good, while ipykernel turns it back on for each cell.
    """
    kernel = Kernel({})
    try:
        _, errors = kernel.run(textwrap.dedent(f"""
            import mlflow, mlflow_magic
            r = mlflow_magic.start({str(folder)!r})
            mlflow.set_experiment("before-interrupt")
            with mlflow.start_run(run_name="kept"):
                mlflow.log_metric("m", 1.0)
        """))
        assert errors == []
        pid = records.read_record(folder).pid
        msg_id = kernel.kc.execute("import time; print('sleeping', flush=True); time.sleep(120)")
        wait_for(lambda: kernel.printed(msg_id, "sleeping"))  # ipykernel takes SIGINT now
        kernel.km.interrupt_kernel()
        reply = kernel.kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        kernel.close()
    assert mlflow_magic.status(folder).state == "running"
    after = python(f"""
        import mlflow, mlflow_magic
        r = mlflow_magic.start({str(folder)!r})
        runs = mlflow.search_runs(experiment_names=["before-interrupt"], output_format="list")
        print(type(r).__name__, r.server.pid, [x.info.run_name for x in runs])
    """)
    assert after.returncode == 0, after.stderr
    assert after.stdout.split()[:2] == ["Reused", str(pid)]
    assert "'kept'" in after.stdout


@pytest.mark.integration
def test_kill_9_of_the_whole_server_is_reported_then_recovered(folder):
    first = mlflow_magic.start(folder, use=False).server
    rest(first.url, "/api/2.0/mlflow/experiments/create", {"name": "survivor"})
    for proc in processes.server_processes(first.pid, first.create_time, first.token):
        proc.kill()
    wait_for(lambda: gone(first.pid))
    processes.reap(first.pid)
    status = mlflow_magic.status(folder)
    assert status.state == "crashed" and "Uvicorn running" in (status.log_tail or "")
    assert "last lines of its log" in str(status)
    second = mlflow_magic.start(folder, use=False).server
    found = rest(second.url, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=survivor")
    assert found["experiment"]["name"] == "survivor"


@pytest.mark.integration
def test_stop_ends_every_worker_even_after_the_leader_died(folder):
    server = mlflow_magic.start(folder, use=False, workers=2).server
    leader = serving(server)
    workers = wait_for(lambda: [p for p in leader.children()
                                if "spawn_main" in " ".join(p.cmdline())] or None)
    os.kill(server.pid, signal.SIGKILL)  # the keeper and the server's leader, not its workers
    os.kill(leader.pid, signal.SIGKILL)
    wait_for(lambda: gone(server.pid) and gone(leader.pid))
    processes.reap(server.pid)
    assert [w for w in workers if not gone(w.pid)], "the workers should outlive their leader"
    status = mlflow_magic.status(folder)
    assert status.state == "crashed" and "still run" in status.detail
    t0 = time.monotonic()
    stopped = mlflow_magic.stop(folder)
    assert stopped.server is not None
    assert all(gone(w.pid) for w in workers)
    wait_for(lambda: processes.port_is_free("127.0.0.1", server.port), timeout=5)
    assert time.monotonic() - t0 < 15
    assert not serve_processes(str(folder))


@pytest.mark.integration
def test_stop_frees_the_port_and_leaves_no_process(folder):
    server = mlflow_magic.start(folder, use=False, workers=2).server
    procs = processes.server_processes(server.pid, server.create_time, server.token)
    assert len(procs) >= 3  # leader + 2 workers (+ multiprocessing's helper)
    mlflow_magic.stop(folder)
    wait_for(lambda: processes.port_is_free("127.0.0.1", server.port), timeout=5)
    assert all(gone(p.pid) for p in procs)


def test_restart_keeps_every_setting_and_changes_only_what_is_named(folder, postgres, tmp_path):
    password = postgres.split(":")[2].split("@")[0]
    artifacts = tmp_path / "team-artifacts"
    first = mlflow_magic.start(folder, use=False, backend_store_uri=postgres,
                               artifacts_destination=str(artifacts), workers=2,
                               allowed_hosts="hub.example.org",
                               extra_args=("--uvicorn-opts", "--timeout-keep-alive 7")).server
    exp = rest(first.url, "/api/2.0/mlflow/experiments/create", {"name": "on-postgres"})
    before = serving(first).pid

    again = mlflow_magic.restart(folder, use=False).server
    assert serving(again).pid != before and again.port == first.port  # a new server
    for key in ("backend_store_uri", "artifacts_destination", "allowed_hosts", "extra_args"):
        assert again.settings[key] == first.settings[key], key
    assert again.workers == 2
    got = rest(again.url, f"/api/2.0/mlflow/experiments/get?experiment_id={exp['experiment_id']}")
    assert got["experiment"]["name"] == "on-postgres"  # still on PostgreSQL, not SQLite
    assert not (folder / "mlflow.db").exists()
    assert as_host(again.url, "hub.example.org")[0] == 200
    assert "--timeout-keep-alive 7" in " ".join(serving(again).cmdline())

    third = mlflow_magic.restart(folder, use=False, workers=1).server
    assert third.workers == 1
    assert third.settings["backend_store_uri"] == first.settings["backend_store_uri"]
    assert third.settings["artifacts_destination"] == str(artifacts)
    assert as_host(third.url, "hub.example.org")[0] == 200
    shown = [records.record_path(folder).read_text(), str(mlflow_magic.status(folder)),
             " ".join(serving(third).cmdline()), str(mlflow_magic.logs(folder, 200))]
    assert not [text for text in shown if password in text]


@pytest.mark.integration
def test_restart_is_one_critical_section(folder):
    """A restart replaces the server in place (its keeper keeps the port): another kernel
    starting meanwhile waits for the folder's lock or reuses, and never starts a second
    server; it ends on the new one."""
    first = mlflow_magic.start(folder, use=False).server
    before = serving(first).pid
    rival: list[subprocess.Popen] = []

    def on_progress(phase, _):
        if not rival:  # the old server is stopping, the new one not yet up: another kernel
            rival.append(subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(f"""
                    import mlflow_magic
                    from mlflow_magic.state import records
                    taking = records.folder_lock

                    def announced(*args):  # says when it goes for the folder's lock
                        print("waiting", flush=True)
                        return taking(*args)

                    records.folder_lock = announced
                    r = mlflow_magic.start({str(folder)!r}, use=False)
                    print(type(r).__name__, r.server.pid)
                """)], stdout=subprocess.PIPE, text=True))

    second = mlflow_magic.restart(folder, use=False, on_progress=on_progress).server
    out, _ = rival[0].communicate(timeout=120)
    assert out.split()[-2:] == ["Reused", str(second.pid)]
    assert second.pid == first.pid and second.port == first.port  # the same keeper, port
    assert serving(second).pid != before  # a new server
    assert len(serve_processes(str(folder))) == 1


@pytest.mark.integration
def test_attached_server_is_shared_once_another_kernel_reuses_it(folder):
    kernel_a = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import mlflow_magic, sys
            print(mlflow_magic.start({str(folder)!r}, attached=True).server.pid, flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(kernel_a.stdout.readline())
        with pytest.raises(SettingsMismatchError, match="not attached to this process"):
            mlflow_magic.start(folder, use=False, attached=True)
        reused = mlflow_magic.start(folder, use=False)  # kernel B
        assert isinstance(reused, Reused) and reused.server.pid == pid
        assert not reused.server.attached
    finally:
        kernel_a.communicate("\n", timeout=30)  # kernel A exits
    # The server's watcher, which would end it with kernel A, has let it go.
    wait_for(lambda: contract.SHARED_MARKER in mlflow_magic.logs(folder, 50).lines)
    assert not gone(pid)
    assert mlflow_magic.status(folder).state == "running"
    assert records.read_record(folder).pid == pid


@pytest.mark.integration
def test_attached_server_alone_stops_with_its_kernel(folder):
    kernel = python(f"""
        import mlflow_magic
        print(mlflow_magic.start({str(folder)!r}, attached=True).server.pid)
    """)
    assert kernel.returncode == 0, kernel.stderr
    pid = int(kernel.stdout.split()[-1])
    wait_for(lambda: gone(pid), timeout=30)
    assert mlflow_magic.status(folder).state == "crashed"


def foreign_record(folder, server=None) -> records.ServerRecord:
    records.prepare_folder(folder)
    record = records.ServerRecord(
        data_dir=str(folder), pid=os.getpid(), create_time=psutil.Process().create_time(),
        host="127.0.0.1", port=5999, url="http://127.0.0.1:5999", started_at=time.time(),
        mlflow_version="3", settings={}, command=[], log_path="", hostname="gpu-node-7",
        token="x")
    records.write_record(record)
    return record


def test_a_server_of_another_host_is_never_doubled(folder):
    foreign_record(folder)
    with pytest.raises(ForeignHostError, match="gpu-node-7") as info:
        mlflow_magic.start(folder, use=False)
    assert "--force" in str(info.value)
    with pytest.raises(ForeignHostError):
        mlflow_magic.restart(folder, use=False)
    with pytest.raises(ForeignHostError):
        mlflow_magic.stop(folder)
    assert mlflow_magic.status(folder).state == "elsewhere"
    assert not serve_processes(str(folder))
    forgot = mlflow_magic.stop(folder, force=True)
    assert "gpu-node-7" in str(forgot) and records.read_record(folder) is None


@pytest.mark.integration
def test_stop_all_goes_on_past_failures_and_recreates_nothing(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_MAGIC_STATE_DIR", str(tmp_path / "state"))
    running = mlflow_magic.start(folder, use=False).server
    deleted = tmp_path / "deleted"
    foreign_record(deleted)
    import shutil

    shutil.rmtree(deleted)
    elsewhere = tmp_path / "elsewhere"
    foreign_record(elsewhere)
    result = mlflow_magic.stop(all=True)
    assert [s.server.pid for s in result.stopped if s.server] == [running.pid]
    assert [folder_ for folder_, _ in result.failed] == [str(elsewhere)]
    assert "gpu-node-7" in str(result)
    assert not deleted.exists()
    assert not serve_processes(str(folder))


@pytest.mark.integration
def test_a_corrupted_record_means_stale_and_is_replaced(folder):
    records.prepare_folder(folder)
    records.record_path(folder).write_text('{"pid": "not a number", "port": [1]}')
    assert mlflow_magic.status(folder).state == "stopped"
    assert isinstance(mlflow_magic.start(folder, use=False), Launched)
    assert mlflow_magic.status(folder).running


@pytest.mark.integration
def test_restart_of_a_record_without_options_rebuilds_them(folder, tmp_path):
    """A server started by an earlier version kept no options file."""
    first = mlflow_magic.start(folder, use=False, artifacts_destination=str(tmp_path / "a"))
    records.options_path(folder).unlink()
    again = mlflow_magic.restart(folder, use=False).server
    assert again.settings["artifacts_destination"] == str(tmp_path / "a")
    assert again.port == first.server.port


@pytest.mark.integration
def test_restart_with_bad_flags_leaves_the_server_running(folder):
    server = mlflow_magic.start(folder, use=False).server
    with pytest.raises(mlflow_magic.MlflowMagicError, match="--workers"):
        mlflow_magic.restart(folder, use=False, workers=0)
    assert records.read_record(folder).pid == server.pid
    assert mlflow_magic.status(folder).running


def old_database(folder) -> str:
    """An SQLite database as an old MLflow left it, with one experiment in it."""
    import alembic.command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base
    from sqlalchemy import create_engine

    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'mlflow.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)  # MLflow's first schema, migrated up to an old one
    with engine.begin() as conn:
        config = _get_alembic_config(url)
        config.attributes["connection"] = conn
        alembic.command.upgrade(config, "451aebb31d03")  # an MLflow 1.x schema
    engine.dispose()
    with sqlite3.connect(folder / "mlflow.db") as db:
        db.execute("INSERT INTO experiments (experiment_id, name, artifact_location, "
                   "lifecycle_stage) VALUES (1, 'from-mlflow-1', '/tmp/a', 'active')")
    return hashlib.sha256((folder / "mlflow.db").read_bytes()).hexdigest()


@pytest.mark.integration
def test_an_older_database_is_refused_untouched_or_backed_up_and_upgraded(folder):
    digest = old_database(folder)
    with pytest.raises(mlflow_magic.MlflowMagicError, match="--upgrade-db") as info:
        mlflow_magic.start(folder, use=False)
    assert "mlflow db upgrade" in str(info.value) and "left as it is" in str(info.value)
    assert hashlib.sha256((folder / "mlflow.db").read_bytes()).hexdigest() == digest
    assert not serve_processes(str(folder))

    server = mlflow_magic.start(folder, use=False, upgrade_db=True).server
    backups = list(folder.glob("mlflow.db.backup-*"))
    assert [hashlib.sha256(b.read_bytes()).hexdigest() for b in backups] == [digest]
    found = rest(server.url, "/api/2.0/mlflow/experiments/get-by-name?experiment_name="
                             "from-mlflow-1")
    assert found["experiment"]["experiment_id"] == "1"
    assert "--upgrade-db" not in " ".join(server.command)  # an action, not a setting

@pytest.mark.integration
def test_a_record_keeps_what_the_server_inherited(folder, monkeypatch):
    monkeypatch.setenv("MLFLOW_S3_UPLOAD_EXTRA_ARGS", "{}")
    monkeypatch.setenv("MLFLOW_DEFAULT_ARTIFACT_ROOT", "/must/not/leak")
    server = mlflow_magic.start(folder, use=False).server
    assert "MLFLOW_S3_UPLOAD_EXTRA_ARGS" in server.inherited_env
    environ = serving(server).environ()
    assert "MLFLOW_DEFAULT_ARTIFACT_ROOT" not in environ
    assert "MLFLOW_S3_UPLOAD_EXTRA_ARGS" in str(mlflow_magic.status(folder))
    assert dataclasses.asdict(server)["settings"]["default_artifact_root"] is None


@pytest.fixture
def small_disk(tmp_path):
    """A real, tiny file system (tmpfs), unmounted afterwards even if the test fails."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root, as in CI")
    mount = tmp_path / "disk"
    mount.mkdir()

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)

    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount, remount
    finally:
        if (mount / "data").exists():
            mlflow_magic.stop(mount / "data")
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_read_only_folder_is_refused_and_left_intact(small_disk):
    mount, remount = small_disk
    data = mount / "data"
    server = mlflow_magic.start(data, use=False).server
    rest(server.url, "/api/2.0/mlflow/experiments/create", {"name": "kept-safe"})
    mlflow_magic.stop(data)
    remount("ro")
    with pytest.raises(mlflow_magic.MlflowMagicError, match="Read-only file system"):
        mlflow_magic.start(data, use=False)
    assert not serve_processes(str(data))
    remount("rw")
    again = mlflow_magic.start(data, use=False).server
    found = rest(again.url, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=kept-safe")
    assert found["experiment"]["name"] == "kept-safe"


def test_full_disk_is_explained_and_leaves_nothing_running(small_disk):
    mount, remount = small_disk
    data = mount / "data"
    remount("size=600k")
    filler = mount / "filler"
    # Fill it up, then leave a few KB: enough for folders, not for a database.
    with open(filler, "wb", buffering=0) as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 4096)
    filler.write_bytes(filler.read_bytes()[:-24576])
    with pytest.raises(mlflow_magic.MlflowMagicError) as info:
        mlflow_magic.start(data, use=False, timeout=60)
    assert "disk" in str(info.value) and "space" in str(info.value)
    assert not serve_processes(str(data))
    assert records.read_record(data) is None


@pytest.mark.integration
def test_a_crash_loop_loses_no_acknowledged_write(folder):
    """Three writers (log_metric, log_batch, set_tag, log_artifact) while the server is
    killed with -9 eight times and brought back by the next start."""
    outcome = crash_loop.run(folder, cycles=8)
    assert outcome.cycles == 8 and outcome.restarts_ok == 8
    assert outcome.acknowledged > 100, outcome
    assert outcome.lost == [], outcome.lost[:10]
    assert outcome.integrity == "ok"


def test_a_full_disk_in_the_middle_of_writes_is_said_clearly_and_recovered(small_disk):
    mount, _remount = small_disk
    data = mount / "data"
    server = mlflow_magic.start(data, use=False).server
    from mlflow import MlflowClient

    client = MlflowClient(server.url)
    run = client.create_run("0").info.run_id
    acknowledged = []
    filler = mount / "filler"
    with open(filler, "wb", buffering=0) as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 65536)
    t0 = time.monotonic()
    with pytest.raises(Exception, match="is full, so this write was not stored") as info:
        for step in range(10_000):
            client.log_metric(run, "m", float(step), step=step)
            acknowledged.append(step)
        client.log_text(run, "x" * 200_000, "big.txt")
    assert "Free some space on that disk" in str(info.value)
    assert time.monotonic() - t0 < 30  # said at once, not after minutes of retries
    with pytest.raises(Exception, match="is full"):
        client.log_text(run, "x" * 200_000, "big.txt")
    artifacts = data / "artifacts" / "0" / run / "artifacts"
    leftovers = list(artifacts.rglob("*big.txt*")) if artifacts.exists() else []
    assert leftovers == []  # nothing half-written
    filler.unlink()
    client.log_metric(run, "m", -1.0, step=99_999)
    client.log_text(run, "x" * 200_000, "big.txt")
    steps = {int(m.step) for m in client.get_metric_history(run, "m")}
    assert set(acknowledged) | {99_999} <= steps
    assert (artifacts / "big.txt").stat().st_size == 200_000
    with sqlite3.connect(data / "mlflow.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
