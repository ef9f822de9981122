"""Whose server is on a port, and what a request to it carries (mlflow_magic/ports.py).

A machine's list of servers holds stale records: a server killed with -9, by the OOM
killer or by a reboot leaves its record behind, and its port goes to the next server
that starts. A stale record never speaks for a port another of this user's servers
holds now.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import psutil
import pytest
from conftest import free_port, logs_a_run, wait_for

import mlflow_magic
from mlflow_magic.security import ports
from mlflow_magic.state import processes, records
from mlflow_magic.state.records import ServerRecord


def listed_before(tmp_path: Path, name: str, then: str) -> tuple[Path, Path]:
    """Two folder paths the list of known servers reads in this order, so that the first
    one's stale record is met first when a port is looked up."""
    for i in range(1000):
        first, second = tmp_path / f"{name}-{i}", tmp_path / f"{then}-{i}"
        if records.index_entry(first).name < records.index_entry(second).name:
            return first, second
    raise AssertionError("no such pair of names")


def kill_9(record: ServerRecord) -> None:
    """kill -9 every process of a server, as the OOM killer or a reboot would: its record
    stays behind."""
    procs = processes.server_processes(record.pid, record.create_time, record.token)
    assert procs
    for proc in procs:
        proc.kill()
    psutil.wait_procs(procs, timeout=10)
    processes.reap(record.pid)
    wait_for(lambda: processes.port_is_free("127.0.0.1", record.port))


# --- on real servers --------------------------------------------------------------------------


@pytest.mark.integration
def test_a_crashed_servers_record_does_not_lock_the_next_server_on_its_port_out(tmp_path):
    x, y = listed_before(tmp_path, "x", "y")
    try:
        crashed = mlflow_magic.start(x, use=False).server
        kill_9(crashed)
        now = mlflow_magic.start(y, port=crashed.port, use=False).server
        assert now.port == crashed.port
        # The stale record stays, and says what it is; it speaks for nothing.
        assert mlflow_magic.status(x).state == "crashed"
        states = {s.data_dir: s.state for s in mlflow_magic.list_servers().servers}
        assert states[str(x)] == "crashed" and states[str(y)] == "running"
        done = logs_a_run(now.url, "after-a-crash")
        assert done.returncode == 0 and "STATUS FINISHED" in done.stdout, done.stderr[-3000:]
        found = ports.server_on_port(now.port)
        assert found is not None and found.record.data_dir == str(y)
        assert ports.login_query(now.url)  # a browser link for y's own server
    finally:
        mlflow_magic.stop(x)
        mlflow_magic.stop(y)


@pytest.mark.integration
def test_after_a_reboot_other_folders_on_the_old_ports_just_work(tmp_path, jupyter):
    """Three folders' servers killed -9 with their records kept (a reboot), then three other
    folders started on those very ports: a fresh process's MLflow calls, the Jupyter route
    and a push all reach the new servers."""
    pairs = [listed_before(tmp_path / str(i), "before", "after") for i in range(3)]
    old, new = [p[0] for p in pairs], [p[1] for p in pairs]
    try:
        # On ports no other test used: a UI tab or a kernel of an earlier test that still
        # polls its old address would bring back the folder that ran there last (as a user's
        # open tab does after a reboot), and hold the port before the new folder gets it.
        crashed = [mlflow_magic.start(folder, use=False, port=free_port()).server
                   for folder in old]
        for record in crashed:
            kill_9(record)
        servers = [mlflow_magic.start(folder, port=record.port, use=False).server
                   for folder, record in zip(new, crashed, strict=True)]
        for server in servers:
            done = logs_a_run(server.url, "after-a-crash")
            assert done.returncode == 0 and "STATUS FINISHED" in done.stdout, done.stderr[-3000:]
            route = (f"{jupyter['url']}mlflow-magic/proxy/{server.port}/api/2.0/mlflow/"
                     "experiments/get-by-name?experiment_name=after-a-crash")
            request = urllib.request.Request(route, headers=jupyter["auth"])
            with urllib.request.urlopen(request, timeout=30) as resp:
                assert b"after-a-crash" in resp.read()
        pushed = mlflow_magic.push(new[0], to=servers[1].url)
        assert not pushed.nothing and pushed.copied.startswith("1 run"), pushed
        for folder in old:
            assert mlflow_magic.status(folder).state == "crashed"
    finally:
        for folder in old + new:
            mlflow_magic.stop(folder)


# --- the choice among a port's records, as pure logic -------------------------------------------


def record(data_dir: str, port: int = 5077, pid: int = 1) -> ServerRecord:
    return ServerRecord(data_dir=data_dir, pid=pid, create_time=1.0, host="127.0.0.1",
                        port=port, url=f"http://127.0.0.1:{port}", started_at=1.0,
                        mlflow_version="3.17.2", settings={}, command=[], log_path="",
                        private=True)


def test_the_record_whose_server_holds_the_port_wins_over_stale_ones():
    stale, live = record("/stale"), record("/live", pid=2)

    def holds(r: ServerRecord) -> str | None:
        return "its listener" if r is live else None

    for order in ([stale, live], [live, stale]):
        assert ports.choose(order, holds, alive=lambda r: r is live) == (live, "its listener")


def test_a_starting_server_comes_before_a_stale_record_and_a_stale_one_is_last():
    stale, starting = record("/stale"), record("/starting", pid=2)
    assert ports.choose([stale, starting], holds=lambda r: None,
                         alive=lambda r: r is starting) == (starting, None)
    assert ports.choose([stale], holds=lambda r: None, alive=lambda r: False) == (stale, None)
    assert ports.choose([], holds=lambda r: "x", alive=lambda r: True) == (None, None)


def test_records_on_a_port_come_from_every_known_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_MAGIC_STATE_DIR", str(tmp_path / "state"))
    folders = [tmp_path / name for name in ("a", "b", "c")]
    for folder, port in zip(folders, (5077, 5077, 5078), strict=True):
        records.prepare_folder(folder)
        records.write_record(record(str(folder), port=port))
    on_port = ports.records_on(5077)
    assert sorted(Path(r.data_dir).name for r in on_port) == ["a", "b"]
