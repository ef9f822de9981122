"""Whose server is on a local port, and what a request to it carries: the one lookup.

The folder's key (:mod:`mlflow_magic.security.keys`) must go to the folder's own
server and nowhere else. The owner never handles it: :func:`headers_for_url` adds it
to the owner's MLflow
calls (through MLflow's request-header entry point, :mod:`mlflow_magic.hook`),
to the Jupyter routes' requests and to mlflow_magic's own probes, but only
after checking that the port is held by that very server
(:mod:`mlflow_magic.security.ownership`). A port taken over by someone else gets
neither the key nor the request: :class:`PortTaken` says what happened.

After a crash or a reboot, several records may name one port: the record whose
server holds the port speaks for it (:func:`choose`); a stale one only names the
folder to start again. The hook, the Jupyter routes, the one-time links and the
manager all ask :func:`server_on_port`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .. import contract
from ..contract import KEEPER_CRASH_LOOP, KEEPER_STOPPED
from ..errors import CellMessage
from ..settings.config import is_loopback, start_command
from ..state import passes, processes, records
from ..state.records import ServerRecord
from . import ownership
from .keys import folder_key, new_login


def login_query(url: str) -> str:
    """``?mlflow_magic_login=<code>`` for a UI link to this user's private server at
    ``url`` (also one still starting); empty for any other server (nothing to log in to,
    or not ours)."""
    found = _own_private_server(url)
    if found is None:
        return ""
    record, port = found
    return f"?{contract.LOGIN_PARAM}={new_login(Path(record.data_dir), port)}"


def _own_private_server(url: str) -> tuple[ServerRecord, int] | None:
    """This user's private server at the local ``url`` (also one still starting), if any,
    and its port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if port is None or not is_loopback(parts.hostname):
        return None
    try:
        found = server_on_port(port)
    except PortTaken:
        return None
    return (found.record, port) if found is not None and found.record.private else None


def pass_path(url: str, shown_at: str | None = None) -> str:
    """``<PASS_PATH>/<pass>/`` for a UI frame of another site on this user's private server
    at ``url``, which the browser reaches at ``shown_at`` (another host: a forwarder such as
    Colab's proxy) (see :mod:`mlflow_magic.state.passes`); empty for any other server."""
    found = _own_private_server(url)
    if found is None:
        return ""
    record, port = found
    host = urlsplit(shown_at).hostname if shown_at else None
    token = passes.kernel_pass(records.record_dir(record.data_dir), port,
                               None if is_loopback(host) else host)
    return f"{contract.PASS_PATH}/{token}/"


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


#: How long an MLflow call waits for a server that a start or restart is bringing back (s):
#: the default start timeout, and the folder lock's margin.
RESTART_WAIT = 150.0
#: Verified servers by port: later requests only check that the listener is unchanged.
_verified: dict[int, OwnServer] = {}
_lock = threading.Lock()


