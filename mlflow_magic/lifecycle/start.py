"""Start, reuse or restart a folder's server.

The promises (the README's "Guarantees"): a start reuses the folder's server only if
every setting the user named matches; a live server is never ended by a start, however
slow it answers (only ``stop`` and ``restart`` end one); ``restart`` brings back the same
server, changed only where a flag says, in one hold of the folder lock. Failures are
:class:`~mlflow_magic.errors.MlflowMagicError` subclasses whose message tells the user what
to do; no IPython, no printing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path

from ..errors import ConfigError, SettingsMismatchError, UnresponsiveError
from ..remote import rest
from ..results import Launched, Reused
from ..security import ports
from ..settings.config import ServerConfig, resolve, resolve_data_dir
from ..settings.options import SETTING_FLAGS, ServerOptions, merge_options
from ..state import processes, records
from ..state.records import ServerRecord
from . import diagnosis, launch, status, stop
from .launch import Progress, UrlKnown


def start(config: ServerConfig, on_progress: Progress | None = None,
          on_url: UrlKnown | None = None) -> Launched | Reused:
    """Reuse the folder's running server, or start one and wait until it answers.

    A healthy server is reused without taking the folder lock (its record is
    written atomically), which keeps a new kernel's ``start`` fast. Anything else
    happens under the lock, held for the whole start, so concurrent starts on
    one folder (other kernels, terminals, the JupyterLab launcher) wait and then
    reuse the one server instead of starting a second one on the same database.
    """
    records.refuse_foreign(config.data_dir)
    record = records.read_record(config.data_dir)
    if record is not None and record.mlflow_version and records.process_of(record) is not None \
            and not _must_detach(config, record) \
            and (status.asleep(record) or status.probe(record).answering):
        _check_settings(config, record)
        return Reused(record, status.risks(config.data_dir, record))
    if record is None and config.port is not None and not config.data_dir.exists():
        # A taken --port is said before a new folder is made. For a folder that exists, the
        # locked start says it (a start meanwhile, a revival, may be taking the port now).
        launch.check_port(config)
    records.prepare_folder(config.data_dir)
    with records.folder_lock(config.data_dir, config.timeout + stop.LOCK_MARGIN):
        return _start_locked(config, on_progress or launch.no_progress, on_url or launch.no_url)


def _start_locked(config: ServerConfig, on_progress: Progress,
                  on_url: UrlKnown) -> Launched | Reused:
    record = records.read_record(config.data_dir)
    if record is not None:
        records.refuse_foreign_host(record, "start")
        if records.process_of(record) is not None:
            return _reuse_live(config, record, on_progress, on_url)
        stop.end_remains(record)  # crashed: workers that outlived their leader go too
        records.remove_record(config.data_dir)
        if config.port is None and processes.port_is_free(config.host, record.port):
            config = dataclasses.replace(config, port=record.port)  # kernels keep their URL
    return launch.launch(config, on_progress, on_url)


def _reuse_live(config: ServerConfig, record: ServerRecord,
                on_progress: Progress, on_url: UrlKnown) -> Launched | Reused:
    """A live server is reused, never replaced: if it is busy, wait for it to answer."""
    _check_settings(config, record)
    found = (rest.Probe(True, record.mlflow_version) if status.asleep(record)  # asking wakes it
             else status.probe(record))
    version = found.version or "unknown (login required)"
    if not found.answering:
        on_url(record.url)
        started = time.monotonic()
        outcome = launch.wait_ready(
            lambda: None if records.process_of(record) is not None else -1,
            record.url, config.timeout,
            on_tick=lambda _: on_progress(diagnosis.BUSY_PHASE, time.monotonic() - started),
            credentials=lambda: ports.credentials(record))
        if isinstance(outcome, (launch.Exited, launch.Unreachable)):  # it died: replace it
            stop.end_remains(record)
            records.remove_record(config.data_dir)
            return launch.launch(config, on_progress, on_url)
        if isinstance(outcome, launch.Taken):
            raise UnresponsiveError(
                f"The MLflow server for {config.data_dir} (pid {record.pid}) runs, but another "
                f"program answers on its port {record.port}, so nothing was sent there. "
                "Replace the server with `%mlflow_server restart` (it keeps its settings), or "
                "end it with `%mlflow_server stop`.")
        if isinstance(outcome, launch.TimedOut):
            tail = diagnosis.log_tail(Path(record.log_path))
            raise UnresponsiveError(
                f"The MLflow server for {config.data_dir} (pid {record.pid}, {record.url}) "
                f"runs but has not answered for {config.timeout:g} s ({outcome.last_error}). "
                "It was left running: it may be busy with a long request. Wait and start "
                "again, or replace it with `%mlflow_server restart` (`stop` ends it). Last "
                f"lines of its log ({record.log_path}):\n{tail}")
        version = outcome.version
    if not record.mlflow_version:  # its starter died before it answered: finish the record
        listener = ports.record_listener(record)
        record = dataclasses.replace(record, started_at=time.time(), mlflow_version=version,
                                     listener=listener.to_dict() if listener else None)
        records.write_record(record)
    return Reused(_detach_if_needed(config, record), status.risks(config.data_dir, record))


def _must_detach(config: ServerConfig, record: ServerRecord) -> bool:
    """A server attached to another process is shared from now on (see _detach_if_needed)."""
    return record.attached and record.attached_pid != os.getpid() and not config.attached


def _detach_if_needed(config: ServerConfig, record: ServerRecord) -> ServerRecord:
    """Reusing a server attached to another kernel makes it a shared server.

    ``--attached`` means "stop with my kernel"; once another kernel (or the
    launcher tile) uses the server, stopping it with the first kernel would pull
    it from under the second. So it is detached: it keeps running until ``stop``.
    """
    if not _must_detach(config, record):
        return record
    with contextlib.suppress(OSError):
        records.attach_file(config.data_dir).unlink()
    detached = dataclasses.replace(record, attached=False, attached_pid=None,
                                   settings={**record.settings, "attached": False})
    records.write_record(detached)
    return detached


def _check_settings(config: ServerConfig, record: ServerRecord) -> None:
    """Refuse to silently reuse a server whose settings differ from what was asked."""
    wanted = config.settings()
    diffs = []
    for key in sorted(config.explicit):
        have = record.settings.get(key)
        if key == "attached":
            mine = record.attached and record.attached_pid == os.getpid()
            if config.attached and not mine:
                diffs.append("--attached: the running server is not attached to this "
                             "process")
            continue
        if key in ("workers", "jobs"):
            have = getattr(record, key)
        if have != wanted[key] and not (key == "extra_args" and not have and not wanted[key]):
            diffs.append(f"{SETTING_FLAGS[key]} is {have!r} on the running server, "
                         f"{wanted[key]!r} requested")
    if diffs:
        raise SettingsMismatchError(
            f"An MLflow server already runs for {config.data_dir} (pid {record.pid}, "
            f"{record.url}) with other settings: {'; '.join(diffs)}. Use "
            "`%mlflow_server restart` with your flags to replace it, or `%mlflow_server start` "
            "without them to reuse it as it is.")


def restart(options: ServerOptions, on_progress: Progress | None = None,
            on_url: UrlKnown | None = None) -> Launched:
    """Stop the folder's server and start it again: the same server, changed only where
    ``options`` says, on the same port, in one hold of the folder lock.

    The settings come from the folder's private options file (secrets included);
    bad flags are refused before anything is stopped.
    """
    on_progress = on_progress or launch.no_progress
    data_dir = resolve_data_dir(options.path)
    resolve(options)  # bad flags: refused while the server still runs
    records.prepare_folder(data_dir)
    with records.folder_lock(data_dir, (options.timeout or 120.0) + stop.LOCK_MARGIN):
        record = records.read_record(data_dir)
        if record is not None:
            records.refuse_foreign_host(record, "stop")
        old = records.read_options(data_dir) or _options_from_record(record)
        merged = merge_options(old, options) if old is not None else options
        if merged.port is None and record is not None:
            merged = dataclasses.replace(merged, port=record.port)  # kernels keep their URL
        config = resolve(merged)
        changes = tuple(changed(record.settings if record else {}, config.settings()))
        if record is not None and _keeps_its_socket(record, config):
            done = launch.relaunch(config, record, on_progress, on_url or launch.no_url)
        else:
            stop.stop_locked(data_dir)
            done = launch.launch(config, on_progress, on_url or launch.no_url)
        return dataclasses.replace(done, changes=changes)


def changed(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """What a restart changed, as ``workers 1 → 2`` (secrets are masked in both)."""
    if not before:
        return []
    return [f"{name.replace('_', ' ')} {_shown(before.get(name))} → {_shown(value)}"
            for name, value in after.items()
            if name != "port" and _shown(before.get(name)) != _shown(value)]


def _shown(value: object) -> str:
    if value is None or value == "" or value == []:
        return "(none)"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def _keeps_its_socket(record: ServerRecord, config: ServerConfig) -> bool:
    """A restart on the same address: the keeper replaces its server in place."""
    return (record.keeper and records.process_of(record) is not None
            and ports.record_listener(record) is not None
            and record.port == config.port and record.host == config.host)


def revive(data_dir: Path, port: int) -> Launched | Reused:
    """Bring a folder's server back on ``port`` after its keeper died (a reboot, kill -9),
    with the settings it was started with: what an MLflow call, the Jupyter route or the
    tile does for a server nobody stopped. A port another program holds now is one
    paragraph (:class:`~mlflow_magic.errors.PortInUseError`)."""
    options = records.read_options(data_dir) or _options_from_record(records.read_record(data_dir))
    if options is None:
        options = ServerOptions(path=str(data_dir))
    options = dataclasses.replace(options, path=str(data_dir), port=port)
    return start(resolve(options))


def _options_from_record(record: ServerRecord | None) -> ServerOptions | None:
    """Rebuild the options of a server started before options files existed."""
    if record is None:
        return None
    known = {f.name for f in dataclasses.fields(ServerOptions)}
    values = {k: v for k, v in record.settings.items() if k in known and v is not None}
    if "***" in json.dumps(values):
        raise ConfigError(
            f"The server for {record.data_dir} was started by an older mlflow_magic, which "
            "kept its store passwords nowhere, so restart cannot bring them back. Restart it "
            "with its store flags (e.g. `%mlflow_server restart --backend-store-uri URI`).")
    values.update(path=record.data_dir, workers=record.workers, jobs=record.jobs)
    return ServerOptions.from_dict(values)
