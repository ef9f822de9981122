"""Requests against a folder's server, side by side with plain ``mlflow server`` (same flags).

Every figure is a ratio against plain ``mlflow server`` started in the same run with the
same store, artifact and worker flags: a cost that both sides pay never hides. Each request
kind runs in a fresh client process with MLflow's own client (its kept-alive session, the
request-header hook of mlflow_magic included, as a training loop has it), alternating plain
and ours round by round. The Jupyter route and a kernel pass are measured the same way,
against plain MLflow's own port.

Run alone: ``python benchmarks/requests_vs_plain.py [--rounds N] [--postgres]``; ``bench.py``
includes its table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import services  # noqa: E402
from harness import jupyter_server, side_by_side, table, wait_health  # noqa: E402

import mlflow_magic  # noqa: E402
from mlflow_magic import contract  # noqa: E402
from mlflow_magic.state import passes, processes, records  # noqa: E402

#: One client process per measurement: the request kind's median over its calls, in ms.
CLIENT = textwrap.dedent("""
    import http.client, json, os, statistics, sys, time, urllib.parse
    import mlflow, requests
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    url, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    headers = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    times = []

    def timed(call):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)

    if kind == "keep-alive floor":
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        def get():
            conn.request("GET", parts.path + "/version", headers=headers)
            conn.getresponse().read()
        get()
        for _ in range(n):
            timed(get)
    elif kind in ("REST log-metric", "REST search"):
        session = requests.Session()
        session.headers.update(headers)
        api = url + "/api/2.0/mlflow"
        exp = session.post(api + "/experiments/create",
                           json={"name": f"b-{time.time_ns()}"}).json()["experiment_id"]
        run = session.post(api + "/runs/create", json={"experiment_id": exp}).json()
        run_id = run["run"]["info"]["run_id"]
        for i in range(n):
            if kind == "REST log-metric":
                timed(lambda i=i: session.post(api + "/runs/log-metric", json={
                    "run_id": run_id, "key": "m", "value": i, "timestamp": 0, "step": i}
                    ).raise_for_status())
            else:
                timed(lambda: session.post(api + "/runs/search", json={
                    "experiment_ids": [exp], "max_results": 50}).raise_for_status())
    else:
        client = MlflowClient(url)
        exp = client.create_experiment(f"b-{time.time_ns()}")
        run = client.create_run(exp).info.run_id
        if kind == "log_metric":
            for i in range(n):
                timed(lambda i=i: client.log_metric(run, "m", float(i), step=i))
        elif kind == "log_batch of 100":
            for b in range(n):
                timed(lambda b=b: client.log_batch(run, metrics=[
                    Metric("b", float(i), 0, b * 100 + i) for i in range(100)]))
        elif kind == "log_param":
            for i in range(n):
                timed(lambda i=i: client.log_param(run, f"p{i}", i))
        elif kind == "set_tag":
            for i in range(n):
                timed(lambda i=i: client.set_tag(run, f"t{i}", i))
        elif kind == "search_runs over 50 runs":
            for _ in range(49):
                client.create_run(exp)
            for _ in range(n):
                timed(lambda: client.search_runs([exp], max_results=50))
        elif kind == "get_metric_history of 100 points":
            client.log_batch(run, metrics=[Metric("h", float(i), 0, i) for i in range(100)])
            for _ in range(n):
                timed(lambda: client.get_metric_history(run, "h"))
        elif kind in ("artifact upload 10 MB", "artifact download 10 MB"):
            import tempfile
            where = tempfile.mkdtemp()
            path = os.path.join(where, "blob.bin")
            with open(path, "wb") as fh:
                fh.write(os.urandom(10 * 2**20))
            for i in range(n):
                if kind == "artifact upload 10 MB":
                    timed(lambda i=i: client.log_artifact(run, path, f"up{i}"))
                else:
                    client.log_artifact(run, path, "down") if i == 0 else None
                    timed(lambda i=i: client.download_artifacts(
                        run, "down/blob.bin", os.path.join(where, f"d{i}")))
        elif kind == "the UI's first-page burst":
            session = requests.Session()
            api = url + "/ajax-api/2.0/mlflow"
            calls = [("GET", api + "/experiments/search?max_results=25"),
                     ("POST", api + "/experiments/search", {"max_results": 25}),
                     ("GET", api + f"/experiments/get?experiment_id={exp}"),
                     ("POST", api + "/runs/search", {"experiment_ids": [exp],
                                                     "max_results": 100}),
                     ("GET", api + "/registered-models/search?max_results=25"),
                     ("GET", url + "/version")]
            # As the owner's MLflow calls send it (the UI's requests carry a login instead)
            from mlflow_magic.security import ports
            session.headers.update(ports.headers_for_url(url))
            def burst():
                for method, address, *body in calls:
                    session.request(method, address, json=body[0] if body else None
                                    ).raise_for_status()
            for _ in range(n):
                timed(burst)
    print(json.dumps(statistics.median(times)))