def headers_for_url(url: str, wait: bool = False) -> dict[str, str]:
    """What a request to ``url`` must carry: the key for this user's private server there,
    nothing for any other address; :class:`PortTaken` if another user holds that port
    (``wait``: see :func:`server_on_port`)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not is_loopback(parts.hostname):
        return {}
    try:
        port = parts.port
    except ValueError:
        return {}
    if port is None:
        return {}
    found = server_on_port(port, wait)
    if found is None:
        return {}
    other = _other_listener(parts.hostname, found.record.host, port) if found.key else None
    if other is not None:
        raise PortTaken(_taken(port, other))
    return found.headers()


#: How long a port found to have no other user's listener is taken as such (s): a request
#: by name (``localhost``) reads the machine's socket tables at most this often.
OTHERS_RECHECK = 2.0
_no_others: dict[int, float] = {}


def _other_listener(host: str | None, server_host: str, port: int) -> int | None:
    """Another user who listens on ``port`` where a request to ``host`` may connect, or None:
    ``host`` is the very address the verified server listens on, or nobody else listens on
    ``port`` on any loopback address. A name resolves to what the resolver lists first
    (Debian's ``/etc/hosts`` maps ``localhost`` to ``::1`` too), and another user may listen
    on the family the server does not hold: the key must not follow the name there."""
    if host is not None and host.strip("[]") == server_host.strip("[]"):
        return None
    now = time.monotonic()
    with _lock:
        if _no_others.get(port, 0.0) > now:
            return None
    other = next((uid for uid in ownership.port_owners(port) if uid != os.geteuid()), None)
    if other is None:
        with _lock:
            _no_others[port] = now + OTHERS_RECHECK
    return other


def server_on_port(port: int, wait: bool = False) -> OwnServer | None:
    """This user's server on the local ``port``, verified; None if no server of ours is
    there (the port is free, or held by another program of this user's). Asked for each
    request by the hook and the Jupyter routes: microseconds once verified.

    Raises :class:`PortTaken` if another user holds the port.

    With ``wait`` (an MLflow call), a server of this user's that is down while a start
    or restart brings it back is waited for; one that nobody brings back is
    :class:`ServerNotRunning` at once: the call is not sent, rather than retried for
    minutes against a closed port.
    """
    with _lock:
        known = _verified.get(port)
    if known is not None and ownership.still_listening(known.listener):
        return known
    found = _find(port, wait)
    with _lock:
        if found is None:
            _verified.pop(port, None)
        else:
            _verified[port] = found
    return found


def _find(port: int, wait: bool) -> OwnServer | None:
    """Look the port up in this user's records, and check who holds it."""
    deadline = time.monotonic() + RESTART_WAIT
    while True:
        record, listener = choose(records_on(port), record_listener,
                                  lambda r: records.process_of(r) is not None)
        if record is not None and listener is not None:
            key = folder_key(Path(record.data_dir)) if record.private else None
            return OwnServer(record, listener, key)
        _refuse_foreign(port)
        if record is not None and records.process_of(record) is None:
            record = _meant(record, port)  # stale: which folder does this address mean?
        data_dir = Path(record.data_dir) if record is not None else records.folder_last_on(port)
        if not wait or data_dir is None or _answers_connect(port):
            return None  # never ours, or another program of this user's listens there
        coming_back = (record is not None and records.process_of(record) is not None) \
            or records.lock_held(data_dir)
        if not coming_back or time.monotonic() > deadline:
            raise ServerNotRunning(data_dir, port, crashed=record is not None,
                                   keeper=records.keeper_state(record) if record else None)
        time.sleep(0.2)


def _meant(stale: ServerRecord, port: int) -> ServerRecord | None:
    """The stale record an address means: that of the folder whose server ran last on the
    port (a folder stopped since has no record: None), not any folder that once used it."""
    last = records.folder_last_on(port)
    if last is None or Path(stale.data_dir) == last:
        return stale
    return next((r for r in records_on(port) if Path(r.data_dir) == last), None)


def records_on(port: int) -> list[ServerRecord]:
    """Every record of this host that names ``port``: after a crash or a reboot, stale
    records of other folders may name it too."""
    found = []
    for data_dir in records.known_data_dirs():
        record = records.read_record(data_dir)
        if record is not None and record.port == port and records.on_this_host(record):
            found.append(record)
    return found


def choose(records: list[ServerRecord],
           holds: Callable[[ServerRecord], ownership.Listener | None],
           alive: Callable[[ServerRecord], bool]) -> tuple[ServerRecord | None,
                                                           ownership.Listener | None]:
    """Which of a port's records speaks for it, with its listener: the one whose server
    holds the port; else one whose process runs (a server still starting); else a stale
    one, which only names the folder to start again. A stale record never shadows a live
    server."""
    for record in records:
        listener = holds(record)
        if listener is not None:
            return record, listener
    running = [r for r in records if alive(r)]
    candidates = running or records
    return (candidates[0] if candidates else None), None


def _answers_connect(port: int) -> bool:
    """Something accepts connections on the port (while nothing of ours is verified there)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class ServerNotRunning(CellMessage):
    """An MLflow call for a server of this user's that is down, and that no start brings
    back: not sent. One that nobody stopped (``revivable``: its keeper died, in a reboot
    or with kill -9) is brought back by the caller (the hook, the Jupyter routes) instead."""

    def __init__(self, data_dir: Path, port: int, crashed: bool,
                 keeper: records.KeeperState | None = None) -> None:
        self.data_dir, self.port = data_dir, port
        gave_up = keeper is not None and keeper.state == KEEPER_CRASH_LOOP
        with_kernel = keeper is not None and keeper.state == KEEPER_STOPPED
        #: nobody stopped it and it did not give up: start it again with its own settings
        self.revivable = crashed and not gave_up and not with_kernel
        why = ("its server died right after each start, so it was given up; `%mlflow_server "
               "logs` says why" if gave_up else
               "it stopped with the kernel it was attached to" if with_kernel else
               "its process is gone" if crashed else "it was stopped")
        super().__init__(
            f"This MLflow call was not sent: the MLflow server of the data folder {data_dir} "
            f"(port {port}) is not running ({why}). Start it again with "
            f"`{start_command(data_dir, port)}` (in a terminal: `mlflow-magic "
            f"{start_command(data_dir, port).split(' ', 1)[1]}`), then run the call again.")


def key_headers(record: ServerRecord) -> dict[str, str]:
    """What a request to the record's server carries: the folder's key, if it is private."""
    if not record.private:
        return {}
    key = folder_key(Path(record.data_dir))
    return {contract.KEY_HEADER: key} if key else {}


def credentials(record: ServerRecord) -> dict[str, str] | None:
    """The headers for the record's own server; None if its port is not held by it (the
    key goes to our own process's socket, never to a rival's)."""
    if record_listener(record) is None:
        return None
    return key_headers(record)


def record_listener(record: ServerRecord) -> ownership.Listener | None:
    """The recorded server's listener, if it still holds its port."""
    listener = ownership.Listener.from_dict(record.listener)
    if listener is not None and ownership.still_listening(listener):
        return listener
    if records.process_of(record) is None:
        return None
    return ownership.find_listener(  # a record of an older version: look it up
        processes.server_processes(record.pid, record.create_time, record.token), record.port)


def _refuse_foreign(port: int) -> None:
    """Raise :class:`PortTaken` if another user listens on the local ``port``."""
    uid = ownership.port_owner(port)
    if uid is None or uid == os.geteuid():
        return
    raise PortTaken(_taken(port, uid))


def _taken(port: int, uid: int) -> str:
    return (
        f"This MLflow call was not sent: port {port} on this machine is held by another "
        f"user ({processes.user_name(uid)}), not by an MLflow server of yours, so neither "
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
