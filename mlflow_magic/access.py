"""Who may talk to a folder's server: its key, one-time login links, and what a request to
a local address carries.

Every data folder has a key (``.mlflow_magic/key``, 0600), made with its first
server and kept across restarts, so other kernels keep working. The server's
gate (:mod:`mlflow_magic.server.gate`) refuses every request without it. The
owner never handles it: :func:`headers_for_url` adds it to the owner's MLflow
calls (through MLflow's request-header entry point, :mod:`mlflow_magic.hook`),
to the Jupyter routes' requests and to mlflow_magic's own probes, but only
after checking that the port is held by that very server
(:mod:`mlflow_magic.ownership`). A port taken over by someone else gets
neither the key nor the request: :class:`PortTaken` says what happened.

A browser gets in by a one-time login link (``?mlflow_magic_login=<code>``,
valid for minutes and for one use) that sets a session cookie, as Jupyter's
``?token=`` login does; the key itself never appears in a URL, an output or a
command line.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import contract, ownership, registry
from .config import is_loopback
from .errors import CellMessage
from .registry import ServerRecord


def key_path(data_dir: Path) -> Path:
    return registry.record_dir(data_dir) / contract.KEY_FILE


def folder_key(data_dir: Path, create: bool = False) -> str | None:
    """The folder's key; with ``create``, made now if the folder has none yet."""
    try:
        return registry.read_private(key_path(data_dir)).strip() or None
    except FileNotFoundError:
        if not create:
            return None
    except OSError:
        return None
    key = secrets.token_urlsafe(32)
    registry.write_private(key_path(data_dir), key)
    return key


def new_login(data_dir: Path, port: int) -> str:
    """A one-time login code for the folder's server on ``port`` (see the gate), which
    accepts it only there: a code a browser sent to another program is useless to it.
    Old codes are dropped."""
    folder = registry.record_dir(data_dir) / contract.LOGINS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    now = time.time()
    for old in folder.iterdir():
        try:
            if now - old.lstat().st_mtime > contract.LOGIN_TTL:
                old.unlink()
        except OSError:
            continue
    code = secrets.token_urlsafe(24)
    registry.write_private(folder / hashlib.sha256(code.encode()).hexdigest(), str(port))
    return code


def login_query(url: str) -> str:
    """``?mlflow_magic_login=<code>`` for a UI link to this user's private server at
    ``url`` (also one still starting); empty for any other server (nothing to log in to,
    or not ours)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return ""
    if port is None or not is_loopback(parts.hostname):
        return ""
    for data_dir in registry.known_data_dirs():
        record = registry.read_record(data_dir)
        if record is not None and record.port == port and record.private \
                and registry.process_of(record) is not None:
            return f"?{contract.LOGIN_PARAM}={new_login(data_dir, port)}"
    return ""


# --- what a request to a local address carries ------------------------------------------


class PortTaken(CellMessage):
    """A request for a local port that someone else holds was stopped before it was sent."""


@dataclass(frozen=True)
class OwnServer:
    """A server of this user's, verified to hold its port."""

    record: ServerRecord
    listener: ownership.Listener
    #: the folder's key, if the server is private (None: a team server, no gate)
    key: str | None

    def headers(self) -> dict[str, str]:
        return {contract.KEY_HEADER: self.key} if self.key else {}


#: Verified servers by port: later requests only check that the listener is unchanged.
_verified: dict[int, OwnServer] = {}
_lock = threading.Lock()


def headers_for_url(url: str) -> dict[str, str]:
    """What a request to ``url`` must carry: the key for this user's private server there,
    nothing for any other address; :class:`PortTaken` if another user holds that port."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not is_loopback(parts.hostname):
        return {}
    found = server_at(url)
    return found.headers() if found is not None else {}


def server_at(url: str) -> OwnServer | None:
    """This user's server at the loopback ``url``, verified; None if no server of ours is
    there (the port is free, or held by another program of this user's).

    Raises :class:`PortTaken` if another user holds the port.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if port is None or not is_loopback(parts.hostname):
        return None
    return server_on_port(port)


def server_on_port(port: int) -> OwnServer | None:
    """:func:`server_at` by port: what the Jupyter routes ask for each request."""
    with _lock:
        known = _verified.get(port)
    if known is not None and ownership.still_listening(known.listener):
        return known
    found = _find(port)
    with _lock:
        if found is None:
            _verified.pop(port, None)
        else:
            _verified[port] = found
    return found


def _find(port: int) -> OwnServer | None:
    """Look the port up in this user's records, and check who holds it."""
    for data_dir in registry.known_data_dirs():
        record = registry.read_record(data_dir)
        if record is None or record.port != port or not registry.on_this_host(record):
            continue
        listener = record_listener(record)
        if listener is not None:
            return OwnServer(record, listener, folder_key(data_dir) if record.private else None)
    _refuse_foreign(port)
    return None


def record_listener(record: ServerRecord) -> ownership.Listener | None:
    """The recorded server's listener, if it still holds its port."""
    listener = ownership.Listener.from_dict(record.listener)
    if listener is not None and ownership.still_listening(listener):
        return listener
    if registry.process_of(record) is None:
        return None
    from .process import server_processes  # a record of an older version: look it up

    return ownership.find_listener(
        server_processes(record.pid, record.create_time, record.token), record.port)


def _refuse_foreign(port: int) -> None:
    """Raise :class:`PortTaken` if another user listens on the local ``port``."""
    uid = ownership.port_owner(port)
    if uid is None or uid == os.geteuid():
        return
    raise PortTaken(
        f"This MLflow call was not sent: port {port} on this machine is held by another "
        f"user ({ownership.user_name(uid)}), not by an MLflow server of yours, so neither "
        "your runs nor your data folder's key go there. If it was your server's address, "
        "that server has stopped and someone else took its port. Start your server again "
        "with `%mlflow_server start` (or `mlflow-magic start`; it takes a free port and "
        "points MLflow at it), then run the call again.")


def forget(port: int | None = None) -> None:
    """Drop what was verified (for ``port``, or all): the next request checks again."""
    with _lock:
        if port is None:
            _verified.clear()
        else:
            _verified.pop(port, None)
