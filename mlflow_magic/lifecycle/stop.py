"""Stop a folder's server: every process it spawned, and nothing else.

Each process is found by the record (leader pid and create time) or by its session and the
random token in its environment (:mod:`mlflow_magic.state.processes`), so workers that
outlived their leader go too, and a program that reuses an old pid is never signalled.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil

from ..errors import MlflowMagicError
from ..results import Stopped, StoppedAll
from ..state import processes, records
from ..state.records import ServerRecord

#: How long a stop waits for the folder's lock (a start holds it while it starts).
LOCK_MARGIN = 30.0


def processes_of(record: ServerRecord) -> list[psutil.Process]:
    return processes.server_processes(record.pid, record.create_time, record.token)


def end_remains(record: ServerRecord) -> list[psutil.Process]:
    """Stop every process of the recorded server; sweep once more for late forks."""
    procs = processes_of(record)
    if procs:
        processes.stop_processes(procs)
        processes.stop_processes(processes_of(record), grace=2)
    return procs


def stop(data_dir: Path, force: bool = False) -> Stopped:
    """Stop the folder's server and every process it spawned; forget its record.

    A folder that no longer exists is only dropped from the list of known
    servers: stopping never creates anything.
    """
    if not records.record_dir(data_dir).is_dir():
        records.forget_folder(data_dir)
        return Stopped(str(data_dir), None)
    records.refuse_foreign(data_dir)
    with records.folder_lock(data_dir, LOCK_MARGIN):
        return stop_locked(data_dir, force)


def stop_locked(data_dir: Path, force: bool = False) -> Stopped:
    record = records.read_record(data_dir)
    if record is not None and not records.on_this_host(record):
        if not force:
            records.refuse_foreign_host(record, "stop")
        records.remove_record(data_dir)
        return Stopped(str(data_dir), None, forgot=record)
    ended = end_remains(record) if record is not None else []
    records.remove_record(data_dir)
    with contextlib.suppress(OSError):
        records.attach_file(data_dir).unlink()
    return Stopped(str(data_dir), record if ended else None)


def stop_all() -> StoppedAll:
    """Stop the server of every known data folder; one failure does not stop the rest."""
    stopped, failed = [], []
    for folder in records.known_data_dirs():
        try:
            stopped.append(stop(folder))
        except (MlflowMagicError, OSError) as exc:
            failed.append((str(folder), str(exc)))
    return StoppedAll(stopped, failed)
