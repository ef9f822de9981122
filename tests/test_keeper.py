"""Always there, nothing when idle (mlflow_magic/keeper/): the folder keeps its port, a
sleeping server wakes on any request, a crash heals itself, a reboot is undone by the next
call. Real servers, real kills, real clients that know nothing of mlflow_magic."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import Kernel, bare_env, logs_a_run, wait_for

import mlflow_magic
from mlflow_magic.security import keys, ownership
from mlflow_magic.state import processes, records

#: Plain MLflow code, as careful training scripts guard their logging: it imports no
#: mlflow_magic (MLflow loads its request hook by itself) and catches ``Exception`` only.
GUARDED_WRITER = """
import json, os, sys, time
import mlflow
from mlflow import MlflowClient

journal, stop = sys.argv[1:3]
client = MlflowClient()
run = client.create_run(client.create_experiment(f"heal-{time.time_ns()}")).info.run_id
with open(journal, "a") as out:
    out.write(json.dumps({"run": run}) + "\\n")
    step = 0
    while not os.path.exists(stop):
        try:
            client.log_metric(run, "loss", 1.0 / (step + 1), step=step)
        except Exception as exc:  # what careful scripts do: log and go on
            out.write(json.dumps({"failed": step, "at": time.time(), "why": str(exc)[:200]})
                      + "\\n")
            out.flush()
            time.sleep(0.2)
            continue
        out.write(json.dumps({"step": step, "at": time.time()}) + "\\n")
        out.flush()
        step += 1
        time.sleep(0.05)
print("WRITER DONE", flush=True)
"""

def journal_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def folder_processes(record) -> list[psutil.Process]:
    return processes.server_processes(record.pid, record.create_time, record.token)


def rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 1e6


def kill_everything(record) -> None:
    """kill -9 of every process of a folder's server, its keeper included: a reboot, with
    the record left behind."""
    procs = folder_processes(record)
    assert any("mlflow_magic.keeper" in " ".join(p.cmdline()) for p in procs)
    for proc in procs:
        proc.kill()
    assert processes.wait_gone(procs, timeout=15) == []
    processes.reap(record.pid)
    # A killed leader shows as a zombie while its other threads still end, holding the
    # listening socket: after a real reboot nothing listens, so wait for that too.
    assert wait_for(lambda: ownership.port_owner(record.port) is None, timeout=15)


class Rival(threading.Thread):
    """Another program that tries to take a port, again and again, until told to stop."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.got, self.tries = port, False, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", self.port))
                    sock.listen()
                    self.got = True
                except OSError:
                    pass
            self.tries += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self.done.set()
        self.join(5)


# --- a crash heals itself ------------------------------------------------------------------


@pytest.mark.integration
def test_a_crash_heals_itself_and_a_guarded_writer_never_dies(folder, tmp_path):
    """kill -9 of the MLflow server five times while a plain-MLflow writer logs, and nobody
    runs `start`: the writer is never ended by an exception, logs again after each kill, and
    every point it was told was stored is there."""
    server = mlflow_magic.start(folder, use=False).server
    journal, stop = tmp_path / "journal.jsonl", tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(GUARDED_WRITER),
                               str(journal), str(stop)], env=bare_env(server.url),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kills = []
    try:
        for _ in range(5):
            since = len([e for e in journal_of(journal) if "step" in e]) if journal.exists() \
                else 0
            wait_for(lambda since=since: journal.exists() and len(
                [e for e in journal_of(journal) if "step" in e]) >= since + 5, timeout=60)
            pid = wait_for(lambda: records.serving_pid(server), timeout=30)
            kills.append(time.time())
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda pid=pid: records.serving_pid(server) not in (None, pid), timeout=60)
        wait_for(lambda: [e for e in journal_of(journal) if e.get("at", 0) > kills[-1]
                          and "step" in e], timeout=60)
    finally:
        stop.write_text("")
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0 and "WRITER DONE" in out, err[-3000:]
    entries = journal_of(journal)
    acknowledged = [e for e in entries if "step" in e]
    for when in kills:  # it logged again after every kill
        assert any(e["at"] > when for e in acknowledged)
    from mlflow import MlflowClient

    history = MlflowClient(server.url).get_metric_history(entries[0]["run"], "loss")
    stored = {int(m.step) for m in history}
    assert {e["step"] for e in acknowledged} <= stored
    state = records.keeper_state(records.read_record(folder))
    assert state is not None and state.restarts == 5 and state.state == "running"
    assert mlflow_magic.status(folder).state == "running"


