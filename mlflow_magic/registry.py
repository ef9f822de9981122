"""The on-disk record of the server that runs for a data folder.

Each data folder holds a private (0700) ``.mlflow_magic/`` with
``server.json`` (who runs, where, with what settings, secrets masked),
``options.json`` (0600: the options the server was started with, secrets
included, so ``restart`` can bring back the same server, as ``~/.pgpass``
keeps a password), ``server.lock`` (a file lock held while starting or
stopping) and ``server.log`` (the server's output). A small index in the
user's state folder lists the data folders with a running server, for
``list`` and ``stop --all``.

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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from .config import ServerOptions
from .errors import BusyError, ConfigError
from .process import same_process

STATE_DIR_ENV = "MLFLOW_MAGIC_STATE_DIR"
RECORD_DIR = ".mlflow_magic"


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


#: The JSON types of the record's fields, checked when it is read back.
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "data_dir": str, "pid": int, "create_time": (int, float), "host": str, "port": int,
    "url": str, "started_at": (int, float), "mlflow_version": str, "settings": dict,
    "command": list, "log_path": str, "workers": int, "jobs": bool, "attached": bool,
    "hostname": str, "token": str, "attached_pid": (int, type(None)), "inherited_env": list,
}


def record_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / RECORD_DIR


def record_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / "server.json"


def log_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / "server.log"


def options_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / "options.json"


def prepare_folder(data_dir: Path) -> Path:
    """Create the data folder and its private record folder, or explain how to fix it.

    The record folder is 0700 and its files 0600: the log holds access lines and
    command lines, the options file holds store passwords.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        private = record_dir(data_dir)
        private.mkdir(mode=0o700, exist_ok=True)
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


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to a file only its owner can read (0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_options(data_dir: Path, options: ServerOptions) -> None:
    """Keep the options the server was started with, for ``restart``."""
    write_private(options_path(data_dir), json.dumps(options.to_dict(), indent=2))


def read_options(data_dir: Path) -> ServerOptions | None:
    """The options the folder's server was started with, if known and readable."""
    try:
        return ServerOptions.from_dict(json.loads(options_path(data_dir).read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def folder_lock(data_dir: Path, timeout: float) -> _FolderLock:
    """The lock that makes start and stop on one data folder happen one at a time."""
    return _FolderLock(data_dir, timeout)


class _FolderLock:
    """A :class:`filelock.FileLock` whose timeout becomes a :class:`BusyError`."""

    def __init__(self, data_dir: Path, timeout: float) -> None:
        from filelock import FileLock  # only starts and stops need it, not a reuse

        self._lock = FileLock(record_dir(data_dir) / "server.lock", mode=0o600)
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


def read_record(data_dir: Path) -> ServerRecord | None:
    """The record of the folder, or None if there is none or it is unreadable."""
    try:
        return ServerRecord.from_json(record_path(data_dir).read_text())
    except (OSError, ValueError, TypeError):
        return None


def write_record(record: ServerRecord) -> None:
    """Write atomically, so a reader never sees half a record; then index the folder."""
    data_dir = Path(record.data_dir)
    write_private(record_path(data_dir), record.to_json())
    index = _index_entry(data_dir)
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(str(data_dir))


def remove_record(data_dir: Path) -> None:
    """Forget the folder's server: its record and its index entry (options are kept)."""
    for path in (record_path(data_dir), _index_entry(data_dir)):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def forget_folder(data_dir: Path) -> None:
    """Drop a folder from the index (it was deleted, or has no server any more)."""
    with contextlib.suppress(OSError):
        _index_entry(data_dir).unlink(missing_ok=True)


def on_this_host(record: ServerRecord) -> bool:
    """Records on a shared home (NFS) may come from another host, where we can't look."""
    return record.hostname == socket.gethostname()


def process_of(record: ServerRecord) -> psutil.Process | None:
    """The record's process if it still runs and is the same process (not a reused pid)."""
    if not on_this_host(record):
        return None
    return same_process(record.pid, record.create_time)


def user_dir(override_env: str, xdg_env: str, default: str) -> Path:
    """``$override_env``, else ``$xdg_env/mlflow_magic``, else ``default/mlflow_magic``."""
    override = os.environ.get(override_env)
    if override:
        return Path(override).expanduser()
    return Path(os.environ.get(xdg_env) or os.path.expanduser(default)) / "mlflow_magic"


def state_dir() -> Path:
    """The user's state folder for mlflow_magic (``$MLFLOW_MAGIC_STATE_DIR`` overrides)."""
    return user_dir(STATE_DIR_ENV, "XDG_STATE_HOME", "~/.local/state")


def _index_entry(data_dir: Path) -> Path:
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:16]
    return state_dir() / "servers" / digest


def known_data_dirs() -> Iterator[Path]:
    """Data folders whose server was started and not yet stopped, as far as we know."""
    folder = state_dir() / "servers"
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        try:
            yield Path(entry.read_text().strip())
        except OSError:
            continue
