"""What a folder's server is doing, read-only: ``status``, ``list``, ``logs``, and the risks a
user should know of (a server anyone can write to, data others can read).

A stale record is reported ("crashed"), never removed: only a start or a stop changes
what is on disk. A sleeping server is told from its keeper's state file, not asked:
asking would wake it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..contract import (
    BASIC_AUTH_APP,
    CRASH_LOOP_AFTER,
    KEEPER_CRASH_LOOP,
    KEEPER_RESTARTING,
    KEEPER_SLEEPING,
    KEEPER_STOPPED,
    SYNC_BEHIND,
)
from ..remote import rest
from ..results import LogTail, ServerList, ServerStatus, SyncStatus
from ..security import ports
from ..settings.config import human
from ..state import records, syncstate
from ..state.records import ServerRecord
from . import diagnosis, stop


def probe(record: ServerRecord, timeout: float = 2.0) -> rest.Probe:
    """Is the record's server up? Asked only of the process that holds its port."""
    headers = ports.credentials(record)
    if headers is None:
        return rest.Probe(False, error="its port is not held by its process")
    return rest.probe(record.url, timeout=timeout, headers=headers)


def asleep(record: ServerRecord) -> bool:
    """The record's keeper holds the port with no server: the next request wakes it (so
    nothing here asks it anything)."""
    found = records.keeper_state(record)
    return (found is not None and found.state == KEEPER_SLEEPING
            and ports.credentials(record) is not None)


def risks(data_dir: Path, record: ServerRecord | None) -> tuple[str, ...]:
    """The risks a user should know of: a server anyone can write to, data anyone can read."""
    found = []
    if record is not None and not record.private \
            and record.settings.get("app_name") != BASIC_AUTH_APP:
        found.append(
            f"This server listens on {record.host}, beyond this machine, and asks for no "
            f"login: anyone who can reach port {record.port} can read, change and delete its "
            "experiments and models, and plant artifacts that run as code when a model is "
            "loaded. Restart it with --app-name basic-auth (see the README's \"From laptop to "
            "team\"), or leave --host out to keep it on 127.0.0.1.")
    exposed = records.open_to_others(data_dir)
    if exposed:
        found.append(
            f"Other users of this machine can read or change this folder's data: "
            f"{', '.join(exposed)}. Make it yours alone with `chmod -R go-rwx {data_dir}` "
            "(new folders are made that way).")
    return tuple(found)


def status(data_dir: Path) -> ServerStatus:
    """The folder's server state, read-only: a stale record is reported, not removed;
    with what the folder exposes to other users named, and where its sync is."""
    found = _status(data_dir)
    warnings = risks(data_dir, found.server) if found.state != "foreign" else ()
    sync = sync_status(data_dir, found.server)
    return dataclasses.replace(found, warnings=warnings, sync=sync) \
        if warnings or sync else found


#: How far behind a sync is before it has read the folder once.
_FIRST_SYNC = "not known yet: the first sync reads the whole folder"


def sync_status(data_dir: Path, record: ServerRecord | None = None) -> SyncStatus | None:
    """Where the folder's ``--sync-to`` is (None: its server does not sync), from the sync's
    state and the journal: no request to either server."""
    record = record if record is not None else records.read_record(data_dir)
    target = record.settings.get("sync_to") if record is not None else None
    if not target:
        return None
    found = syncstate.load(data_dir)
    if found is None or found.target != target:
        return SyncStatus(str(data_dir), str(target), SYNC_BEHIND, _FIRST_SYNC)
    lag = syncstate.behind(data_dir, found)
    return SyncStatus(
        str(data_dir), found.target, syncstate.summary_state(found, lag),
        _FIRST_SYNC if lag is None else None if lag.nothing else lag.text(),
        found.last_error, found.last_copied,
        tuple(f"run {run}: {why}" for run, why in found.left_alone.items()),
        tuple(found.differences))