@pytest.mark.integration
def test_a_server_that_dies_right_after_each_start_is_given_up(folder, monkeypatch):
    """A crash loop (here: the database file replaced by garbage once the server ran) is
    given up after a few tries; status says "crash loop" with the log, no call waits for
    it, and the port is free."""
    server = mlflow_magic.start(folder, use=False).server
    (folder / "mlflow.db").write_bytes(b"not a database at all" * 100)
    os.kill(wait_for(lambda: records.serving_pid(server)), signal.SIGKILL)
    status = wait_for(lambda: (s := mlflow_magic.status(folder)).state == "crash loop" and s,
                      timeout=120)
    assert "given up" in status.detail and "given up" in str(status) and status.log_tail
    assert processes.port_is_free("127.0.0.1", server.port)
    script = subprocess.run([sys.executable, "-c", "import mlflow; mlflow.search_experiments()"],
                            env=bare_env(server.url), capture_output=True, text=True, timeout=120)
    assert script.returncode != 0 and "given up" in script.stderr


# --- a reboot is undone by the next call -------------------------------------------------


@pytest.mark.integration
def test_after_a_reboot_each_folders_next_call_brings_its_server_back(tmp_path):
    folders = [tmp_path / f"folder-{i}" for i in range(3)]
    try:
        servers = [mlflow_magic.start(f, use=False).server for f in folders]
        for record in servers:
            kill_everything(record)
        for folder, record in zip(folders, servers, strict=True):
            assert mlflow_magic.status(folder).state == "crashed"
            done = logs_a_run(record.url, "after-a-reboot", timeout=180)
            assert done.returncode == 0 and "STATUS FINISHED" in done.stdout, done.stderr[-3000:]
            back = records.read_record(folder)
            assert back.port == record.port and back.pid != record.pid
            assert mlflow_magic.status(folder).state == "running"
    finally:
        for folder in folders:
            mlflow_magic.stop(folder)


@pytest.mark.integration
def test_a_stopped_folder_stays_stopped(folder):
    server = mlflow_magic.start(folder, use=False).server
    mlflow_magic.stop(folder)
    script = subprocess.run([sys.executable, "-c", "import mlflow; mlflow.search_experiments()"],
                            env=bare_env(server.url), capture_output=True, text=True, timeout=120)
    assert script.returncode != 0 and "it was stopped" in script.stderr
    assert records.read_record(folder) is None


# --- sleep when idle, wake on any request ------------------------------------------------


def asleep(folder: Path):
    return (s := mlflow_magic.status(folder)).state == "sleeping" and s


