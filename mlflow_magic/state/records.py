"""The on-disk record of the server that runs for a data folder.

Each data folder (0700 when mlflow_magic makes it) holds a private (0700)
``.mlflow_magic/`` with ``server.json`` (who runs, where, with what settings,
secrets masked), ``options.json`` (0600: the options the server was started
with, secrets included, so ``restart`` can bring back the same server, as
``~/.pgpass`` keeps a password), ``key`` (the folder's key, see access.py),
``server.lock`` (a file lock held while starting or stopping) and
``server.log`` (the server's output). A small index in the user's state
folder lists the data folders with a running server, for ``list`` and
``stop --all``.

A folder, or a ``.mlflow_magic/``, that belongs to another user is refused, and
so is a symlinked ``.mlflow_magic/``: its record, key and server are someone
else's. Files in it are written and read without following symlinks.

A record is trusted only on the host that wrote it, and only while its
process is alive *and* still the same process: the pid together with the
process create time identifies it, so a recycled pid never makes us kill a
foreign program.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import stat
import threading
import time
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..contract import (
    ACTIVITY_FILE,
    ATTACH_FILE,
    JOURNAL_FILE,
    KEEPER_SPEC_FILE,
    KEEPER_STATE_FILE,
    LOCK_FILE,
    LOG_FILE,
    OPTIONS_FILE,
    PUSH_STATE_FILE,
    RECORD_DIR,
    RECORD_FILE,
    STATE_DIR_ENV,
    SYNC_STATE_FILE,
)
from ..errors import BusyError, ConfigError, ForeignHostError
from ..paths import state_dir
from ..settings.options import ServerOptions
from . import owned
from .processes import same_process, user_name


@dataclass(frozen=True)
class ServerRecord:
    """A running server, as recorded in its data folder. URIs are stored masked."""

    data_dir: str
    pid: int
    create_time: float
    host: str
    port: int
    url: str
    started_at: float
    mlflow_version: str
    settings: dict[str, object]
    command: list[str]
    log_path: str
    workers: int = 1
    jobs: bool = False
    attached: bool = False
    hostname: str = dataclasses.field(default_factory=socket.gethostname)
    #: marks every process of this server (in their environment), see process.server_processes
    token: str = ""
    #: with ``attached``: the pid of the process the server stops with
    attached_pid: int | None = None
    #: names of the ``MLFLOW_*`` variables the server inherited from whoever started it
    inherited_env: list[str] = dataclasses.field(default_factory=list)
    #: the server refuses requests without the folder's key (it listens on loopback only)
    private: bool = False
    #: the process and socket that hold its port, once it listens (ownership.Listener)
    listener: dict[str, float] | None = None
    #: ``pid`` is the server's keeper (it holds the port, runs the server, heals it, puts it
    #: to sleep): the MLflow server's own pid is in the keeper's state file
    keeper: bool = False
    #: seconds without a request before the server sleeps (0: never)
    idle_timeout: float = 0.0

    @property
    def uptime(self) -> float:
        """Seconds since the server became ready."""
        return max(0.0, time.time() - self.started_at)

    @property
    def backend_store_uri(self) -> str | None:
        return self.settings.get("backend_store_uri")  # type: ignore[return-value]

    @property
    def registry_store_uri(self) -> str | None:
        return self.settings.get("registry_store_uri")  # type: ignore[return-value]

    @property
    def artifact_location(self) -> str | None:
        """Where artifacts end up: the proxied destination, or the clients' root."""
        key = "artifacts_destination" if self.settings.get("serve_artifacts") else (
            "default_artifact_root")
        return self.settings.get(key)  # type: ignore[return-value]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServerRecord:
        """Parse a record; a hand-edited or corrupted one raises ``ValueError``."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a record is a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name, expected in _FIELD_TYPES.items():
            if name in values and not isinstance(values[name], expected):
                raise ValueError(f"record field {name} has the wrong type")
        try:
            return cls(**values)
        except TypeError as exc:  # a required field is missing
            raise ValueError(str(exc)) from None


def _json_types(hint: object) -> tuple[type, ...]:
    """The JSON value types a field's annotation admits (``float`` admits ints, ``list[str]``
    any list): what a record read back must hold, from the dataclass's own declarations."""
    if hint is float:
        return (int, float)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _json_types(arg))
    origin = typing.get_origin(hint)
    return (origin if isinstance(origin, type) else hint,)  # type: ignore[return-value]


