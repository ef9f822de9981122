"""Who holds a local port: a server of this user's, or someone else.

On a machine with several users, any of them can listen on a port of
127.0.0.1 once it is free. So before a request carries the folder's key (or a
run, or a model) to a local port, mlflow_magic checks that the port is held by
the server its record names: one of that server's own processes holds the
listening socket. While it holds it, nobody else can listen on that address.

That check is made once, when a server is found, and its result kept as a
:class:`Listener`; every later request only checks that the same process
still has the same socket open (one ``readlink`` on Linux), which costs a few
microseconds. The uid of a port's listener (``/proc/net/tcp``) tells whose a
port is when no record of ours names it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from ..state.processes import same_process


@dataclass(frozen=True)
class Listener:
    """The process that holds a server's listening socket, and that socket."""

    pid: int
    create_time: float
    fd: int
    #: the socket's inode (Linux; 0 where it cannot be told)
    inode: int

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Listener | None:
        """The inverse of :meth:`to_dict`; None for anything else (an older record)."""
        try:
            return cls(int(data["pid"]), float(data["create_time"]),  # type: ignore[index]
                       int(data["fd"]), int(data["inode"]))  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            return None


def find_listener(procs: Iterable[psutil.Process], port: int) -> Listener | None:
    """Which of ``procs`` holds the listening socket of ``port``, if one does.

    An answer on the port is no proof: another server may have taken the port
    between a check and our server's bind (uvicorn binds with SO_REUSEADDR, so a
    port that is bound but not yet listening looks free).
    """
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
            created = proc.create_time()
        except psutil.Error:
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return Listener(proc.pid, created, conn.fd, _inode(proc.pid, conn.fd))
    return None


def _inode(pid: int, fd: int) -> int:
    """The inode of the socket behind ``pid``'s ``fd`` (0 where /proc cannot tell)."""
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return 0
    return int(link[8:-1]) if link.startswith("socket:[") else 0


def still_listening(listener: Listener) -> bool:
    """True while the process that held the socket still holds that very socket.

    On Linux: the same descriptor still points at the same socket inode (a
    socket's inode is unique while it is open, so a recycled pid cannot pass); a listener
    recorded without one is not verified.
    Elsewhere: the same process (pid and create time) is alive.
    """
    if listener.inode:
        return _inode(listener.pid, listener.fd) == listener.inode
    if sys.platform.startswith("linux"):  # /proc always tells: an inode of 0 was made up
        return False
    return same_process(listener.pid, listener.create_time) is not None


# --- whose is a port ----------------------------------------------------------------------

_LISTEN = "0A"
_V4_LOOPBACK_OR_ANY = ("0100007F", "00000000")


def port_owner(port: int) -> int | None:
    """The uid that listens on ``port`` of loopback (or every address), if known.

    Linux tells every user who listens where (``/proc/net/tcp`` and ``tcp6``);
    elsewhere psutil may, or may need root (None: unknown).
    """
    owners = port_owners(port)
    return owners[0] if owners else None


def port_owners(port: int) -> list[int]:
    """Every uid that listens on ``port`` of loopback (or every address), IPv4 and IPv6:
    a client that connects by name (``localhost``) reaches whichever its resolver lists
    first, and another user may listen on the family the owner's server does not."""
    if sys.platform.startswith("linux"):
        return _proc_net_owners(port)
    found = []
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port \
                    and conn.pid is not None:
                found.append(psutil.Process(conn.pid).uids().real)
    return found


def _proc_net_owners(port: int) -> list[int]:
    wanted = f":{port:04X}"
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] != _LISTEN or not fields[1].endswith(wanted):
                continue
            address = fields[1].rsplit(":", 1)[0]
            if _covers_loopback(address):
                found.append(int(fields[7]))
    return found


def _covers_loopback(address: str) -> bool:
    """A listening address (hex, as /proc shows it) that 127.0.0.1 or ::1 reaches."""
    if len(address) == 8:
        return address in _V4_LOOPBACK_OR_ANY or address.endswith("7F")
    # IPv6: any (::), loopback (::1), or IPv4-mapped loopback (::ffff:127.x.x.x)
    return (address == "0" * 32 or address == "0" * 24 + "01000000"
            or (address.startswith("0000000000000000FFFF0000") and address.endswith("7F")))
