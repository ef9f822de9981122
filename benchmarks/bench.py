"""Side-by-side benchmark: mlflow_magic versus the plain ``mlflow server`` command.

    .venv/bin/python benchmarks/bench.py [--rounds 3] [--markdown] [--postgres-uri URI]
    .venv/bin/python benchmarks/bench.py --costs-only     # log tail, trace hook: no server
    .venv/bin/python benchmarks/bench.py --writers-only   # 8 writers, 1 vs 4 workers
    .venv/bin/python benchmarks/bench.py --privacy-only   # the folder's key: requests, start
    .venv/bin/python benchmarks/bench.py --cards-only     # the live run card, saved cards
    .venv/bin/python benchmarks/bench.py --daily-only     # parallel starts, slow link, crashes
    .venv/bin/python benchmarks/bench.py --push-only [--export-import VENV/bin]  # push 200 runs
    .venv/bin/python benchmarks/bench.py --sync-only      # --sync-to: logging, lag, idle

Every measurement alternates ours and the plain command in the same run on the
same machine, and reports medians and ratios in one table. Nothing here is a
test: numbers depend on the machine, ratios much less.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

import mlflow_magic
from mlflow_magic.contract import CACHE_DIR_ENV
from mlflow_magic.security import keys, ports
from mlflow_magic.server import newdb
from mlflow_magic.state import processes, records
from mlflow_magic.tracking import environment

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test suite's services and crash loop
import crash_loop  # noqa: E402
import requests_vs_plain  # noqa: E402
import services  # noqa: E402
from harness import jupyter_server, median, table, wait_health  # noqa: E402
from services import free_port  # noqa: E402


def tree_rss_mb(pid: int) -> tuple[float, int]:
    """RSS summed over a process and all its descendants, and how many processes."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20, len(procs)


class Plain:
    """The seeds' command, as users run it today."""

    label = "plain `mlflow server`"

    def __init__(self, data_dir: Path, flags: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir, self.flags, self.env = data_dir, flags or [], env or {}
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> float:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [str(Path(sys.executable).parent / "mlflow"), "server",
               "--backend-store-uri", f"sqlite:///{self.data_dir}/mlflow.db",
               "--default-artifact-root", str(self.data_dir / "artifacts"),
               "--port", str(port), *self.flags]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, env={**os.environ, **self.env})
        wait_health(self.url, self.proc)
        return time.perf_counter() - t0

    def memory(self) -> tuple[float, int]:
        return tree_rss_mb(self.proc.pid)

    def stop(self) -> None:
        root = psutil.Process(self.proc.pid)
        processes.stop_processes([root, *root.children(recursive=True)])
        self.proc.wait()


class Ours:
    """``mlflow_magic.start`` on the same kind of folder."""

    label = "mlflow_magic"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url = ""
        self.pid = 0

    def start(self) -> float:
        t0 = time.perf_counter()
        server = mlflow_magic.start(self.data_dir, use=False).server
        elapsed = time.perf_counter() - t0
        self.url, self.pid = server.url, server.pid
        return elapsed

    def memory(self) -> tuple[float, int]:
        return tree_rss_mb(self.pid)

    def stop(self) -> None:
        mlflow_magic.stop(self.data_dir)


def import_floor() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mlflow.server.fastapi_app"], check=True,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def python_ms(code: str) -> float:
    """Run ``code`` in a new interpreter; it prints a number of milliseconds."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True,
                         capture_output=True, text=True, env=os.environ.copy())
    return float(out.stdout.strip().splitlines()[-1])


def load_ext_ms() -> tuple[float, float]:
    """(%load_ext mlflow_magic, bare IPython start) in ms, in one fresh process each."""
    ext = python_ms("""
        import sys, time
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        t0 = time.perf_counter()
        shell.run_line_magic("load_ext", "mlflow_magic")
        assert "mlflow" not in sys.modules, "load_ext imported mlflow"
        print((time.perf_counter() - t0) * 1000)
    """)
    bare = python_ms("""
        import time
        t0 = time.perf_counter()
        from IPython.core.interactiveshell import InteractiveShell
        InteractiveShell.instance()
        print((time.perf_counter() - t0) * 1000)
    """)
    return ext, bare


def reuse_ms(data_dir: Path) -> tuple[float, float]:
    """Reuse of a running server from a new kernel, and from a bare Python process.

    The kernel is a real ipykernel started with jupyter_client: the cell times
    ``%load_ext mlflow_magic`` plus ``%mlflow_server start`` from inside.
    """
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        code = textwrap.dedent(f"""
            import sys, time
            t0 = time.perf_counter()
            get_ipython().run_line_magic("load_ext", "mlflow_magic")
            get_ipython().run_line_magic("mlflow_server", "start --no-ui --path {data_dir}")
            assert "mlflow" not in sys.modules, "reuse imported mlflow"
            print("MS", (time.perf_counter() - t0) * 1000)
        """)
        out: list[str] = []
        kc.execute_interactive(code, timeout=60, output_hook=lambda msg: out.append(
            msg["content"].get("text", "")))
        magic = float("".join(out).split("MS", 1)[1].split()[0])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    api = python_ms(f"""
        import sys, time
        t0 = time.perf_counter()
        import mlflow_magic
        r = mlflow_magic.start({str(data_dir)!r})
        assert type(r).__name__ == "Reused" and "mlflow" not in sys.modules
        print((time.perf_counter() - t0) * 1000)
    """)
    return magic, api


def first_run_s(data_dir: Path, wait: bool, cache: Path) -> tuple[float, float]:
    """Run All to the first logged run, in a new kernel on a fresh folder: the start cell,
    then ``import mlflow`` and one run with a parameter. (the start cell, the whole) in s;
    kernel start-up is not counted. ``cache`` holds the new-database template, or not."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3",
                              env={**os.environ, CACHE_DIR_ENV: str(cache)})
    flag = " --wait" if wait else ""
    cells = [f"%load_ext mlflow_magic\n%mlflow_server start --no-ui --path {data_dir}{flag}",
             "import mlflow\nwith mlflow.start_run():\n    mlflow.log_param('alpha', 0.5)"]
    try:
        t0 = time.perf_counter()
        ends = []
        for cell in cells:
            reply = kc.execute_interactive(cell, timeout=180, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"cell failed: {reply['content']}")
            ends.append(time.perf_counter() - t0)
        return ends[0], ends[-1]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        mlflow_magic.stop(data_dir)


def first_run_rows(root: Path, rounds: int) -> list[tuple[str, ...]]:
    """The start cell blocking (--wait) vs in the background, alternated each round; on a
    machine that has this MLflow's new-database template (every folder after the first),
    and on one that has none yet (the first folder ever)."""
    cached = root / "cache"
    newdb.template(cached)
    runs: dict[tuple[bool, bool], list[tuple[float, float]]] = {}
    for r in range(rounds):
        for template in (True, False):
            for wait in (True, False):
                cache = cached if template else root / f"first-run-empty-cache-{r}-{wait}"
                folder = root / f"first-run-{r}-{template}-{wait}"
                runs.setdefault((template, wait), []).append(first_run_s(folder, wait, cache))

    def whole(template: bool, wait: bool) -> float:
        return median([t[1] for t in runs[template, wait]])

    cell_b = median([t[0] for t in runs[True, True]])
    cell_g = median([t[0] for t in runs[True, False]])
    rows = []
    for template, name in ((True, "Run All to the first logged run (start cell + import mlflow "
                                  "+ a run), new folder"),
                           (False, "  same, the first folder ever for this MLflow (no "
                                   "new-database template yet)")):
        b, g = whole(template, True), whole(template, False)
        rows.append((name, f"{b:.1f} s (--wait)", "", f"{g:.1f} s", f"{g / b:.2f}x", "",
                     "<= 0.75x"))
    rows.append(("  the start cell alone (with %load_ext)", f"{cell_b:.1f} s (--wait)", "",
                 f"{cell_g * 1000:.0f} ms", "", "", "<= 0.3 s"))
    return rows


