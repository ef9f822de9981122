"""The failure paths of a start, on a stub server that fails in milliseconds.

What MLflow itself prints is checked on real servers elsewhere (test_start,
test_lifecycle); here the manager's side: exit codes, hints, log tails, port
retries, timeouts and interrupts, and that nothing is left running.
"""

from __future__ import annotations

import os

import pytest
from conftest import free_port, stub_at, stubs_running, wait_for

import mlflow_magic
from mlflow_magic.errors import PortInUseError, StartFailedError, StartTimeoutError
from mlflow_magic.lifecycle import launch
from mlflow_magic.state import processes, records


@pytest.fixture(autouse=True)
def nothing_left():
    yield
    assert stubs_running() == []


@pytest.mark.parametrize(("log_line", "hint"), [
    ("Error: No such option: --no-such-flag\nUsage: mlflow server [OPTIONS]",
     "after `--`"),
    ("mlflow_magic: Detected out-of-date database schema (found version a, but expected b).",
     "--upgrade-db"),
    ("sqlite3.OperationalError: database or disk is full", "disk of the data folder is full"),
    ("OSError: [Errno 30] Read-only file system: '/data/mlflow.db'", "writable folder"),
    ("ModuleNotFoundError: No module named 'psycopg2'", "pip install psycopg2"),
    ("psycopg.OperationalError: password authentication failed for user", "user name or "
                                                                          "password"),
    ("something nobody has seen before", "The log below says why"),
])
def test_an_early_exit_names_its_cause(folder, stub, log_line, hint):
    stub(f"exit:3:{log_line}")
    with pytest.raises(StartFailedError) as info:
        mlflow_magic.start(folder, use=False)
    message = str(info.value)
    assert info.value.exit_code == 3 and "exited with code 3" in message
    assert hint in message and log_line.splitlines()[0] in message  # the log tail
    assert records.read_record(folder) is None


def test_no_answer_within_the_timeout_stops_the_server(folder, stub):
    stub("hang")
    with pytest.raises(StartTimeoutError, match=r"did not answer .* within 1 s, so it was "
                                                r"stopped.*--timeout"):
        mlflow_magic.start(folder, use=False, timeout=1)
    assert records.read_record(folder) is None


def test_an_interrupted_start_leaves_nothing(folder, stub):
    stub("hang")

    def interrupt(phase, elapsed):
        if elapsed > 0.3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mlflow_magic.start(folder, use=False, on_progress=interrupt)
    assert records.read_record(folder) is None


def test_a_port_taken_meanwhile_is_retried_on_the_next_one(folder, stub, monkeypatch):
    ports = []
    real = launch._launch_on

    def count(config, port, *rest):
        ports.append(port)
        return real(config, port, *rest)

    monkeypatch.setattr(launch, "_launch_on", count)
    stub("exit:1:OSError: [Errno 98] error while attempting to bind: address already in use")
    with pytest.raises(StartFailedError, match="taken by another process"):
        mlflow_magic.start(folder, use=False)
    assert len(ports) == launch.PORT_RETRIES and len(set(ports)) == launch.PORT_RETRIES
    ports.clear()
    with pytest.raises(StartFailedError):  # a port the user named is not swapped silently
        mlflow_magic.start(folder, use=False, port=free_port())
    assert len(ports) == 1


def test_a_stub_that_answers_is_recorded_and_stopped(folder, stub):
    stub("serve")
    server = mlflow_magic.start(folder, use=False).server
    assert server.mlflow_version == "0.0-stub"
    assert mlflow_magic.status(folder).running
    assert mlflow_magic.stop(folder).server.pid == server.pid


@pytest.mark.integration
def test_connect_explains_a_403(monkeypatch, clean_tracking_env):
    port = free_port()
    with stub_at(port, "forbidden"):
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: not processes.port_is_free("127.0.0.1", port))
        with pytest.raises(mlflow_magic.MlflowMagicError, match="403 Forbidden") as info:
            mlflow_magic.connect(url)
        assert "--allowed-hosts" in str(info.value)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
        with pytest.raises(mlflow_magic.MlflowMagicError, match="'alice' may not read"):
            mlflow_magic.connect(url)
        assert "MLFLOW_TRACKING_URI" not in os.environ


def test_a_port_taken_after_the_first_check_is_refused_before_anything_starts(
        folder, stub, monkeypatch):
    """Another server took ``--port`` between the early check and the start (two users of one
    host starting at once): the start holds the port itself, so it is refused at once, with
    the early check's message, and nothing runs."""
    port = free_port()
    with stub_at(port) as other:
        wait_for(lambda: not processes.port_is_free("127.0.0.1", port))
        monkeypatch.setattr(processes, "port_is_free", lambda host, p: True)  # the race
        stub("serve")
        with pytest.raises(PortInUseError, match=f"Port {port} is already used by an MLflow"):
            mlflow_magic.start(folder, use=False, port=port)
        assert records.read_record(folder) is None
        assert [p.pid for p in stubs_running()] == [other.pid]  # none of ours started
        assert other.poll() is None  # the other server is not ours to stop


def test_a_rival_that_binds_in_the_window_gets_nothing(folder, stub):
    """The port is held from the moment it is chosen: a rival trying to bind it while our
    server starts fails, and our server serves the address shown at once."""
    stub("slow:1.5")
    result = mlflow_magic.start(folder, use=False, wait=False)
    port = int(result.url.rsplit(":", 1)[1])
    rival = processes.listen_on("127.0.0.1", port)
    assert rival is None  # taken: by our start, from the first moment
    final = result.pending.result(60)
    assert final.url == result.url and final.server.port == port
