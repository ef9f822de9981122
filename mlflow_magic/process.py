"""Spawn a detached server, wait until it answers, and stop its whole process tree.

No MLflow import here: talking to the server is plain HTTP, so the kernel pays
nothing for ``import mlflow`` until the user's own code needs it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

POLL_INTERVAL = 0.1
STOP_GRACE = 10.0


@dataclass(frozen=True)
class Probe:
    """What an HTTP address answered: healthy MLflow (with version) or not."""

    healthy: bool
    version: str | None = None
    error: str | None = None


def probe(url: str, timeout: float = 2.0) -> Probe:
    """Ask ``/health`` and ``/version``: both must answer for the port to be MLflow."""
    base = url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout) as resp:
            if resp.read(64).strip() != b"OK":
                return Probe(False, error="/health did not answer OK")
        with urllib.request.urlopen(f"{base}/version", timeout=timeout) as resp:
            version = resp.read(64).decode().strip().strip('"')
    except (OSError, ValueError) as exc:
        return Probe(False, error=_reason(exc))
    return Probe(True, version=version)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)


def port_is_free(host: str, port: int) -> bool:
    """True if a server could listen on ``host:port`` now.

    SO_REUSEADDR, as uvicorn sets it: connections of a stopped server lingering in
    TIME_WAIT do not make its port busy, a listening socket does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_free_port(host: str, first: int, attempts: int = 200,
                   skip: Sequence[int] = ()) -> int:
    """The first port from ``first`` that is free on ``host``."""
    for port in range(first, first + attempts):
        if port not in skip and port_is_free(host, port):
            return port
    raise OSError(errno.EADDRINUSE, f"no free port in {first}-{first + attempts - 1}")


def port_holder(port: int) -> str:
    """Describe the process listening on ``port`` (``"pid 123 (nginx)"``), if we may see it."""
    with contextlib.suppress(psutil.AccessDenied, OSError):
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid is None:
                    break
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return "another process"


def spawn(argv: Sequence[str], env: Mapping[str, str], log_file: Path) -> subprocess.Popen:
    """Start ``argv`` in a new session, output appended to ``log_file``.

    A new session (and so a new process group) keeps the server out of the
    kernel's process group: Jupyter's "interrupt kernel" signals that whole group,
    and the server must survive it. It also lets :func:`stop_tree` signal every
    worker the server spawns with one ``killpg``.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )


@dataclass(frozen=True)
class Exited:
    """The process ended before it answered."""

    exit_code: int | None


@dataclass(frozen=True)
class Ready:
    """The server answered ``/health`` and ``/version``."""

    version: str


@dataclass(frozen=True)
class TimedOut:
    """Neither ready nor exited within the timeout."""

    last_error: str | None


def wait_ready(
    proc: subprocess.Popen,
    url: str,
    timeout: float,
    on_tick: Callable[[float], None] | None = None,
) -> Ready | Exited | TimedOut:
    """Poll ``url`` until the server answers, the process exits, or time runs out."""
    start = time.monotonic()
    last = Probe(False)
    while True:
        code = proc.poll()
        if code is not None:
            return Exited(code)
        last = probe(url, timeout=1.0)
        if last.healthy:
            return Ready(last.version or "unknown")
        elapsed = time.monotonic() - start
        if on_tick is not None:
            on_tick(elapsed)
        if elapsed > timeout:
            return TimedOut(last.error)
        time.sleep(POLL_INTERVAL)


def process_tree(proc: psutil.Process) -> list[psutil.Process]:
    """The process, its descendants, and everything else in its process group."""
    procs = {proc.pid: proc}
    with contextlib.suppress(psutil.Error):
        for child in proc.children(recursive=True):
            procs[child.pid] = child
    with contextlib.suppress(psutil.Error, OSError):
        pgid = os.getpgid(proc.pid)
        for other in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(other.pid) == pgid:
                    procs.setdefault(other.pid, other)
    return list(procs.values())


def stop_tree(proc: psutil.Process, grace: float = STOP_GRACE) -> None:
    """SIGTERM the server's process group and descendants, SIGKILL what outlives ``grace``.

    MLflow's uvicorn workers and huey consumers outlive a signal to their parent
    alone, so everything in the group is signalled and waited for.
    """
    procs = process_tree(proc)
    with contextlib.suppress(OSError):
        os.killpg(os.getpgid(proc.pid), signal.SIGTERM)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    _reap(proc.pid)


def _reap(pid: int) -> None:
    """Collect the exit status if the server is our child, so no zombie remains."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: Path, lines: int = 30, offset: int = 0) -> str:
    """The last ``lines`` lines of ``path`` after byte ``offset`` (the current start's output)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def get_json(url: str, timeout: float = 5.0) -> object:
    """GET ``url`` and decode JSON: enough REST for status displays without mlflow."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())