def many_folders_ms(root: Path, live: Path, n: int = 50) -> tuple[float, float, float]:
    """(reuse from a new kernel, list, stop --all) in ms with ``n`` more known folders:
    half crashed (a dead pid and no process left), half deleted since."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    template = records.read_record(live)
    for i in range(n):
        folder = root / "many" / f"folder-{i}"
        records.prepare_folder(folder)
        records.write_record(dataclasses.replace(
            template, data_dir=str(folder), pid=dead.pid, token=f"gone-{i}"))
        if i % 2:
            shutil.rmtree(folder)
    reuse = reuse_ms(live)[0]
    t0 = time.perf_counter()
    listed = mlflow_magic.list_servers()
    list_ms = (time.perf_counter() - t0) * 1000
    assert len(listed.servers) == n // 2 + 1, listed
    t0 = time.perf_counter()
    stopped = mlflow_magic.stop(all=True)
    stop_ms = (time.perf_counter() - t0) * 1000
    assert not stopped.failed and not any(records.known_data_dirs())
    return reuse, list_ms, stop_ms


def many_folders_rows(root: Path, rounds: int) -> list[tuple[str, ...]]:
    results = []
    for r in range(rounds):
        live = root / f"many-live-{r}"
        mlflow_magic.start(live, use=False)
        results.append(many_folders_ms(root / f"many-{r}", live))
    reuse, listed, stopped = (median([x[i] for x in results]) for i in range(3))
    return [
        ("reuse from a new kernel, 50 more known folders (half crashed, half deleted)",
         "-", "",
         f"{reuse:.0f} ms", "", "", "<= 100 ms"),
        ("list with those 51 folders", "-", "", f"{listed:.0f} ms", "", "", "<= 1 s"),
        ("stop --all with those 51 folders", "-", "", f"{stopped:.0f} ms", "", "", "<= 1 s"),
    ]


def tile_open_s(root: Path) -> tuple[float, float]:
    """The launcher tile's path: ``mlflow-magic/tile/`` (it reuses or starts the folder's
    server, then redirects to the UI's route) on a fresh folder, cold, then again with the
    server running."""
    data_dir = root / "tile"
    proc, base, token = jupyter_server({"MLFLOW_PATH": str(data_dir)})
    try:
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            req = urllib.request.Request(f"{base}/mlflow-magic/tile/",
                                         headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(req, timeout=180) as resp:
                assert b"MLflow" in resp.read()
            times.append(time.perf_counter() - t0)
        return times[0], times[1]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        mlflow_magic.stop(data_dir)


def start_rows(root: Path, rounds: int) -> list[tuple[str, ...]]:
    """What a user waits for: the first run, many known folders, the launcher tile."""
    tiles = [tile_open_s(root / f"tile-{r}") for r in range(rounds)]
    return [
        *first_run_rows(root, rounds),
        *many_folders_rows(root, rounds),
        ("launcher tile (mlflow-magic/tile/) to MLflow's page, fresh folder", "-", "",
         f"{median([t[0] for t in tiles]):.1f} s", "", "", "report"),
        ("  same, server already running (reused)", "-", "",
         f"{median([t[1] for t in tiles]) * 1000:.0f} ms", "", "", "report"),
    ]


def logging_rates(url: str, n: int = 200) -> tuple[float, float]:
    """Metrics per second: single ``log_metric`` calls, and ``log_batch`` of 100."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    exp = client.create_experiment(f"bench-{time.time_ns()}")
    run = client.create_run(exp).info.run_id
    t0 = time.perf_counter()
    for i in range(n):
        client.log_metric(run, "m", float(i), step=i)
    single = n / (time.perf_counter() - t0)
    batches, per = 10, 100
    t0 = time.perf_counter()
    ts = int(time.time() * 1000)
    for b in range(batches):
        client.log_batch(run, metrics=[Metric("b", float(i), ts, b * per + i)
                                       for i in range(per)])
    batch = batches * per / (time.perf_counter() - t0)
    return single, batch


def rest_latency_ms(url: str, n: int = 50, headers: dict | None = None) -> float:
    """Median latency of a small REST call (as the server's owner: with the folder's key)."""
    times = []
    for _ in range(n):
        req = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search?max_results=5",
                                     headers={**ports.headers_for_url(url), **(headers or {})})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def log_tail_ms(root: Path, size_mb: int = 1024) -> tuple[float, float]:
    """Reading the last 40 lines of a ``size_mb`` log: the whole file (before) vs its end."""
    from mlflow_magic.state import logfile

    log = root / "big.log"
    line = b"INFO:     127.0.0.1:5555 - \"GET /api/2.0/mlflow/experiments/search HTTP/1.1\" 200\n"
    block = line * (1024 * 1024 // len(line))
    with open(log, "wb") as fh:
        for _ in range(size_mb):
            fh.write(block)
    try:
        t0 = time.perf_counter()
        whole = log.read_bytes().decode("utf-8", errors="replace").splitlines()[-40:]
        before = (time.perf_counter() - t0) * 1000
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            end = logfile.tail(log, 40)
            times.append((time.perf_counter() - t0) * 1000)
        assert end.splitlines() == whole
        return before, median(times)
    finally:
        log.unlink()


def trace_hook_us(cells: int = 2000) -> tuple[float, float]:
    """Per-cell cost of a cell that makes no trace: bare IPython vs with the extension."""
    return (python_us_per_cell(cells, load=False), python_us_per_cell(cells, load=True))


def python_us_per_cell(cells: int, load: bool) -> float:
    out = python_ms(f"""
        import time
        from IPython.core.interactiveshell import InteractiveShell
        import mlflow  # imported, as in a tracing notebook: the hook looks at its state
        shell = InteractiveShell.instance()
        if {load}:
            shell.run_line_magic("load_ext", "mlflow_magic")
        for _ in range(50):
            shell.run_cell("x = 1", store_history=False)
        t0 = time.perf_counter()
        for _ in range({cells}):
            shell.run_cell("x = 1", store_history=False)
        print((time.perf_counter() - t0) * 1000)
    """)
    return out * 1000 / cells


def costs_rows(root: Path, rounds: int) -> list[tuple[str, ...]]:
    """Costs that must stay flat as the work grows; no server needed."""
    tails = [log_tail_ms(root) for _ in range(rounds)]
    hooks = [trace_hook_us() for _ in range(rounds)]
    before, after = median([t[0] for t in tails]), median([t[1] for t in tails])
    bare, ours = median([h[0] for h in hooks]), median([h[1] for h in hooks])
    return [
        ("last 40 lines of a 1 GB server log (logs, status, panel)",
         f"{before:.0f} ms (whole file)", f"{after:.2f} ms", f"{after / before:.4f}x",
         "<= 20 ms"),
        ("a cell without a trace, after %load_ext (trace hook)", f"{bare:.0f} us (IPython)",
         f"{ours:.0f} us", f"{ours / bare:.2f}x", "no network call"),
    ]


def gate_call_us(mode: str, n: int = 20000) -> tuple[float, float]:
    """Median and p95 (us) of one request through the ASGI app a worker serves: without the
    gate (``"none"``), with a request that carries the folder's key (``"key"``), or with one
    of the owner's own programs, no key, told by its real loopback connection (``"peer"``),
    or a frame's request through a kernel pass (``"pass"``: the pass checked, MLflow's path
    and headers rewritten, the response made framable): the gate's own cost, no HTTP."""
    import asyncio
    import socket

    from mlflow_magic.contract import KEY_HEADER
    from mlflow_magic.server import gate

    folder = records.prepare_folder(Path(tempfile.mkdtemp()) / "data")
    key = keys.folder_key(folder, create=True)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    statuses = []

    async def sink(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, address = listener.accept()
    served = app if mode == "none" else gate.asgi(app, gate.Gate(records.record_dir(folder),
                                                                 port))
    headers = [(b"host", f"127.0.0.1:{port}".encode()), (b"content-type", b"application/json"),
               (b"user-agent", b"mlflow-python-client/3"), (b"accept", b"*/*")]
    if mode == "key":
        headers.append((KEY_HEADER.lower().encode(), key.encode()))
    path = "/api/2.0/mlflow/runs/log-metric"
    if mode == "pass":
        from mlflow_magic.contract import PASS_PATH
        from mlflow_magic.state import passes

        path = f"/{PASS_PATH}/{passes.kernel_pass(records.record_dir(folder), port)}{path}"
        headers += [(b"origin", b"https://x.vscode-cdn.net"), (b"sec-fetch-site", b"cross-site")]
    scope = {"type": "http", "method": "POST", "path": path,
             "query_string": b"", "server": ("127.0.0.1", port), "client": address,
             "headers": headers}

    async def run() -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await served(scope, None, sink)
            times.append((time.perf_counter() - t0) * 1e6)
        return times

    try:
        times = sorted(asyncio.run(run()))
        assert set(statuses) == {200}, f"the gate refused it: {set(statuses)}"
    finally:
        for sock in (accepted, client, listener):
            sock.close()
        shutil.rmtree(folder.parent, ignore_errors=True)
    return statistics.median(times), times[int(len(times) * 0.95)]


def tcp_sockets() -> int:
    """How many TCP sockets this machine lists (what the owner check reads)."""
    count = 0
    for listing in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(listing) as fh:
            count += sum(1 for _ in fh) - 1
    return count


def http_version_ms(url: str, n: int = 400, key: bool = True) -> tuple[float, float]:
    """Median and p95 (ms) of ``/version`` over one kept-alive connection, as the owner: with
    the key (what MLflow calls send), or without (curl, R: told by the connection)."""
    import requests

    headers = ports.headers_for_url(url) if key else {}
    times = []
    with requests.Session() as session:
        for _ in range(n + 20):
            t0 = time.perf_counter()
            session.get(f"{url}/version", headers=headers, timeout=10).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    times = sorted(times[20:])
    return statistics.median(times), times[int(len(times) * 0.95)]


def hook_us(url: str, n: int = 5000) -> float:
    """What the request hook adds to each MLflow request to a verified server (us)."""
    ports.headers_for_url(url)  # verified once
    t0 = time.perf_counter()
    for _ in range(n):
        ports.headers_for_url(url)
    return (time.perf_counter() - t0) * 1e6 / n


def previous_release_start_s(root: Path, commit: str, rounds: int) -> list[float]:
    """Cold starts of new folders with the code of ``commit`` (a git worktree), for "within
    5% of the previous release"."""
    tree = root / f"release-{commit}"
    subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(tree),
                    commit], check=True, capture_output=True)
    try:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        times = []
        for r in range(rounds):
            code = textwrap.dedent(f"""
                import time, mlflow_magic
                assert mlflow_magic.__file__.startswith({str(tree)!r}), mlflow_magic.__file__
                t0 = time.perf_counter()
                mlflow_magic.start({str(root / f'previous-{r}')!r}, use=False)
                print(time.perf_counter() - t0)
                mlflow_magic.stop({str(root / f'previous-{r}')!r})
            """)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env=env, cwd=tree)
            if out.returncode:
                raise RuntimeError(f"the start of {commit} failed: {out.stderr[-2000:]}")
            times.append(float(out.stdout.split()[-1]))
        return times
    finally:
        subprocess.run(["git", "-C", str(HERE.parent), "worktree", "remove", "--force",
                        str(tree)], capture_output=True)