""")

#: (request kind, calls per measurement)
KINDS = [("keep-alive floor", 60), ("log_metric", 200), ("log_batch of 100", 50),
         ("log_param", 100), ("set_tag", 100), ("search_runs over 50 runs", 20),
         ("get_metric_history of 100 points", 50), ("artifact upload 10 MB", 5),
         ("artifact download 10 MB", 5), ("the UI's first-page burst", 20)]
#: What is measured through the Jupyter route and a kernel pass.
ROUTE_KINDS = [("keep-alive floor", 60), ("REST log-metric", 100), ("REST search", 30)]


def measure(url: str, kind: str, n: int, headers: dict[str, str] | None = None) -> float:
    """The median of ``n`` requests of ``kind`` from a fresh client process, in ms."""
    done = subprocess.run([sys.executable, "-c", CLIENT, url, kind, str(n),
                           json.dumps(headers or {})],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} against {url} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def plain_server(folder: Path, backend: str) -> Iterator[str]:
    """Plain ``mlflow server`` with the flags a folder's server runs with."""
    port = services.free_port()
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
           backend, "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_health(url, proc)
        yield url
    finally:
        _stop_tree(proc)


def _stop_tree(proc: subprocess.Popen) -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        root = psutil.Process(proc.pid)
        processes.stop_processes([root, *root.children(recursive=True)])
    proc.wait()


def rows(root: Path, rounds: int, postgres_uri: str | None = None) -> list[tuple[str, ...]]:
    """The table: each request kind on SQLite (and PostgreSQL), then through the Jupyter route
    and a kernel pass, each as a ratio against plain ``mlflow server``."""
    out: list[tuple[str, ...]] = []
    stores = [("SQLite", None)] + ([("PostgreSQL", postgres_uri)] if postgres_uri else [])
    for store, uri in stores:
        ours_dir, plain_dir = root / f"ours-{store}", root / f"plain-{store}"
        options = {"backend_store_uri": uri} if uri else {}
        server = mlflow_magic.start(ours_dir, use=False, **options).server
        try:
            with plain_server(plain_dir, uri or f"sqlite:///{plain_dir}/mlflow.db") as plain:
                out += [side_by_side(f"{kind} ({store})", partial(measure, plain, kind, n),
                                     partial(measure, server.url, kind, n), rounds,
                                     _target(kind)) for kind, n in KINDS]
                if store == "SQLite":
                    out += _through_jupyter_and_pass(plain, server, rounds)
        finally:
            mlflow_magic.stop(ours_dir)
    return out


def _target(kind: str) -> str:
    return "<= 1.10x" if kind == "keep-alive floor" else "<= 1.05x"


def _through_jupyter_and_pass(plain: str, server: records.ServerRecord,
                              rounds: int) -> list[tuple[str, ...]]:
    """The same requests through the Jupyter route (a real Jupyter server with
    jupyter-server-proxy) and through a kernel pass, against plain MLflow's own port."""
    jproc, base, token = jupyter_server()
    try:
        route = f"{base}/mlflow-magic/proxy/{server.port}"
        auth = {"Authorization": f"token {token}"}
        token_pass = passes.kernel_pass(records.record_dir(server.data_dir), server.port)
        through_pass = f"{server.url}/{contract.PASS_PATH}/{token_pass}"
        out = []
        for kind, n in ROUTE_KINDS:
            out.append(side_by_side(f"{kind}: the Jupyter route vs plain's port",
                                    partial(measure, plain, kind, n),
                                    partial(measure, route, kind, n, auth), rounds, "report"))
            out.append(side_by_side(f"{kind}: a kernel pass vs plain's port",
                                    partial(measure, plain, kind, n),
                                    partial(measure, through_pass, kind, n), rounds,
                                    _target(kind)))
        return out
    finally:
        _stop_tree(jproc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", action="store_true",
                        help="also on a throwaway PostgreSQL cluster (needs its binaries)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlflow-magic-requests-"))
    os.environ["MLFLOW_MAGIC_STATE_DIR"] = str(root / "state")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        if args.postgres:
            with services.postgres_cluster() as uri:
                found = rows(root, args.rounds, uri)
        else:
            found = rows(root, args.rounds)
        print(table(found, args.markdown))
    finally:
        mlflow_magic.stop(all=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
