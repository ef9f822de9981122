"""The server's processes: spawn detached, find them all, stop them all; ports on this machine.

A server is spawned as the leader of a new session, and every process of it
carries a random token in its environment. The server is then "the leader,
if it is still the same process (pid + create time), plus every process of
its session that carries its token": found this way, its worker processes are
stopped even after the leader died first, and a process that merely reuses
an old pid, or a group that is not ours, is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from ..contract import TOKEN_ENV
from . import logfile

STOP_GRACE = 10.0
#: Two create times closer than this are the same process (they are rounded).
SAME_PROCESS = 1.0


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
        except OSError as exc:
            if exc.errno == errno.EACCES:  # a privileged port: see listen_on
                raise
            return False
    return True


#: uvicorn's own default backlog.
BACKLOG = 2048


def listen_on(host: str, port: int) -> socket.socket | None:
    """A socket listening on ``host:port``, or None if the port is taken.

    Bound here and handed to the server (``pass_fds``), the port is held from the
    moment it is chosen: two starts at the same moment can never pick the same one,
    and nobody can take it while the server starts.

    ``TCP_NODELAY`` is set on the listening socket, and every connection it accepts
    inherits it (Linux, the BSDs): whichever web server serves the socket. uvicorn's
    ``--fd`` wraps an inherited socket as ``AF_UNIX``, so asyncio never sets the option on
    the connections it accepts, and a response written in two parts would wait for the
    client's delayed ACK (about 40 ms per request on a kept-alive connection).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EACCES:  # a privileged port: nobody holds it, we may not
            raise
        return None
    return sock


def listen_on_first_free(host: str, first: int, attempts: int = 200,
                         skip: Sequence[int] = ()) -> socket.socket:
    """A listening socket on the first port from ``first`` that this start can hold."""
    for port in range(first, first + attempts):
        if port not in skip:
            sock = listen_on(host, port)
            if sock is not None:
                return sock
    raise OSError(errno.EADDRINUSE, f"no free port in {first}-{first + attempts - 1}")


def port_holder_process(port: int) -> psutil.Process | None:
    """The process listening on ``port``, if we may see it."""
    with contextlib.suppress(psutil.AccessDenied, OSError):
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid is None:
                    return None
                with contextlib.suppress(psutil.Error):
                    return psutil.Process(conn.pid)
    return None


def port_holder(port: int) -> str:
    """Describe the process listening on ``port`` (``"pid 123 (nginx)"``), if we may see it."""
    proc = port_holder_process(port)
    if proc is None:
        return "another process"
    with contextlib.suppress(psutil.Error):
        return f"pid {proc.pid} ({proc.name()})"
    return f"pid {proc.pid}"


def is_mlflow_magic(proc: psutil.Process) -> bool:
    """A server process or a keeper that mlflow_magic started."""
    with contextlib.suppress(psutil.Error):
        cmd = " ".join(proc.cmdline())
        return "mlflow_magic.serve" in cmd or "mlflow_magic.keeper" in cmd
    return False


def is_mlflow_server(proc: psutil.Process | None) -> bool:
    """An MLflow server (ours or a plain ``mlflow server``), perhaps still starting."""
    if proc is None:
        return False
    with contextlib.suppress(psutil.Error):
        cmd = " ".join(proc.cmdline())
        # "mlflow_magic.serve" matches mlflow_magic.server.serve and the module's name before
        # 0.3.0, so servers started by an older install are still recognised.
        return "mlflow_magic.serve" in cmd or "mlflow_magic.keeper" in cmd or ("mlflow" in cmd and (
            " server" in cmd or "uvicorn" in cmd))
    return False


def spawn(argv: Sequence[str], env: Mapping[str, str], log_file: Path,
          pass_fds: Sequence[int] = ()) -> subprocess.Popen:
    """Start ``argv`` in a new session, output appended to ``log_file``, with ``pass_fds``
    (the listening socket) inherited.

    A new session (and so a new process group) keeps the server out of the
    kernel's process group: Jupyter's "interrupt kernel" signals that whole group,
    and the server must survive it.
    """
    fd = logfile.open_for_append(log_file)
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )
    finally:
        os.close(fd)


def same_process(pid: int, create_time: float) -> psutil.Process | None:
    """The process ``pid`` if it runs and was created at ``create_time`` (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > SAME_PROCESS:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc


def server_processes(leader_pid: int, create_time: float, token: str) -> list[psutil.Process]:
    """Every live process of one server: its leader and its session's token holders.

    Without a token (a record of an older version) only the leader and its
    descendants count.
    """
    found: dict[int, psutil.Process] = {}
    leader = same_process(leader_pid, create_time)
    if leader is not None:
        found[leader.pid] = leader
        with contextlib.suppress(psutil.Error):
            found.update((c.pid, c) for c in leader.children(recursive=True))
    if not token:
        return list(found.values())
    for proc in psutil.process_iter():
        if proc.pid in found:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if (os.getsid(proc.pid) == leader_pid
                    and proc.create_time() >= create_time - SAME_PROCESS
                    and proc.status() != psutil.STATUS_ZOMBIE
                    and proc.environ().get(TOKEN_ENV) == token):
                found[proc.pid] = proc
    return list(found.values())


def stop_processes(procs: Sequence[psutil.Process], grace: float = STOP_GRACE) -> None:
    """SIGTERM each process, SIGKILL what outlives ``grace``, and reap our own children.

    Each process is signalled by itself (psutil checks it is still the same
    process), never a whole group: only what :func:`server_processes` verified.
    """
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    alive = wait_gone(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    wait_gone(alive, timeout=5)
    for proc in procs:
        reap(proc.pid)


def wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until each process has ended (ours reaped; another's a zombie counts as ended:
    a server whose keeper was killed is reaped by init, which may take seconds); the ones
    still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            reap(proc.pid)
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so no zombie remains."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def user_name(uid: int) -> str:
    """``alice`` for a uid, or ``uid 1001`` if it has no name."""
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return f"uid {uid}"