#: The release before servers were private to their user.
OPEN_RELEASE = "d04d7fe"


def privacy_rows(root: Path, rounds: int) -> list[tuple[str, ...]]:
    """What the folder's key costs: per request (server and client) and per start."""
    ungated = [gate_call_us("none") for _ in range(rounds)]
    gated = [gate_call_us("key") for _ in range(rounds)]
    by_peer = [gate_call_us("peer") for _ in range(rounds)]
    by_pass = [gate_call_us("pass") for _ in range(rounds)]
    private = Ours(root / "private-steady")
    team = mlflow_magic.start(root / "team-steady", use=False, host="0.0.0.0").server
    try:
        private.start()
        http_private = [http_version_ms(private.url) for _ in range(rounds)]
        http_peer = [http_version_ms(private.url, key=False) for _ in range(rounds)]
        http_team = [http_version_ms(team.url) for _ in range(rounds)]
        hook = [hook_us(private.url) for _ in range(rounds)]
    finally:
        private.stop()
        mlflow_magic.stop(root / "team-steady")
    before = previous_release_start_s(root, OPEN_RELEASE, rounds)
    now = []
    for r in range(rounds):
        server = Ours(root / f"private-cold-{r}")
        now.append(server.start())
        server.stop()

    def us(pairs, i):
        return median([p[i] for p in pairs])

    extra = us(gated, 0) - us(ungated, 0)
    extra_p95 = us(gated, 1) - us(ungated, 1)
    return [
        ("the gate per request, in a worker (median / p95)",
         f"{us(ungated, 0):.1f} / {us(ungated, 1):.1f} us (no gate)",
         f"{us(gated, 0):.1f} / {us(gated, 1):.1f} us",
         f"+{extra / 1000:.3f} / +{extra_p95 / 1000:.3f} ms", "<= 0.2 ms"),
        (f"the gate per request, the owner's program without a key (median / p95; "
         f"{tcp_sockets()} TCP sockets listed)",
         f"{us(ungated, 0):.1f} / {us(ungated, 1):.1f} us (no gate)",
         f"{us(by_peer, 0):.1f} / {us(by_peer, 1):.1f} us",
         f"+{(us(by_peer, 0) - us(ungated, 0)) / 1000:.3f} / "
         f"+{(us(by_peer, 1) - us(ungated, 1)) / 1000:.3f} ms", "<= 0.2 ms"),
        ("the gate per request, a VS Code or Colab frame through a kernel pass (median / p95)",
         f"{us(ungated, 0):.1f} / {us(ungated, 1):.1f} us (no gate)",
         f"{us(by_pass, 0):.1f} / {us(by_pass, 1):.1f} us",
         f"+{(us(by_pass, 0) - us(ungated, 0)) / 1000:.3f} / "
         f"+{(us(by_pass, 1) - us(ungated, 1)) / 1000:.3f} ms", "<= 0.2 ms"),
        ("/version over HTTP, the owner's curl (no key) vs an MLflow call (key)",
         f"{us(http_private, 0):.2f} / {us(http_private, 1):.2f} ms (key)",
         f"{us(http_peer, 0):.2f} / {us(http_peer, 1):.2f} ms",
         f"{us(http_peer, 0) / us(http_private, 0):.2f}x", "report"),
        ("/version over HTTP, private vs a team server (median / p95)",
         f"{us(http_team, 0):.2f} / {us(http_team, 1):.2f} ms (no gate)",
         f"{us(http_private, 0):.2f} / {us(http_private, 1):.2f} ms",
         f"{us(http_private, 0) / us(http_team, 0):.2f}x", "report"),
        ("the request hook per MLflow call (key lookup, port check)", "-",
         f"{median(hook):.1f} us", "", "report"),
        (f"cold start, new folder: previous release ({OPEN_RELEASE}) vs private",
         f"{median(before):.2f} s", f"{median(now):.2f} s",
         f"{median(now) / median(before):.2f}x", "<= 1.05x"),
    ]


# --- always there: the keeper's costs and what it saves ------------------------------------

#: The release before the keeper (the server process held its own port).
BEFORE_KEEPER = "ab9390b"


def previous_release_server(root: Path, commit: str, folder: Path) -> subprocess.Popen | None:
    """Start ``folder``'s server with the code of ``commit`` (a git worktree); it keeps
    running detached. Returns nothing to wait for: stop it with that code too."""
    tree = root / f"release-{commit}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(tree),
                        commit], check=True, capture_output=True)
    code = f"import mlflow_magic; print(mlflow_magic.start({str(folder)!r}, use=False).url)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)
    if out.returncode:
        raise RuntimeError(f"the start of {commit} failed: {out.stderr[-2000:]}")
    return None


def remove_worktree(root: Path, commit: str) -> None:
    subprocess.run(["git", "-C", str(HERE.parent), "worktree", "remove", "--force",
                    str(root / f"release-{commit}")], capture_output=True)


def folder_rss_mb(folder: Path) -> float:
    record = records.read_record(folder)
    procs = processes.server_processes(record.pid, record.create_time, record.token)
    return sum(p.memory_info().rss for p in procs) / 1e6


def wait_asleep(folder: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while mlflow_magic.status(folder).state != "sleeping":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{folder} did not fall asleep")
        time.sleep(1)


def first_answer_s(url: str) -> float:
    """One REST read, as the owner: the time to its answer."""
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search?max_results=1",
                                 headers=ports.headers_for_url(url))
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=180) as resp:
        resp.read()
    return time.perf_counter() - t0