def _status(data_dir: Path) -> ServerStatus:
    foreign = records.foreign_owner(data_dir)
    if foreign is not None:
        return ServerStatus(str(data_dir), "foreign", detail=f"{foreign}; only its owner can "
                            "start, stop or check its server")
    record = records.read_record(data_dir)
    log = records.log_path(data_dir)
    log_str = str(log) if log.exists() else None
    if record is None:
        return ServerStatus(str(data_dir), "stopped", log_path=log_str)
    if not records.on_this_host(record):
        return ServerStatus(str(data_dir), "elsewhere", record, log_path=log_str,
                            detail=f"started on host {record.hostname}; only that host can "
                                   "check or stop it")
    keeper = records.keeper_state(record)
    if records.process_of(record) is None:
        return _gone(record, keeper, log, log_str)
    if keeper is not None and keeper.state == KEEPER_SLEEPING:  # asking would wake it
        return ServerStatus(str(data_dir), "sleeping", record, log_path=log_str,
                            detail=f"sleeping since {_clock(keeper.since)} (no request for "
                                   f"{human(record.idle_timeout)}); wakes on the next request")
    if keeper is not None and keeper.state == KEEPER_RESTARTING:
        return ServerStatus(str(data_dir), "restarting", record, log_path=log_str,
                            detail=f"its server exited ({_exit(keeper.last_exit)}) and starts "
                                   "again on the same port; MLflow calls wait for it",
                            log_tail=diagnosis.log_tail(log, lines=15))
    # A server still starting holds its port already (connections wait for it): ask briefly.
    found = probe(record, timeout=2.0 if record.mlflow_version else 0.3)
    if found.answering:
        return ServerStatus(str(data_dir), "running", record, log_path=log_str,
                            detail=f"OK (MLflow {found.version})" if found.healthy
                            else "OK (MLflow, login required)")
    if not record.mlflow_version:  # recorded at spawn, not answered yet (see _launch_on)
        return ServerStatus(str(data_dir), "starting", record, log_path=log_str,
                            detail="starting; MLflow calls wait for it")
    return ServerStatus(str(data_dir), "unresponsive", record, detail=found.error,
                        log_path=log_str, log_tail=diagnosis.log_tail(log, lines=15))


def _gone(record: ServerRecord, keeper: records.KeeperState | None, log: Path,
          log_str: str | None) -> ServerStatus:
    """A record whose process is gone: a crash loop given up, or a crash (the keeper killed
    too, or a reboot), which the next MLflow call or start brings back."""
    data_dir = record.data_dir
    if keeper is not None and keeper.state == KEEPER_CRASH_LOOP:
        return ServerStatus(
            data_dir, "crash loop", record, log_path=log_str,
            log_tail=diagnosis.log_tail(log, lines=30),
            detail=f"its server died right after each of {CRASH_LOOP_AFTER} starts (last: "
                   f"{_exit(keeper.last_exit)}), so it was given up; the log below says why. "
                   "Fix that, then `start` again")
    remains = stop.processes_of(record)
    detail = ("process is gone; the next start replaces it" if not remains else
              f"its main process is gone but {len(remains)} of its processes still run; "
              "`stop` ends them, the next start replaces them")
    if record.keeper and not remains:
        detail = ("process is gone (a reboot, or killed); the next MLflow call for it, or "
                  "the next start, brings it back on its port")
    if keeper is not None and keeper.state == KEEPER_STOPPED and record.attached:
        detail = "it stopped with the kernel it was attached to; the next start replaces it"
    return ServerStatus(data_dir, "crashed", record, detail=detail, log_path=log_str,
                        log_tail=diagnosis.log_tail(log, lines=15))


def _clock(when: float) -> str:
    """``14:02`` (today) or ``Dec 3 14:02``, with how long ago."""
    moment = time.localtime(when)
    stamp = time.strftime("%H:%M" if time.time() - when < 86400 else "%b %d %H:%M", moment)
    return f"{stamp}, {human_ago(time.time() - when)} ago"


def human_ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h"


def _exit(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def list_servers() -> ServerList:
    """The state of every data folder with a recorded server; deleted folders are dropped."""
    statuses = []
    for folder in records.known_data_dirs():
        if not folder.is_dir():
            records.forget_folder(folder)
            continue
        statuses.append(status(folder))
    return ServerList([s for s in statuses if s.state != "stopped"])


def logs(data_dir: Path, lines: int = 30) -> LogTail:
    """The last ``lines`` lines of the folder's server log, secrets masked."""
    log = records.log_path(data_dir)
    return LogTail(str(log), diagnosis.log_tail(log, lines=lines))
