"""What every benchmark shares: waiting for a server, a real Jupyter server, and the table
that prints rows side by side with their ratios."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable

from services import free_port

from mlflow_magic.remote import rest


def wait_health(url: str, proc: subprocess.Popen | None = None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if rest.probe(url, timeout=1).healthy:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def jupyter_server(env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, str]:
    """A real Jupyter server with jupyter-server-proxy; returns (proc, base URL, token)."""
    port, token = free_port(), "bench-token"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", f"--port={port}",
         f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1", "--allow-root",
         f"--ServerApp.root_dir={tempfile.gettempdir()}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Jupyter server did not start") from None
            time.sleep(0.2)
    return proc, base, token


def median(values: list[float]) -> float:
    return statistics.median(values)


def side_by_side(name: str, plain: Callable[[], float], ours: Callable[[], float],
                 rounds: int, target: str, unit: str = "ms") -> tuple[str, ...]:
    """One row: plain and ours measured alternately, ``rounds`` times each (so both meet the
    same machine), and the ratio of the medians."""
    p, o = [], []
    for _ in range(rounds):
        p.append(plain())
        o.append(ours())
    mp, mo = median(p), median(o)
    return (name, f"{mp:.1f} {unit}", f"{mo:.1f} {unit}", f"{mo / mp:.2f}x", target)


HEADER = ("measure", "plain `mlflow server`", "plain, tuned: --workers 1, no job runner",
          "mlflow_magic", "vs plain", "vs tuned", "target")


def table(rows: list[tuple[str, ...]], markdown: bool) -> str:
    """Rows of 7 columns (HEADER); a 5-column row (measure, before, now, ratio, target)
    compares against one baseline and is spread over the plain columns."""
    rows = [r if len(r) == len(HEADER) else (r[0], r[1], "", r[2], r[3], "", r[4])
            for r in rows]
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*HEADER), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*r) for r in rows)])