def heal_s(url: str, folder: Path) -> float:
    """kill -9 of the MLflow server, then ``log_metric`` until one is acknowledged."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    run = client.create_run(client.create_experiment(f"heal-{time.time_ns()}")).info.run_id
    client.log_metric(run, "m", 0.0)
    os.kill(records.serving_pid(records.read_record(folder)), signal.SIGKILL)
    t0 = time.perf_counter()
    while True:
        try:
            client.log_metric(run, "m", 1.0, step=1)
            return time.perf_counter() - t0
        except Exception:
            time.sleep(0.05)


def always_rows(root: Path, rounds: int) -> list[tuple[str, ...]]:
    """The keeper against the release before it: the hot path, waking against a warm start,
    healing, and the memory of a shared host."""
    ours, theirs = root / "keeper-hot", root / "before-keeper-hot"
    mlflow_magic.start(ours, use=False)
    previous_release_server(root, BEFORE_KEEPER, theirs)
    hot: dict[str, list[tuple[float, float]]] = {"ours": [], "theirs": []}
    try:
        url_ours = records.read_record(ours).url
        url_theirs = records.read_record(theirs).url
        both = [("theirs", url_theirs), ("ours", url_ours)]
        for r in range(2 * rounds):  # alternated: neither side always goes first
            for name, url in both if r % 2 else both[::-1]:
                single, _batch = logging_rates(url)
                hot[name].append((1000 / single, rest_latency_ms(url, n=200)))
        awake_before = folder_rss_mb(theirs)
    finally:
        mlflow_magic.stop(ours)
        code = f"import mlflow_magic; mlflow_magic.stop({str(theirs)!r})"
        subprocess.run([sys.executable, "-c", code], capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(root / f"release-{BEFORE_KEEPER}")})
        remove_worktree(root, BEFORE_KEEPER)

    wakes, warms, heals = [], [], []
    folder = root / "keeper-sleeps"
    for _ in range(rounds):
        url = mlflow_magic.start(folder, use=False, idle_timeout=3).url
        wait_asleep(folder)
        wakes.append(first_answer_s(url))
        heals.append(heal_s(url, folder))
        mlflow_magic.stop(folder)
        t0 = time.perf_counter()
        mlflow_magic.start(folder, use=False, idle_timeout=3)
        warms.append(time.perf_counter() - t0)
        mlflow_magic.stop(folder)

    folders = [root / f"shared-host-{i}" for i in range(10)]
    try:
        for f in folders:
            mlflow_magic.start(f, use=False, idle_timeout=5)
        for f in folders:
            wait_asleep(f)
        asleep = median([folder_rss_mb(f) for f in folders])
        first_answer_s(records.read_record(folders[0]).url)
        awake = folder_rss_mb(folders[0])
    finally:
        for f in folders:
            mlflow_magic.stop(f)
    shared_with = 45 * asleep + 5 * awake
    shared_before = 50 * awake_before

    def med(name: str, i: int) -> float:
        return median([h[i] for h in hot[name]])

    return [
        ("log_metric, one call (ms): before the keeper vs under it",
         f"{med('theirs', 0):.2f} ms", f"{med('ours', 0):.2f} ms",
         f"{med('ours', 0) / med('theirs', 0):.2f}x", "<= 1.02x"),
        ("a REST read (ms): before the keeper vs under it", f"{med('theirs', 1):.2f} ms",
         f"{med('ours', 1):.2f} ms", f"{med('ours', 1) / med('theirs', 1):.2f}x", "<= 1.02x"),
        ("the first request to a sleeping server vs a warm start (existing database)",
         f"{median(warms):.2f} s", f"{median(wakes):.2f} s",
         f"{median(wakes) / median(warms):.2f}x", "<= 1.1x"),
        ("kill -9 of the server to the next acknowledged log_metric (nobody runs start)", "-",
         f"{median(heals):.2f} s", "", "report"),
        ("a folder's memory (RSS): awake (keeper + server) vs asleep (the keeper)",
         f"{awake:.0f} MB", f"{asleep:.1f} MB", f"{asleep / awake:.2f}x", "asleep <= 25 MB"),
        ("a shared host, 50 folders, 5 in use: today (50 servers) vs 45 asleep + 5 awake",
         f"{shared_before / 1000:.1f} GB", f"{shared_with / 1000:.2f} GB",
         f"{shared_with / shared_before:.2f}x", "<= 0.20x"),
    ]


# --- the daily path: parallel starts, big artifacts, slow links, crashes -----------------------


def three_at_once_s(root: Path, round_: int) -> tuple[float, float]:
    """Run All to the first logged run: one kernel on a fresh folder alone, then three
    kernels on three fresh folders at the same moment (time to all three first runs)."""
    import threading

    from jupyter_client.manager import start_new_kernel

    cells = ["%load_ext mlflow_magic\n%mlflow_server start --no-ui --path {}",
             "import mlflow\nwith mlflow.start_run():\n    mlflow.log_param('alpha', 0.5)"]
    kernels = [start_new_kernel(kernel_name="python3") for _ in range(3)]
    folders = [root / f"parallel-{round_}-{i}" for i in range(4)]

    def run_all(kc, folder: Path) -> None:
        for cell in cells:
            reply = kc.execute_interactive(cell.format(folder), timeout=300,
                                           output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"cell failed: {reply['content']}")

    try:
        t0 = time.perf_counter()
        run_all(kernels[0][1], folders[3])
        alone = time.perf_counter() - t0
        mlflow_magic.stop(folders[3])
        threads = [threading.Thread(target=run_all, args=(kc, folder))
                   for (_, kc), folder in zip(kernels, folders[:3], strict=True)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        together = time.perf_counter() - t0
        if len({records.read_record(f).url for f in folders[:3]}) != 3:
            raise RuntimeError("two starts shared a port")
        return alone, together
    finally:
        for km, kc in kernels:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        for folder in folders:
            mlflow_magic.stop(folder)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
#: A remote hub's link: 20 Mbit/s each way, 40 ms.
SLOW_LINK = {"offline": False, "latency": 40, "downloadThroughput": 20e6 / 8,
             "uploadThroughput": 20e6 / 8}


def settled(page, finished: list[int], quiet: float = 2.0, limit: float = 30.0) -> None:
    """Until no response has ended for ``quiet`` seconds: the page's assets are in. (Not
    Playwright's "networkidle": MLflow's UI polls its runs, so the network is never idle.)"""
    end = time.monotonic() + limit
    count, since = len(finished), time.monotonic()
    while time.monotonic() < end and time.monotonic() - since < quiet:
        page.wait_for_timeout(250)
        if len(finished) != count:
            count, since = len(finished), time.monotonic()


def ui_open(browser, login_url: str, runs_url: str, run_name: str) -> list[tuple[float, int, int]]:
    """Open the runs table over the slow link: cold browser cache, then warm. (seconds,
    bytes on the wire, bytes decoded) of each open."""
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    page.goto(login_url)  # the login (Jupyter's token, or a one-time link), not counted
    page.wait_for_load_state("load")  # its cookie is set; MLflow's UI never idles (it polls)
    cdp.send("Network.clearBrowserCache")
    cdp.send("Network.emulateNetworkConditions", SLOW_LINK)
    wire: list[int] = []
    decoded: list[int] = []
    cdp.on("Network.loadingFinished", lambda e: wire.append(int(e["encodedDataLength"])))
    cdp.on("Network.dataReceived", lambda e: decoded.append(int(e["dataLength"])))
    opens = []
    try:
        for _ in range(2):  # cold, then warm
            wire.clear()
            decoded.clear()
            page.goto("about:blank")
            t0 = time.perf_counter()
            page.goto(runs_url)
            page.get_by_text(run_name).first.wait_for(timeout=120_000)
            elapsed = time.perf_counter() - t0
            settled(page, wire)
            opens.append((elapsed, sum(wire), sum(decoded)))
    finally:
        context.close()
    return opens


def ui_rows(root: Path, rounds: int) -> list[tuple[str, ...]]:
    """The runs table over a slow link in Chromium: through the Jupyter route vs MLflow's
    own port, cold and warm browser cache."""
    from playwright.sync_api import sync_playwright

    ours = Ours(root / "ui-steady")
    ours.start()
    from mlflow import MlflowClient

    client = MlflowClient(ours.url)
    experiment = client.create_experiment("slow-link")
    for i in range(20):
        run = client.create_run(experiment, run_name=f"slow-link-run-{i}").info.run_id
        client.log_metric(run, "loss", 1 / (i + 1))
    jproc, base, token = jupyter_server()
    port = int(ours.url.rsplit(":", 1)[1])
    table = f"#/experiments/{experiment}/runs"
    route, direct = [], []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium")
                                         or "/usr/bin/chromium", args=CHROMIUM_FLAGS)
            try:
                via = f"{base}/mlflow-magic/proxy/{port}/"
                ui_open(browser, f"{base}/lab?token={token}", via + table, "slow-link-run-0")
                for _ in range(rounds):  # alternated; the first route open above warmed it
                    route.append(ui_open(browser, f"{base}/lab?token={token}", via + table,
                                         "slow-link-run-0"))
                    direct.append(ui_open(browser, f"{ours.url}/{ports.login_query(ours.url)}",
                                          f"{ours.url}/{table}", "slow-link-run-0"))
            finally:
                browser.close()
    finally:
        os.killpg(jproc.pid, signal.SIGTERM)
        jproc.wait(timeout=30)
        ours.stop()

    def med(opens, which, i):
        return median([o[which][i] for o in opens])

    mb = 2**20
    return [
        ("runs table over 20 Mbit/s, 40 ms, cold cache: MLflow's port vs the Jupyter route",
         f"{med(direct, 0, 0):.1f} s", f"{med(route, 0, 0):.1f} s",
         f"{med(route, 0, 0) / med(direct, 0, 0):.2f}x", "<= 0.70x"),
        ("  bytes on the wire vs decoded (route, cold)",
         f"{med(route, 0, 2) / mb:.1f} MB decoded", f"{med(route, 0, 1) / mb:.1f} MB wire",
         f"{med(route, 0, 1) / med(route, 0, 2):.2f}x", "<= 0.40x"),
        ("  same on MLflow's port (no compression)", f"{med(direct, 0, 2) / mb:.1f} MB decoded",
         f"{med(direct, 0, 1) / mb:.1f} MB wire",
         f"{med(direct, 0, 1) / med(direct, 0, 2):.2f}x", "report"),
        ("  warm cache: bytes of a second open vs the first (route)",
         f"{med(route, 0, 1) / mb:.2f} MB", f"{med(route, 1, 1) / mb:.2f} MB",
         f"{med(route, 1, 1) / med(route, 0, 1):.2f}x", "<= 0.05x"),
    ]


def artifact_rows(root: Path, size_mb: int = 300) -> list[tuple[str, ...]]:
    """A big artifact down and up: MLflow's port vs the Jupyter route, MB/s, Jupyter's RSS."""
    import hashlib
    import threading

    import requests

    ours = Ours(root / "artifact-steady")
    ours.start()
    record = records.read_record(ours.data_dir)
    stored = Path(record.settings["artifacts_destination"]) / "bench" / "big.bin"
    stored.parent.mkdir(parents=True, exist_ok=True)
    with open(stored, "wb") as fh:
        for i in range(size_mb):
            fh.write(hashlib.sha256(str(i).encode()).digest() * (2**20 // 32))
    jproc, base, token = jupyter_server()
    auth = {"Authorization": f"token {token}"}
    key = ports.headers_for_url(ours.url)
    path = "api/2.0/mlflow-artifacts/artifacts/bench/"
    results: dict[str, float] = {}
    peak = [0]

    def sample(stop: threading.Event) -> None:
        proc = psutil.Process(jproc.pid)
        while not stop.wait(0.02):
            peak[0] = max(peak[0], proc.memory_info().rss)

    def body():
        with open(stored, "rb") as fh:
            while chunk := fh.read(2**20):
                yield chunk

    try:
        route = f"{base}/mlflow-magic/proxy/{record.port}/{path}"
        for name, url, headers in (("direct", f"{ours.url}/{path}", key),
                                   ("route", route, auth)):
            before = psutil.Process(jproc.pid).memory_info().rss
            peak[0] = before
            stop = threading.Event()
            sampler = threading.Thread(target=sample, args=(stop,), daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            with requests.get(url + "big.bin", headers=headers, stream=True, timeout=600) as r:
                for _ in r.iter_content(2**20):
                    pass
            results[f"{name} down"] = size_mb / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            requests.put(url + "up.bin", data=body(), headers=headers,
                         timeout=600).raise_for_status()
            results[f"{name} up"] = size_mb / (time.perf_counter() - t0)
            stop.set()
            sampler.join()
            results[f"{name} rss"] = (peak[0] - before) / 2**20
    finally:
        os.killpg(jproc.pid, signal.SIGTERM)
        jproc.wait(timeout=30)
        ours.stop()
    return [
        (f"{size_mb} MB artifact down: MLflow's port vs the Jupyter route (MB/s)",
         f"{results['direct down']:.0f} MB/s", f"{results['route down']:.0f} MB/s",
         f"{results['route down'] / results['direct down']:.2f}x", "report"),
        (f"{size_mb} MB artifact up (MB/s)", f"{results['direct up']:.0f} MB/s",
         f"{results['route up']:.0f} MB/s", f"{results['route up'] / results['direct up']:.2f}x",
         "report"),
        ("  Jupyter's RSS growth, down and up through the route", "-",
         f"{results['route rss']:.1f} MB", "", "<= 64 MB"),
    ]


def crash_loop_rows(root: Path) -> list[tuple[str, ...]]:
    """3 writers while the server is killed -9 and started again, 8 times."""

    t0 = time.perf_counter()
    outcome = crash_loop.run(root / "crash-loop", cycles=8)
    elapsed = time.perf_counter() - t0
    return [("crash loop: 3 writers, kill -9 + start, 8 cycles: acknowledged / lost",
             "-", f"{outcome.acknowledged} / {len(outcome.lost)}",
             f"{outcome.restarts_ok}/{outcome.cycles} restarts, integrity {outcome.integrity}, "
             f"{elapsed:.0f} s", "0 lost")]


def daily_rows(root: Path, rounds: int) -> list[tuple[str, ...]]:
    parallel = [three_at_once_s(root, r) for r in range(rounds)]
    return [
        ("Run All to the first run: one kernel alone vs three at once (all three)",
         f"{median([p[0] for p in parallel]):.1f} s", f"{median([p[1] for p in parallel]):.1f} s",
         f"{median([p[1] for p in parallel]) / median([p[0] for p in parallel]):.2f}x",
         "every first call succeeds"),
        *ui_rows(root, rounds),
        *artifact_rows(root),
        *crash_loop_rows(root),
    ]


LOOP = """
import time, mlflow
t0 = time.perf_counter()
for step in range(2000):
    mlflow.log_metric("loss", 1 / (step + 1), step=step)
