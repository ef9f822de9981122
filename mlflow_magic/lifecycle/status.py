"""What a folder's server is doing, read-only: ``status``, ``list``, ``logs``, and the risks a
user should know of (a server anyone can write to, data others can read).

A stale record is reported ("crashed"), never removed: only a start or a stop changes
what is on disk.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..contract import BASIC_AUTH_APP
from ..remote import rest
from ..results import LogTail, ServerList, ServerStatus
from ..security import ports
from ..state import records
from ..state.records import ServerRecord
from . import diagnosis, stop


def probe(record: ServerRecord, timeout: float = 2.0) -> rest.Probe:
    """Is the record's server up? Asked only of the process that holds its port."""
    headers = ports.credentials(record)
    if headers is None:
        return rest.Probe(False, error="its port is not held by its process")
    return rest.probe(record.url, timeout=timeout, headers=headers)


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
    with what the folder exposes to other users named."""
    found = _status(data_dir)
    warnings = risks(data_dir, found.server) if found.state != "foreign" else ()
    return dataclasses.replace(found, warnings=warnings) if warnings else found


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
    if records.process_of(record) is None:
        remains = stop.processes_of(record)
        detail = ("process is gone; the next start replaces it" if not remains else
                  f"its main process is gone but {len(remains)} of its processes still run; "
                  "`stop` ends them, the next start replaces them")
        return ServerStatus(str(data_dir), "crashed", record, detail=detail,
                            log_path=log_str, log_tail=diagnosis.log_tail(log, lines=15))
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
