"""The on-disk record of the server that runs for a data folder.

Each data folder holds ``.mlflow_magic/server.json`` (who runs, where, with
what settings), ``server.lock`` (a file lock held while starting or stopping)
and ``server.log`` (the server's output). A small index in the user's state
folder lists the data folders with a running server, for ``list`` and
``stop --all``.

A record is trusted only while its process is alive *and* still the same
process: the pid together with the process create time identifies it, so a
recycled pid never makes us kill a foreign program.
"""

from __future__ import annotations

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

from .errors import BusyError

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
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def record_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / RECORD_DIR


def record_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / "server.json"


def log_path(data_dir: Path) -> Path:
    return record_dir(data_dir) / "server.log"


def folder_lock(data_dir: Path, timeout: float) -> _FolderLock:
    """The lock that makes start and stop on one data folder happen one at a time."""
    record_dir(data_dir).mkdir(parents=True, exist_ok=True)
    return _FolderLock(data_dir, timeout)


class _FolderLock:
    """A :class:`filelock.FileLock` whose timeout becomes a :class:`BusyError`."""

    def __init__(self, data_dir: Path, timeout: float) -> None:
        from filelock import FileLock  # only starts and stops need it, not a reuse

        self._lock = FileLock(record_dir(data_dir) / "server.lock")
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
    path = record_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(record.to_json())
    os.replace(tmp, path)
    _index_entry(data_dir).parent.mkdir(parents=True, exist_ok=True)
    _index_entry(data_dir).write_text(str(data_dir))


def remove_record(data_dir: Path) -> None:
    """Forget the folder's server: its record and its index entry."""
    for path in (record_path(data_dir), _index_entry(data_dir)):
        path.unlink(missing_ok=True)


def process_of(record: ServerRecord) -> psutil.Process | None:
    """The record's process if it still runs and is the same process (not a reused pid)."""
    if record.hostname != socket.gethostname():
        return None
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc


def state_dir() -> Path:
    """The user's state folder for mlflow_magic (``$MLFLOW_MAGIC_STATE_DIR`` overrides)."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "mlflow_magic"


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