print("S", time.perf_counter() - t0)
"""


def card_loop_s(url: str, rounds: int) -> tuple[list[float], list[float]]:
    """A loop of 2,000 ``log_metric`` calls in a real kernel: in a plain ``with
    mlflow.start_run()``, and in ``%%mlflow_run`` with its card redrawn live (alternated)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3",
                              env={**os.environ, "MLFLOW_TRACKING_URI": url})

    def run(code: str) -> float:
        out: list[str] = []
        kc.execute_interactive(code, timeout=600, output_hook=lambda msg: out.append(
            msg["content"].get("text", "")))
        return float("".join(out).split("S ", 1)[1].split()[0])

    plain, card = [], []
    try:
        kc.execute_interactive("%load_ext mlflow_magic\nimport mlflow\n"
                               "mlflow.set_experiment('card-overhead')", timeout=120)
        for _ in range(rounds):
            body = textwrap.indent(LOOP.strip(), "    ")
            plain.append(run(f"with mlflow.start_run():\n{body}"))
            card.append(run(f"%%mlflow_run --name live\n{LOOP.strip()}"))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return plain, card


def saved_cards_kb(root: Path) -> float:
    """The saved size of a notebook with 10 run cards of 5 metrics x 1,000 steps each, run
    headless as a pipeline would (nbclient), without widget state."""
    import nbformat
    from nbclient import NotebookClient

    cell = ("%%mlflow_run --name card-{i}\nimport time, mlflow\nfrom mlflow.entities import "
            "Metric\nrun = mlflow.active_run().info.run_id\nnow = int(time.time() * 1000)\n"
            "for key in ['loss', 'accuracy', 'lr', 'grad_norm', 'val_loss']:\n"
            "    for start in range(0, 1000, 500):\n"
            "        mlflow.MlflowClient().log_batch(run, metrics=[Metric(key, (s * 37 % 101) / "
            "(s + 1), now, s) for s in range(start, start + 500)])")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext mlflow_magic\n%mlflow_server start "
                                          f"--no-ui --path {root / 'cards'}")]
    nb.cells += [nbformat.v4.new_code_cell(cell.format(i=i)) for i in range(10)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    finally:
        mlflow_magic.stop(root / "cards")
    saved = root / "cards.ipynb"
    nbformat.write(nb, saved)
    charts_drawn = sum(str(c.outputs).count("<svg") for c in nb.cells[1:])
    assert charts_drawn == 50, f"{charts_drawn} charts, not 50"
    return saved.stat().st_size / 1024


def card_rows(root: Path, rounds: int) -> list[tuple[str, ...]]:
    """What the live run card costs a training loop, and what ten cards weigh saved."""
    server = Ours(root / "cards-steady")
    server.start()
    try:
        plain, card = card_loop_s(server.url, rounds)
    finally:
        server.stop()
    size = saved_cards_kb(root)
    return [
        ("2,000 log_metric in a loop: plain start_run vs %%mlflow_run, card live",
         f"{median(plain):.2f} s", f"{median(card):.2f} s",
         f"{median(card) / median(plain):.2f}x", "<= 1.05x"),
        ("saved notebook: 10 run cards of 5 metrics x 1,000 steps (50 SVG charts)", "-",
         f"{size:.0f} KB", "", "<= 200 KB"),
    ]


WRITER = """
import os, sys, time
import mlflow
from mlflow import MlflowClient
client = MlflowClient()
run = client.create_run(sys.argv[1]).info.run_id
while not os.path.exists(sys.argv[2]):  # every writer is ready: start together
    time.sleep(0.01)
for step in range(int(sys.argv[3])):
    client.log_metric(run, "m", float(step), step=step)
print(time.time())
"""


def writers_rate(url: str, writers: int = 8, calls: int = 300) -> float:
    """Metrics/s of ``writers`` processes (kernels) logging one metric per call, at once."""
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(url).create_experiment(f"writers-{time.time_ns()}")
    go = Path(tempfile.mkdtemp()) / "go"
    env = {**os.environ, "MLFLOW_TRACKING_URI": url}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, experiment, str(go), str(calls)],
                              stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(writers)]
    time.sleep(15)  # let every writer import mlflow first
    t0 = time.time()
    go.touch()
    ends = [float(p.communicate(timeout=600)[0].split()[-1]) for p in procs]
    return writers * calls / (max(ends) - t0)


