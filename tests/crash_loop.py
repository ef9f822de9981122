"""A crash loop: writers log while the server is killed with -9 and brought back by the next
start. Shared by the test (tests/test_lifecycle.py) and the benchmark (benchmarks/bench.py).

Each writer is a real MLflow client in a process of its own. It writes down, in a
journal, every write the server acknowledged (the call returned): ``log_metric``,
``log_batch``, ``set_tag`` and ``log_artifact``. Afterwards every acknowledged write
must be on the server.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow_magic
from mlflow_magic.state import processes, records

WRITER = textwrap.dedent("""
    import json, os, sys, time
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    experiment, journal_path, stop = sys.argv[1:4]
    client = MlflowClient()
    journal = open(journal_path, "a")
    run = None
    while run is None:  # the first call may meet a crash too
        try:
            run = client.create_run(experiment).info.run_id
        except BaseException:  # noqa: B036 - the hook's messages are BaseExceptions
            time.sleep(0.2)
    journal.write(json.dumps({"run": run}) + "\\n")
    step = 0
    while not os.path.exists(stop):
        now = int(time.time() * 1000)
        for kind, call in (
                ("metric", lambda: client.log_metric(run, "m", float(step), step=step)),
                ("batch", lambda: client.log_batch(run, metrics=[
                    Metric("b", float(step), now, step)])),
                ("tag", lambda: client.set_tag(run, f"t{step}", str(step))),
                ("artifact", lambda: client.log_text(run, str(step), f"a/{step}.txt"))):
            try:
                call()
            except BaseException:  # noqa: B036 - not acknowledged: nothing to check
                time.sleep(0.1)
                continue
            journal.write(json.dumps({"kind": kind, "step": step}) + "\\n")
            journal.flush()
        step += 1
""")


@dataclass
class Outcome:
    cycles: int = 0
    restarts_ok: int = 0
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)
    integrity: str = ""


def run(data_dir: Path, cycles: int = 8, writers: int = 3, every: float = 1.5) -> Outcome:
    """The crash loop on ``data_dir``: every ``every`` seconds, kill -9 the whole server (its
    keeper too) and start it again on its port, ``cycles`` times; then check every
    acknowledged write."""
    server = mlflow_magic.start(data_dir, use=False).server
    work = Path(tempfile.mkdtemp(prefix="mlflow-magic-crash-"))
    stop = work / "stop"
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    experiment = _create_experiment(server.url)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, experiment,
                               str(work / f"journal-{i}.jsonl"), str(stop)], env=env)
             for i in range(writers)]
    outcome = Outcome()
    try:
        for _ in range(cycles):
            time.sleep(every)
            record = records.read_record(data_dir)
            procs_of_server = processes.server_processes(record.pid, record.create_time,
                                                       record.token)
            for proc in procs_of_server:
                proc.kill()
            assert processes.wait_gone(procs_of_server, timeout=10) == []
            outcome.cycles += 1
            again = mlflow_magic.start(data_dir, use=False, port=server.port)
            # Back: started here, or already brought back by a writer's next call (the hook
            # starts a server nobody stopped again on its port).
            outcome.restarts_ok += type(again).__name__ in ("Launched", "Reused")
        time.sleep(every)
    finally:
        stop.write_text("")
        for proc in procs:
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    _check(server.url, work, outcome)
    db = sqlite3.connect(f"file:{data_dir / 'mlflow.db'}?mode=ro", uri=True)
    outcome.integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    db.close()
    return outcome


def _create_experiment(url: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient(url).create_experiment(f"crash-loop-{time.time_ns()}")


def _check(url: str, work: Path, outcome: Outcome) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(url)
    for journal in sorted(work.glob("journal-*.jsonl")):
        entries = [json.loads(line) for line in journal.read_text().splitlines()]
        run = entries[0]["run"]
        done = entries[1:]
        outcome.acknowledged += len(done)
        tags = client.get_run(run).data.tags
        metric = {int(m.step) for m in client.get_metric_history(run, "m")}
        batch = {int(m.step) for m in client.get_metric_history(run, "b")}
        artifacts = {a.path for a in client.list_artifacts(run, "a")}
        for entry in done:
            kind, step = entry["kind"], entry["step"]
            present = {"metric": step in metric, "batch": step in batch,
                       "tag": tags.get(f"t{step}") == str(step),
                       "artifact": f"a/{step}.txt" in artifacts}[kind]
            if not present:
                outcome.lost.append(f"{run} {kind} {step}")