#: The JSON types of the record's fields, checked when it is read back.
_FIELD_TYPES = {name: _json_types(hint)
                for name, hint in typing.get_type_hints(ServerRecord).items()}


def record_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / RECORD_DIR


def record_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / RECORD_FILE


def log_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / LOG_FILE


def options_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / OPTIONS_FILE


def keeper_spec_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / KEEPER_SPEC_FILE


def keeper_state_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / KEEPER_STATE_FILE


def journal_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / JOURNAL_FILE


def sync_state_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / SYNC_STATE_FILE


def push_state_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / PUSH_STATE_FILE


def activity_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / ACTIVITY_FILE


@dataclass(frozen=True)
class KeeperState:
    """What a folder's keeper last said it does (``contract.KEEPER_STATES``)."""

    state: str
    since: float
    keeper: int
    #: the MLflow server's pid (None while asleep, or between a crash and the next start)
    server: int | None = None
    restarts: int = 0
    last_exit: int | None = None


def read_keeper_state(data_dir: Path) -> KeeperState | None:
    """The keeper's state file, if there is a readable one."""
    try:
        data = json.loads(read_private(keeper_state_path(data_dir)))
        return KeeperState(**{k: v for k, v in data.items()
                              if k in KeeperState.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def keeper_state(record: ServerRecord) -> KeeperState | None:
    """What the record's own keeper says (a state file of an earlier keeper says nothing)."""
    found = read_keeper_state(Path(record.data_dir)) if record.keeper else None
    return found if found is not None and found.keeper == record.pid else None


def serving_pid(record: ServerRecord) -> int | None:
    """The pid of the MLflow server process itself (the keeper's child, or, for a record of
    an older version, the recorded process)."""
    if not record.keeper:
        return record.pid
    found = keeper_state(record)
    return found.server if found is not None else None


def attach_file(data_dir: Path) -> Path:
    """While it exists, an ``--attached`` server stops when its kernel exits."""
    return record_dir(data_dir) / ATTACH_FILE


def prepare_folder(data_dir: Path) -> Path:
    """Create the data folder and its private record folder, or explain how to fix it.

    A new data folder is 0700, the record folder always: the log holds access lines
    and command lines, the options file store passwords, the key the server's door.
    """
    refuse_foreign(data_dir)
    refuse_exposed(data_dir)
    try:
        if not data_dir.exists():
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            data_dir.mkdir(mode=0o700, exist_ok=True)
        private = record_dir(data_dir)
        private.mkdir(mode=0o700, exist_ok=True)
        refuse_foreign(data_dir)  # made meanwhile by someone else, or a symlink
        if private.stat().st_mode & 0o077:
            private.chmod(0o700)  # a folder made by an older version
        probe = private / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"The data folder {data_dir} cannot be used: {exc.strerror or exc}. "
            "Choose a folder you can write to with --path DIR (or set MLFLOW_PATH), "
            "or fix the folder's permissions (or free space on its disk)."
        ) from None
    return data_dir


def foreign_owner(data_dir: Path) -> str | None:
    """Why the folder is not this user's to manage (another owner, a symlinked record
    folder), or None. Missing folders are nobody's yet."""
    me = os.geteuid()
    for path in (data_dir, record_dir(data_dir)):
        try:
            info = path.lstat()
        except OSError:
            return None
        if path.name == RECORD_DIR and stat.S_ISLNK(info.st_mode):
            return f"its {RECORD_DIR}/ is a symbolic link ({os.readlink(path)})"
        if path == data_dir and stat.S_ISLNK(info.st_mode):
            try:
                info = path.stat()
            except OSError:
                return None
        if info.st_uid != me:
            return f"{path} belongs to {user_name(info.st_uid)}"
    return None


def open_to_others(data_dir: Path) -> list[str]:
    """The folder's data that other users of this machine may read or write (``path (mode
    0755)``): the folder itself, its database and its artifacts."""
    found = []
    for path in (data_dir, data_dir / "mlflow.db", data_dir / "artifacts"):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append(f"{path} (mode {mode:04o})")
    return found


def refuse_foreign(data_dir: Path) -> None:
    """Refuse a folder whose record, key and server would be another user's."""
    why = foreign_owner(data_dir)
    if why is not None:
        raise ConfigError(
            f"The data folder {data_dir} is not yours to use: {why}. Its server, record and "
            "key are its owner's, and mlflow_magic never starts, stops or reads them for "
            "another user. Use a folder of your own (--path DIR, or MLFLOW_PATH); to share "
            "runs with that user, one of you runs a team server (`--host 0.0.0.0 "
            "--app-name basic-auth`) and the other connects to it.")


def exposed_ancestor(data_dir: Path) -> str | None:
    """Why another user could swap the folder or what is in it, or None: a directory on its
    path (symlinks followed, as the server will) that belongs to another user than root and
    this one, or that everyone may write without the sticky bit (``/tmp`` has it: others
    may not rename what is yours there). The folder itself counts too."""
    me = os.geteuid()
    real = Path(os.path.realpath(data_dir))
    for path in [*reversed(real.parents), real]:
        try:
            info = path.stat()
        except OSError:
            break  # not made yet: its parent was the last to check
        if info.st_uid not in (0, me):
            return f"{path} belongs to {user_name(info.st_uid)}"
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            return (f"{path} may be written by every user of this machine (mode "
                    f"{stat.S_IMODE(info.st_mode):04o})")
    return None


def refuse_exposed(data_dir: Path) -> None:
    """Refuse, before anything is made, a folder another user could swap for their own."""
    why = exposed_ancestor(data_dir)
    if why is not None:
        raise ConfigError(
            f"The data folder {data_dir} is not safe to use: {why}. Another user could "
            "rename the folder and put one of theirs in its place, with a record, a key or a "
            "login of their own, and your runs would go to them. Choose a folder under "
            "your home (--path DIR, or MLFLOW_PATH), or, if you own that directory, take "
            "the others' write access away (`chmod o-w DIR`, or `chmod +t DIR` for a "
            "shared one, as /tmp is).")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to a file only its owner can read (0600), following no
    symlink: the temporary file is made new, and the rename replaces a link, not its target."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_private(path: Path) -> str:
    """The text of a private file, refusing a symlink in its place, and a file or folder
    that is not this user's alone (OSError: :mod:`mlflow_magic.state.owned`)."""
    return owned.read_owned(path)


def write_options(data_dir: Path, options: ServerOptions) -> None:
    """Keep the options the server was started with, for ``restart``."""
    write_private(options_path(data_dir), json.dumps(options.to_dict(), indent=2))


def read_options(data_dir: Path) -> ServerOptions | None:
    """The options the folder's server was started with, if known and readable."""
    try:
        return ServerOptions.from_dict(json.loads(read_private(options_path(data_dir))))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def folder_lock(data_dir: Path, timeout: float) -> _FolderLock:
    """The lock that makes start and stop on one data folder happen one at a time."""
    return _FolderLock(data_dir, timeout)


class _FolderLock:
    """A :class:`filelock.FileLock` whose timeout becomes a :class:`BusyError`."""

    def __init__(self, data_dir: Path, timeout: float) -> None:
        from filelock import FileLock  # only starts and stops need it, not a reuse

        self._lock = FileLock(record_dir(data_dir) / LOCK_FILE, mode=0o600)
        self._data_dir = data_dir
        self._timeout = timeout

    def __enter__(self) -> _FolderLock:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=self._timeout)
        except Timeout:
            raise BusyError(
                f"Another process has been starting or stopping the MLflow server for "
                f"{self._data_dir} for more than {self._timeout:.0f} s. Wait for it to "
                f"finish and try again; `%mlflow_server logs --path {self._data_dir}` shows "
                "what the server is doing."
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def lock_held(data_dir: Path) -> bool:
    """Someone (another process, or thread) is starting or stopping the folder's server."""
    from filelock import FileLock, Timeout

    lock = FileLock(record_dir(data_dir) / LOCK_FILE, mode=0o600)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


def read_record(data_dir: Path) -> ServerRecord | None:
    """The record of the folder, or None if there is none, it is unreadable, it or its
    folder is not this user's alone (planted in a folder someone else made), or it names
    another folder than its own (its key would be that folder's)."""
    try:
        record = ServerRecord.from_json(read_private(record_path(data_dir)))
    except (OSError, ValueError, TypeError):
        return None
    return record if Path(record.data_dir) == Path(data_dir) else None


def write_record(record: ServerRecord) -> None:
    """Write atomically, so a reader never sees half a record; then index the folder."""
    data_dir = Path(record.data_dir)
    write_private(record_path(data_dir), record.to_json())
    index = index_entry(data_dir)
    try:
        index.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(index, str(data_dir))
        _port_entry(record.port).parent.mkdir(exist_ok=True, mode=0o700)
        write_private(_port_entry(record.port), str(data_dir))
    except OSError as exc:
        raise ConfigError(
            f"The list of your MLflow servers in {index.parent} cannot be written: "
            f"{exc.strerror or exc}. Free some space on that disk or fix its permissions (or "
            f"point {STATE_DIR_ENV} at a writable folder), then start again.") from None


def remove_record(data_dir: Path) -> None:
    """Forget the folder's server: its record and its index entry (options are kept)."""
    for path in (record_path(data_dir), index_entry(data_dir)):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def forget_folder(data_dir: Path) -> None:
    """Drop a folder from the index (it was deleted, or has no server any more)."""
    with contextlib.suppress(OSError):
        index_entry(data_dir).unlink(missing_ok=True)


def on_this_host(record: ServerRecord) -> bool:
    """Records on a shared home (NFS) may come from another host, where we can't look."""
    return record.hostname == socket.gethostname()


def refuse_foreign_host(record: ServerRecord, action: str) -> None:
    """A shared home (NFS) seen from two hosts: never start a second server on one store."""
    if on_this_host(record):
        return
    hint = ("Stop it there (`%mlflow_server stop` on that host), or use another --path here. "
            "If that host is gone for good, `%mlflow_server stop --force` forgets its record.")
    raise ForeignHostError(
        f"The MLflow server for {record.data_dir} was started on host {record.hostname!r} "
        f"(pid {record.pid}, {record.url}), not on this host ({socket.gethostname()!r}), so "
        f"it cannot be checked or {'stopped' if action == 'stop' else 'reused'} from here, "
        f"and a second server on the same store would corrupt it. {hint}")


def process_of(record: ServerRecord) -> psutil.Process | None:
    """The record's process if it still runs and is the same process (not a reused pid)."""
    if not on_this_host(record):
        return None
    return same_process(record.pid, record.create_time)


def index_entry(data_dir: Path) -> Path:
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:16]
    return state_dir() / "servers" / digest


def _port_entry(port: int) -> Path:
    return state_dir() / "ports" / str(port)


def folder_last_on(port: int) -> Path | None:
    """The data folder whose server last ran on ``port`` (kept after it stops), if any:
    a UI reopened later can say which folder to start again."""
    try:
        return Path(read_private(_port_entry(port)).strip())
    except OSError:
        return None


def known_data_dirs() -> Iterator[Path]:
    """Data folders whose server was started and not yet stopped, as far as we know."""
    folder = state_dir() / "servers"
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        try:
            yield Path(read_private(entry).strip())
        except OSError:
            continue