def writers_rows(root: Path, postgres_uri: str | None) -> list[tuple[str, ...]]:
    """8 writers through one server: 1 worker vs 4, on SQLite and (if given) PostgreSQL."""
    stores = [("SQLite", None)] + ([("PostgreSQL", postgres_uri)] if postgres_uri else [])
    rows = []
    for name, uri in stores:
        rates = {}
        for workers in (1, 4):
            folder = root / f"writers-{name}-{workers}"
            server = mlflow_magic.start(folder, use=False, workers=workers,
                                        backend_store_uri=uri).server
            try:
                rates[workers] = writers_rate(server.url)
            finally:
                mlflow_magic.stop(folder)
        rows.append((f"8 writers x 300 log_metric, {name} (metrics/s)",
                     f"{rates[1]:.0f} /s (1 worker)", f"{rates[4]:.0f} /s (4 workers)",
                     f"{rates[4] / rates[1]:.2f}x", "report"))
    return rows


def _push_counts(url: str, key: str, experiment: str) -> dict[str, int]:
    """What a server holds of the pushed experiment, read with MLflow's client."""
    from mlflow import MlflowClient

    with environment(MLFLOW_TRACKING_TOKEN=key):
        client = MlflowClient(url)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return {"runs": 0, "points": 0, "artifacts": 0, "models": 0, "traces": 0,
                    "start times kept": 0, "with datasets": 0}
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        points = sum(len(client.get_metric_history(r.info.run_id, k))
                     for r in runs for k in r.data.metrics)
        artifacts = sum(len(client.list_artifacts(r.info.run_id)) for r in runs)
        return {"runs": len(runs), "points": points, "artifacts": artifacts,
                "models": len(client.search_logged_models([exp.experiment_id])),
                "traces": len(client.search_traces(locations=[exp.experiment_id])),
                "start times kept": len({r.info.start_time for r in runs}),
                "with datasets": sum(bool(r.inputs.dataset_inputs) for r in runs)}


def _export_import_s(tool: Path, source: tuple[str, str], target: tuple[str, str],
                     experiment: str, work: Path) -> tuple[float | None, str]:
    """mlflow-export-import's export-experiment then import-experiment, timed; None and the
    reason when it does not run."""
    out = work / "exported"

    def run(cmd: list[str], url: str, key: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_TOKEN": key}
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)

    t0 = time.perf_counter()
    done = run([str(tool / "export-experiment"), "--experiment", experiment,
                "--output-dir", str(out)], *source)
    if done.returncode == 0:
        done = run([str(tool / "import-experiment"), "--experiment-name", experiment,
                    "--input-dir", str(out)], *target)
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["failed"])[-1][:120]
    return time.perf_counter() - t0, ""


def push_rows(root: Path, postgres_uri: str | None, tool: Path | None,
              runs: int = 200, points: int = 500, big_mb: int = 50) -> list[tuple[str, ...]]:
    """A laptop folder (``runs`` runs x 2 metrics x ``points`` points, ``big_mb`` MB of
    artifacts, models, a trace) pushed to a PostgreSQL target, side by side with its floor
    (MLflow's client logging the same runs to the same server): the first push, its copy,
    plan and verification, a second push, artifacts alone; the export-import tool on the
    same data, if given its venv's bin."""
    from mlflow import MlflowClient

    from mlflow_magic.remote import transfer

    with contextlib.ExitStack() as stack:
        if postgres_uri is None:
            postgres_uri = stack.enter_context(services.postgres_cluster())
        laptop, team = root / "push-laptop", root / "push-team"
        source = mlflow_magic.start(laptop, use=False).server
        target = mlflow_magic.start(team, use=False, backend_store_uri=postgres_uri).server
        stack.callback(mlflow_magic.stop, team)
        stack.callback(mlflow_magic.stop, laptop)
        made = subprocess.run([sys.executable, str(HERE.parent / "tests" / "push_data.py"),
                               source.url, "--runs", str(runs), "--points", str(points),
                               "--big-mb", str(big_mb)], capture_output=True, text=True,
                              timeout=3600)
        if made.returncode != 0:
            raise RuntimeError(made.stderr[-2000:])
        src, dst = MlflowClient(source.url), MlflowClient(target.url)
        stack.enter_context(transfer.quiet())
        floor = _logging_floor_s(src, dst, root / "floor")
        t0 = time.perf_counter()
        found = transfer.plan(src, dst)
        planned = time.perf_counter() - t0
        tally = transfer.apply(src, dst, found)
        copied = tally.elapsed
        t1 = time.perf_counter()
        checked = transfer.verify(src, dst)
        verified = time.perf_counter() - t1
        first = planned + copied + verified
        t2 = time.perf_counter()
        again = transfer.plan(src, dst)
        second = time.perf_counter() - t2
        mlflow_magic.push(laptop, to=target.url)  # finds it all there, and remembers it
        t3 = time.perf_counter()
        remembered_push = mlflow_magic.push(laptop, to=target.url)
        remembered = time.perf_counter() - t3
        rows = [
            (f"push {runs} runs x {2 * points:,} points + {big_mb} MB to PostgreSQL: "
             "plan + copy + verify", f"{first:.1f} s",
             f"MLflow's client logging it: {floor:.1f} s", f"{first / floor:.2f}x",
             "<= 1.5x"),
            ("  copy", f"{copied:.1f} s", f"{tally.runs / copied:.1f} runs/s",
             f"{tally.points / copied:,.0f} points/s", f"{tally.bytes / copied / 1e6:.1f} MB/s"),
            ("  plan (read both sides) / verify (compare, sha256 of every artifact)",
             f"{planned:.1f} s", f"{verified:.1f} s",
             f"{len(checked.differences)} differences", ""),
            ("  a second push: plan finds", f"{second:.1f} s",
             "nothing" if again.empty else again.summary(), "", ""),
            ("  a second push, with what the last one found equal (push.json)",
             f"{second:.1f} s (a plan alone)", f"{remembered:.1f} s: "
             + ("nothing to copy" if remembered_push.nothing else "copied"),
             f"{remembered / second:.2f}x", "<= 5 s"),
            _artifact_rate_row(src, dst, root / "files"),
        ]
        experiment = "laptop-experiments"
        ours = _push_counts(target.url, keys.folder_key(team), experiment)
        expected = _push_counts(source.url, keys.folder_key(laptop), experiment)
        if tool is None:
            rows.append(("export-import tool", "not measured (give --export-import BIN)",
                         "", "", ""))
            return rows
        other = root / "push-ei"
        ei_target = mlflow_magic.start(other, use=False).server
        stack.callback(mlflow_magic.stop, other)
        seconds, why = _export_import_s(tool, (source.url, keys.folder_key(laptop)),
                                        (ei_target.url, keys.folder_key(other)),
                                        experiment, root)
        theirs = _push_counts(ei_target.url, keys.folder_key(other), experiment)
        rows.append(("export-experiment + import-experiment, same data",
                     f"{seconds:.1f} s" if seconds else f"failed: {why}",
                     f"push: {copied + verified:.1f} s with verification",
                     f"{(copied + verified) / seconds:.2f}x" if seconds else "", ""))
        for what in expected:
            rows.append((f"  {what}: source / push / export-import", str(expected[what]),
                         str(ours[what]), str(theirs[what]), ""))
        if seconds:
            _export_import_s(tool, (source.url, keys.folder_key(laptop)),
                             (ei_target.url, keys.folder_key(other)), experiment,
                             root / "again")
            twice = _push_counts(ei_target.url, keys.folder_key(other), experiment)
            rows.append(("  runs after importing twice: push / export-import",
                         str(ours["runs"]), str(twice["runs"]), "", ""))
        return rows