@pytest.mark.integration
def test_an_idle_server_sleeps_small_and_any_request_wakes_it(folder):
    server = mlflow_magic.start(folder, use=False, idle_timeout=5).server
    status = wait_for(lambda: asleep(folder), timeout=60, interval=1)
    assert "wakes on the next request" in status.detail
    procs = folder_processes(server)
    assert len(procs) == 1 and rss_mb(procs) <= 25  # the keeper alone
    for _ in range(3):  # status and the panel's polling do not wake it
        assert mlflow_magic.status(folder).state == "sleeping"

    # curl, with the bearer token and no mlflow_magic at all
    key = keys.folder_key(folder)
    curl = subprocess.run(["curl", "-sS", "--max-time", "120", "-H",
                           f"Authorization: Bearer {key}",
                           f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"],
                          capture_output=True, text=True, timeout=150)
    assert curl.returncode == 0 and '"experiments"' in curl.stdout, curl.stdout + curl.stderr
    assert mlflow_magic.status(folder).state == "running"

    # an MLflow call from a kernel
    wait_for(lambda: asleep(folder), timeout=60, interval=1)
    kernel = Kernel({"MLFLOW_TRACKING_URI": server.url})
    try:
        out, errors = kernel.run("import mlflow\nmlflow.set_experiment('woken')\n"
                                 "print(mlflow.get_experiment_by_name('woken').name)")
    finally:
        kernel.close()
    assert errors == [] and "woken" in out

    # stop while asleep frees the port
    wait_for(lambda: asleep(folder), timeout=60, interval=1)
    mlflow_magic.stop(folder)
    assert processes.port_is_free("127.0.0.1", server.port)
    assert processes.wait_gone(procs, timeout=1) == []


@pytest.mark.integration
def test_nobody_takes_the_port_during_a_restart_a_crash_or_a_sleep(folder):
    server = mlflow_magic.start(folder, use=False, idle_timeout=3).server
    rival = Rival(server.port)
    rival.start()
    try:
        again = mlflow_magic.restart(folder, use=False).server  # in place
        assert again.port == server.port
        os.kill(wait_for(lambda: records.serving_pid(again)), signal.SIGKILL)  # a crash
        wait_for(lambda: asleep(folder), timeout=60, interval=1)  # and a sleep
        time.sleep(1)
    finally:
        rival.stop()
    assert rival.tries > 50 and not rival.got
    assert mlflow_magic.status(folder).state == "sleeping"


@pytest.mark.integration
def test_restart_keeps_the_idle_timeout_and_start_refuses_another(folder):
    mlflow_magic.start(folder, use=False, idle_timeout=7200)
    again = mlflow_magic.restart(folder, use=False, workers=1).server
    assert again.idle_timeout == 7200 and again.settings["idle_timeout"] == 7200
    from mlflow_magic.errors import SettingsMismatchError

    with pytest.raises(SettingsMismatchError, match="--idle-timeout"):
        mlflow_magic.start(folder, use=False, idle_timeout=60)


# --- the UI in a browser, asleep and awake ---------------------------------------------------


@pytest.mark.integration
def test_the_ui_wakes_a_sleeping_server_and_an_open_tab_keeps_working(jupyter, page, tmp_path):
    """Through the Jupyter route, in Chromium: the UI of a sleeping server opens (the request
    wakes it); a tab left open for three idle timeouts answers the next click."""
    folder = tmp_path / "ui-sleeps"
    server = mlflow_magic.start(folder, use=False, idle_timeout=5).server
    try:
        from mlflow import MlflowClient

        MlflowClient(server.url).create_experiment("seen-after-sleep")
        wait_for(lambda: asleep(folder), timeout=60, interval=1)
        base, token = jupyter["url"], jupyter["token"]
        route = f"{base}mlflow-magic/proxy/{server.port}/"
        page.goto(f"{route}?token={token}#/experiments", wait_until="domcontentloaded")
        page.get_by_text("seen-after-sleep").first.wait_for(timeout=90_000)
        time.sleep(15)  # three idle timeouts with the tab open
        page.get_by_text("seen-after-sleep").first.click()
        page.wait_for_function("() => /#\\/experiments\\/\\d+/.test(location.hash)",
                               timeout=90_000)
        page.get_by_text("seen-after-sleep").first.wait_for(timeout=90_000)
        body = page.inner_text("body")
        assert "not running" not in body and "Error" not in body[:200]
    finally:
        mlflow_magic.stop(folder)


@pytest.mark.integration
def test_after_a_reboot_the_jupyter_route_brings_the_server_back(jupyter, folder):
    """The UI's first request after a reboot, through the Jupyter route: the folder's server
    comes back on its port, with its settings, and the request is answered."""
    import requests

    server = mlflow_magic.start(folder, use=False, idle_timeout=7200).server
    route = f"{jupyter['url']}mlflow-magic/proxy/{server.port}/api/2.0/mlflow/experiments/search"

    def answered() -> requests.Response | None:
        """The UI's request; the "not running" page a browser reloads every 5 s meanwhile."""
        found = requests.get(route, params={"max_results": 1}, headers=jupyter["auth"],
                             timeout=180)
        if found.status_code == 503 and found.headers.get("Retry-After"):
            time.sleep(int(found.headers["Retry-After"]))
            return None
        return found

    try:
        kill_everything(server)
        found = wait_for(answered, timeout=180)
        assert found.status_code == 200 and "experiments" in found.json(), found.text[:500]
        back = records.read_record(folder)
        assert back.port == server.port and back.pid != server.pid
        assert back.idle_timeout == 7200 and mlflow_magic.status(folder).state == "running"
    finally:
        mlflow_magic.stop(folder)


@pytest.mark.integration
def test_after_a_reboot_a_program_on_the_port_is_named_then_the_route_brings_the_server_back(
        jupyter, folder):
    """Another program of the user's took the port after a reboot: the route shows the
    "not running" page and Jupyter's log names that program; once it lets go, the next
    request brings the folder's server back on its port."""
    import requests

    server = mlflow_magic.start(folder, use=False).server
    route = f"{jupyter['url']}mlflow-magic/proxy/{server.port}/api/2.0/mlflow/experiments/search"
    log = jupyter["root"] / "jupyter.log"
    try:
        kill_everything(server)
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            other.bind(("127.0.0.1", server.port))
            other.listen()
            page = requests.get(route, params={"max_results": 1}, headers=jupyter["auth"],
                                timeout=60)
            assert page.status_code == 503 and "is not running" in page.text, page.text[:300]
            assert wait_for(lambda: f"port {server.port} answers, but not as a server of yours; "
                            f"it is held by pid {os.getpid()}" in log.read_text(), timeout=10)
        found = requests.get(route, params={"max_results": 1}, headers=jupyter["auth"],
                             timeout=180)
        assert found.status_code == 200 and "experiments" in found.json(), found.text[:300]
        assert records.read_record(folder).port == server.port
    finally:
        mlflow_magic.stop(folder)
