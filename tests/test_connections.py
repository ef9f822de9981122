"""Every connection a folder's server accepts has ``TCP_NODELAY``, whatever web server serves it.

Without it, a response written in two parts (headers, then body) waits for the client's
delayed ACK: about 40 ms on every request of a kept-alive connection, which MLflow's client,
browsers and ``requests.Session`` all use. The option is read from the server's own end of
a real connection, taken from the server process itself (``pidfd_getfd``, as root): no
timing, so the test cannot flake, and it fails where any server kind loses the option.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import time

import psutil
import pytest
from conftest import wait_for

import mlflow_magic

_SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture


def _steal_fd(pid: int, fd: int) -> socket.socket:
    """A copy of the process ``pid``'s descriptor ``fd``, as a socket of the right family."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        copied = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copied < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    finally:
        os.close(pidfd)
    return socket.socket(fileno=copied)


def _server_end(port: int, client_port: int) -> tuple[int, int]:
    """The process and descriptor of the server's end of the connection from
    ``client_port``."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.raddr \
                and conn.raddr.port == client_port and conn.pid is not None and conn.fd >= 0:
            return conn.pid, conn.fd
    raise LookupError(f"no accepted connection from port {client_port} on {port}")


def accepted_nodelay(host: str, port: int) -> list[int]:
    """``TCP_NODELAY`` on the server's end of three kept-alive requests, one per connection
    (a server with several workers spreads them)."""
    found = []
    for _ in range(3):
        with socket.create_connection((host, port), timeout=30) as client:
            client.sendall(f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
            pid, fd = wait_for(lambda c=client: _find(port, c.getsockname()[1]), timeout=10)
            with _steal_fd(pid, fd) as server_end:
                found.append(server_end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return found


def _find(port: int, client_port: int) -> tuple[int, int] | None:
    with contextlib.suppress(LookupError):
        return _server_end(port, client_port)
    return None


@pytest.fixture
def started(tmp_path):
    """Start a folder's server with the given options; stopped afterwards, even on failure."""
    folders = []

    def start(**options):
        folder = tmp_path / f"data{len(folders)}"
        folders.append(folder)
        return mlflow_magic.start(folder, use=False, **options).server

    yield start
    for folder in folders:
        mlflow_magic.stop(folder)


@pytest.mark.integration
def test_the_in_process_server_accepts_with_nodelay(shared_server):
    assert accepted_nodelay("127.0.0.1", shared_server.port) == [1, 1, 1]


@pytest.mark.integration
@pytest.mark.parametrize(("kind", "options"), [
    ("two uvicorn workers, MLflow's launcher",
     {"workers": 2, "extra_args": ("--expose-prometheus", "{tmp}")}),
    ("gunicorn", {"extra_args": ("--gunicorn-opts", "--workers 1")}),
    ("IPv6 loopback", {"host": "::1"}),
])
def test_every_server_kind_accepts_with_nodelay(kind, options, started, tmp_path):
    if "extra_args" in options:
        options = {**options, "extra_args": tuple(a.format(tmp=tmp_path) for a in
                                                  options["extra_args"])}
    server = started(**options)
    assert accepted_nodelay(options.get("host", "127.0.0.1"), server.port) == [1, 1, 1]


@pytest.mark.integration
def test_a_server_the_keeper_wakes_accepts_with_nodelay(started):
    server = started(idle_timeout=3)
    folder = server.data_dir
    wait_for(lambda: mlflow_magic.status(folder).state == "sleeping", timeout=60, interval=1)
    time.sleep(0.5)
    assert accepted_nodelay("127.0.0.1", server.port) == [1, 1, 1]