def _logging_floor_s(src, dst, where: Path) -> float:
    """The floor of a push: MLflow's own client logging the source's runs to the same
    server, one after another as a script does (``create_run``, ``log_batch`` of 1,000
    entries, ``log_artifacts``, ``set_terminated``), from data read beforehand (not
    timed), into experiments of their own."""
    from mlflow.entities import Param

    from mlflow_magic.remote.transfer import reading

    experiments = list(reading.pages(lambda token: src.search_experiments(
        max_results=reading.PAGE, page_token=token)))
    read = []
    for experiment in experiments:
        runs = reading.runs_of(src, experiment.experiment_id)
        histories = reading.histories(src, runs)
        for run in runs:
            files = where / run.info.run_id
            files.mkdir(parents=True)
            if reading.files_of(src, run):
                src.download_artifacts(run.info.run_id, "", str(files))
            read.append((experiment.name, run, [m for key in run.data.metrics
                                                for m in histories[(run.info.run_id, key)]],
                         files))
    started = time.perf_counter()
    ids = {e.name: dst.create_experiment(f"floor-{e.name}") for e in experiments}
    for experiment, run, points, files in read:
        run_id = dst.create_run(ids[experiment], start_time=run.info.start_time,
                                run_name=run.info.run_name, tags=run.data.tags).info.run_id
        params = [Param(k, v) for k, v in run.data.params.items()]
        room = 1000 - len(params)
        dst.log_batch(run_id, metrics=points[:room], params=params)
        for start in range(room, len(points), 1000):
            dst.log_batch(run_id, metrics=points[start:start + 1000])
        if any(files.iterdir()):
            dst.log_artifacts(run_id, str(files))
        dst.set_terminated(run_id, run.info.status, run.info.end_time)
    elapsed = time.perf_counter() - started
    shutil.rmtree(where, ignore_errors=True)
    return elapsed


def _artifact_rate_row(src, dst, where: Path, files: int = 8, mb: int = 10
                       ) -> tuple[str, ...]:
    """Artifacts alone: a run of ``files`` files of ``mb`` MB pushed (the copy), against
    MLflow's ``log_artifacts`` of the same files to the same server."""
    from mlflow_magic.remote import transfer

    where.mkdir()
    for i in range(files):
        (where / f"shard-{i}.bin").write_bytes(os.urandom(mb * 1_000_000))
    name = "artifact-rate"
    run_id = src.create_run(src.create_experiment(name)).info.run_id
    src.log_artifacts(run_id, str(where))
    src.set_terminated(run_id)
    floor_run = dst.create_run(dst.create_experiment(f"floor-{name}")).info.run_id
    t0 = time.perf_counter()
    dst.log_artifacts(floor_run, str(where))
    floor = time.perf_counter() - t0
    shutil.rmtree(where, ignore_errors=True)
    copied = transfer.apply(src, dst, transfer.plan(src, dst, [name])).elapsed
    total = files * mb
    return (f"  artifacts: {files} files x {mb} MB in one run, copied server to server",
            f"{total / copied:.0f} MB/s", f"log_artifacts: {total / floor:.0f} MB/s",
            f"{copied / floor:.2f}x its time", ">= 20 MB/s")


def sync_rows(root: Path, rounds: int, points: int = 300,
              sizes: tuple[int, ...] = (100, 1000)) -> list[tuple[str, ...]]:
    """``--sync-to``: a training loop's ``log_metric`` with the sync on against off (the
    same loop, alternated), the lag from a point logged to the same point on the team
    server, and what a cycle with nothing new costs on folders of 100 and 1,000 runs (next
    to a second push of the same folder, which reads both sides whole)."""
    import threading

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from mlflow_magic.state import journal

    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # 1,000 "View run" lines
    team = mlflow_magic.start(root / "sync-team", use=False).server
    off = mlflow_magic.start(root / "sync-off", use=False).server
    on = mlflow_magic.start(root / "sync-on", use=False, sync_to=team.url).server
    latency: dict[str, list[float]] = {"off": [], "on": []}
    lags: list[float] = []
    try:
        for _ in range(rounds):
            for name, server in (("off", off), ("on", on)):
                client = MlflowClient(server.url)
                run_id = client.create_run("0").info.run_id
                logged: dict[int, float] = {}
                seen = threading.Event()
                watcher = None
                if name == "on":
                    watcher = threading.Thread(target=_watch_lag, daemon=True, args=(
                        MlflowClient(team.url), run_id, points, logged, lags, seen))
                    watcher.start()
                calls = []
                for step in range(points):
                    t0 = time.perf_counter()
                    client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
                    calls.append(time.perf_counter() - t0)
                    logged[step] = time.time()
                    time.sleep(0.02)
                latency[name].append(median(calls) * 1000)
                if watcher is not None:
                    seen.wait(120)
        idle_rows = []
        for size in sizes:
            # An existing folder that starts to sync: its first sync reads it whole.
            folder = root / f"sync-idle-{size}"
            server = mlflow_magic.start(folder, use=False).server
            client = MlflowClient(server.url)
            experiment = client.create_experiment(f"idle-{size}")
            for i in range(size):
                run_id = client.create_run(experiment).info.run_id
                client.log_batch(run_id, metrics=[Metric("loss", 1 / (s + 1), s, s)
                                                  for s in range(10)],
                                 params=[Param("i", str(i))])
                client.set_terminated(run_id)
            t0 = time.perf_counter()
            mlflow_magic.restart(folder, use=False, sync_to=team.url)
            wait_in_sync(folder)
            first = time.perf_counter() - t0
            path = records.journal_path(folder)
            state = json.loads(records.read_private(records.sync_state_path(folder)))
            t0 = time.perf_counter()
            for _ in range(1000):
                journal.size(path) != state["cursor"]  # noqa: B015 - what a cycle reads
            idle_us = (time.perf_counter() - t0) / 1000 * 1e6
            before = team_requests(team)
            time.sleep(10)
            idle_requests = team_requests(team) - before
            t0 = time.perf_counter()
            mlflow_magic.push(folder, to=team.url)  # after the first sync: incremental
            again = time.perf_counter() - t0
            idle_rows.append((f"sync: a cycle with nothing new, {size:,} runs (vs a push of "
                              "the same folder, already there)", f"{again:.1f} s (push)",
                              f"{idle_us:.0f} us, {idle_requests} requests in 10 s",
                              f"{idle_us / 1e6 / again:.6f}x", "<= 1 s, <= 2 requests"))
            idle_rows.append((f"sync: first sync of an existing folder of {size:,} runs "
                              "(read, copy, verify)", "-", f"{first:.1f} s", "", "report"))
            mlflow_magic.stop(folder)
    finally:
        for folder in ("sync-on", "sync-off", "sync-team"):
            mlflow_magic.stop(root / folder)
    lags.sort()
    p95 = lags[int(len(lags) * 0.95)] if lags else float("nan")
    return [
        ("sync: log_metric in a training loop, sync off vs on (median per call)",
         f"{median(latency['off']):.2f} ms (off)", f"{median(latency['on']):.2f} ms (on)",
         f"{median(latency['on']) / median(latency['off']):.2f}x", "<= 1.1x"),
        ("sync: lag from a point logged here to the same point on the team server",
         "-", f"median {median(lags):.1f} s, p95 {p95:.1f} s ({len(lags)} points)", "",
         "<= 10 s"),
        *idle_rows,
    ]


def _watch_lag(team, run_id: str, points: int, logged: dict[int, float], lags: list[float],
               done) -> None:
    """Poll the team server for the run's copy and note when each step shows there."""
    from mlflow_magic.contract import PUSH_SOURCE_TAG

    shown: set[int] = set()
    deadline = time.monotonic() + 180
    copy_id = None
    while len(shown) < points and time.monotonic() < deadline:
        if copy_id is None:
            found = team.search_runs(["0"], f"tags.`{PUSH_SOURCE_TAG}` = '{run_id}'")
            copy_id = found[0].info.run_id if found else None
        if copy_id is not None:
            now = time.time()
            for metric in team.get_metric_history(copy_id, "loss"):
                if metric.step not in shown and metric.step in logged:
                    shown.add(metric.step)
                    lags.append(now - logged[metric.step])
        time.sleep(0.2)
    done.set()


def wait_in_sync(folder: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = mlflow_magic.status(folder).sync
        if found is not None and found.state == "in sync":
            return
        time.sleep(0.5)
    raise RuntimeError(f"{folder} did not get in sync within {timeout} s")


def team_requests(team) -> int:
    """Requests the team server has logged so far (uvicorn's access log)."""
    return Path(team.log_path).read_text(errors="replace").count('HTTP/1.1"')


def measure_starts(rounds: int, root: Path) -> dict[str, dict[str, list[float]]]:
    """Cold and warm starts plus memory, alternating the contenders each round."""
    contenders: dict[str, Callable[[Path], object]] = {
        "plain": lambda d: Plain(d),
        "plain --workers 1, no jobs": lambda d: Plain(
            d, ["--workers", "1"], {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}),
        "mlflow_magic": lambda d: Ours(d),
    }
    results: dict[str, dict[str, list[float]]] = {
        name: {"cold": [], "warm": [], "rss": [], "procs": []} for name in contenders}
    results["import floor"] = {"cold": [], "warm": []}
    results["mlflow_magic"]["first"] = []
    for r in range(rounds):
        for name, make in contenders.items():
            folder = root / f"{name.replace(' ', '_')}-{r}"
            server = make(folder)
            results[name]["cold"].append(server.start())
            time.sleep(2)
            rss, procs = server.memory()
            results[name]["rss"].append(rss)
            results[name]["procs"].append(procs)
            server.stop()
            results[name]["warm"].append(server.start())
            server.stop()
            print(f"  round {r + 1}: {name}: cold {results[name]['cold'][-1]:.1f} s, "
                  f"warm {results[name]['warm'][-1]:.1f} s, {rss:.0f} MB in {procs} processes",
                  file=sys.stderr, flush=True)
        # The first folder ever for this MLflow: no new-database template yet.
        first = Ours(root / f"first-folder-{r}")
        with environment(**{CACHE_DIR_ENV: str(root / f"empty-cache-{r}")}):
            results["mlflow_magic"]["first"].append(first.start())
        first.stop()
        floor = import_floor()
        results["import floor"]["cold"].append(floor)
        results["import floor"]["warm"].append(floor)
    return results


def machine() -> str:
    mem = psutil.virtual_memory().total / 2**30
    import mlflow.version

    return (f"{platform.platform()}; {psutil.cpu_count()} cores; {mem:.0f} GiB; "
            f"Python {platform.python_version()}; MLflow {mlflow.version.VERSION}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--costs-only", action="store_true",
                        help="only the costs that need no server (log tail, trace hook)")
    parser.add_argument("--writers-only", action="store_true",
                        help="only 8 concurrent writers through 1 and 4 workers")
    parser.add_argument("--start-only", action="store_true",
                        help="only Run All to the first logged run, 50 known folders and "
                             "the launcher tile")
    parser.add_argument("--daily-only", action="store_true",
                        help="only parallel starts, the UI over a slow link, big artifacts "
                             "and the crash loop")
    parser.add_argument("--cards-only", action="store_true",
                        help="only the run card: its cost in a training loop, its saved size")
    parser.add_argument("--privacy-only", action="store_true",
                        help="only what the folder's key costs: per request and per start")
    parser.add_argument("--always-only", action="store_true",
                        help="only the keeper: hot path, waking, healing, a shared host's memory")
    parser.add_argument("--sync-only", action="store_true",
                        help="only --sync-to: logging with the sync on and off, lag, idle "
                             "cycles on 100 and 1,000 runs")
    parser.add_argument("--requests-only", action="store_true",
                        help="only requests against plain `mlflow server` with the same flags "
                             "(requests_vs_plain.py)")
    parser.add_argument("--push-only", action="store_true",
                        help="only a push of 200 runs to PostgreSQL (and export-import)")
    parser.add_argument("--export-import", metavar="BIN", type=Path,
                        help="the bin folder of a venv with databricks-mlflow-export-import, "
                             "to compare the push with")
    parser.add_argument("--postgres-uri", metavar="URI",
                        help="also measure the writers on this PostgreSQL database")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mlflow-magic-bench-"))
    os.environ["MLFLOW_MAGIC_STATE_DIR"] = str(root / "state")
    os.environ[CACHE_DIR_ENV] = str(root / "cache")  # made by the first new folder
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    print(f"machine: {machine()}", file=sys.stderr)
    only = {"writers_only": lambda: writers_rows(root, args.postgres_uri),
            "start_only": lambda: start_rows(root, args.rounds),
            "costs_only": lambda: costs_rows(root, args.rounds),
            "privacy_only": lambda: privacy_rows(root, args.rounds),
            "cards_only": lambda: card_rows(root, args.rounds),
            "daily_only": lambda: daily_rows(root, args.rounds),
            "push_only": lambda: push_rows(root, args.postgres_uri, args.export_import),
            "requests_only": lambda: requests_vs_plain.rows(root, args.rounds,
                                                            args.postgres_uri),
            "always_only": lambda: always_rows(root, args.rounds),
            "sync_only": lambda: sync_rows(root, args.rounds)}
    for flag, rows_of in only.items():
        if getattr(args, flag):
            try:
                print(table(rows_of(), args.markdown))
            finally:
                mlflow_magic.stop(all=True)
                shutil.rmtree(root, ignore_errors=True)
            return
    try:
        costs = (start_rows(root, args.rounds)
                 + requests_vs_plain.rows(root, args.rounds, args.postgres_uri)
                 + costs_rows(root, args.rounds)
                 + privacy_rows(root, args.rounds) + card_rows(root, args.rounds)
                 + daily_rows(root, args.rounds) + always_rows(root, args.rounds)
                 + writers_rows(root, args.postgres_uri))
        starts = measure_starts(args.rounds, root)
        floor = median(starts["import floor"]["cold"])

        ext, bare = zip(*(load_ext_ms() for _ in range(args.rounds)), strict=True)

        # Steady-state measurements on one running server of each kind.
        plain_srv, ours_srv = Plain(root / "plain-steady"), Ours(root / "ours-steady")
        plain_srv.start()
        ours_srv.start()
        try:
            reuse = [reuse_ms(ours_srv.data_dir) for _ in range(args.rounds)]
            rates_plain = [logging_rates(plain_srv.url) for _ in range(args.rounds)]
            rates_ours = [logging_rates(ours_srv.url) for _ in range(args.rounds)]
            port = int(ours_srv.url.rsplit(":", 1)[1])
            jproc, jupyter_base, token = jupyter_server()
            proxied = f"{jupyter_base}/mlflow-magic/proxy/{port}"
            try:
                auth = {"Authorization": f"token {token}"}
                direct = [rest_latency_ms(ours_srv.url) for _ in range(args.rounds)]
                via = [rest_latency_ms(proxied, headers=auth) for _ in range(args.rounds)]
            finally:
                os.killpg(jproc.pid, signal.SIGTERM)
                jproc.wait(timeout=30)
        finally:
            plain_srv.stop()
            ours_srv.stop()
    finally:
        mlflow_magic.stop(all=True)
        shutil.rmtree(root, ignore_errors=True)

    m = {k: {kk: median(v) for kk, v in d.items()} for k, d in starts.items()}
    plain, tuned, ours = m["plain"], m["plain --workers 1, no jobs"], m["mlflow_magic"]

    def both(name, key, unit, target, digits=1):
        """Ours against the plain command as users run it, and as tuned by flags alone."""
        p, t, o = plain[key], tuned[key], ours[key]
        return (name, f"{p:.{digits}f} {unit}", f"{t:.{digits}f} {unit}",
                f"{o:.{digits}f} {unit}", f"{o / p:.2f}x", f"{o / t:.2f}x", target)

    def pair(name, p, o, unit, target, digits=1):
        return (name, f"{p:.{digits}f} {unit}", f"{o:.{digits}f} {unit}", f"{o / p:.2f}x",
                target)

    rows = [
        both("cold start (new SQLite DB) to /health", "cold", "s", "<= 0.40x plain"),
        ("  same vs `import mlflow.server.fastapi_app`", f"{floor:.1f} s (floor)",
         f"{ours['cold']:.1f} s", f"{ours['cold'] / floor:.2f}x", "<= 1.5x"),
        ("  the first folder ever for this MLflow (makes the new-database template)",
         f"{plain['cold']:.1f} s", f"{tuned['cold']:.1f} s", f"{ours['first']:.1f} s",
         f"{ours['first'] / plain['cold']:.2f}x", f"{ours['first'] / tuned['cold']:.2f}x",
         ""),
        both("warm start (existing DB)", "warm", "s", "<= 0.40x plain"),
        ("  same vs import floor", f"{floor:.1f} s (floor)",
         f"{ours['warm']:.1f} s", f"{ours['warm'] / floor:.2f}x", "<= 1.5x"),
        both("server memory (RSS of the process tree)", "rss", "MB", "<= 0.30x plain", 0),
        both("server processes", "procs", "", "", 0),
        ("reuse from a new kernel (%load_ext + %mlflow_server start)", "-",
         f"{median([r[0] for r in reuse]):.0f} ms", "", "<= 100 ms"),
        ("  same from bare Python (import + start())", "-",
         f"{median([r[1] for r in reuse]):.0f} ms", "", ""),
        ("%load_ext mlflow_magic (over bare IPython)", f"{median(bare):.0f} ms (IPython)",
         f"{median(ext):.1f} ms", "", "<= 30 ms, no mlflow import"),
        pair("log_metric, one call each (metrics/s)", median([r[0] for r in rates_plain]),
             median([r[0] for r in rates_ours]), "/s", "report", 0),
        pair("log_batch of 100 (metrics/s)", median([r[1] for r in rates_plain]),
             median([r[1] for r in rates_ours]), "/s", "report", 0),
        ("REST call: direct vs the Jupyter route", f"{median(direct):.1f} ms (direct)",
         f"{median(via):.1f} ms (proxied)", f"{median(via) / median(direct):.2f}x", "<= 1.5x"),
        *costs,
    ]
    print(f"\nmachine: {machine()}; medians of {args.rounds} rounds\n")
    print(table(rows, args.markdown))


if __name__ == "__main__":
    main()
