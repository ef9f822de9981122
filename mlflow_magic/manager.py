"""Start, reuse, stop and inspect the one MLflow server of a data folder.

Pure orchestration over :mod:`config`, :mod:`registry` and :mod:`process`: no
IPython, no printing. Successes come back as typed results
(:mod:`results`), failures as :class:`~mlflow_magic.errors.MlflowMagicError`
subclasses whose message tells the user what to do.

The promises (the README's "Guarantees"): a start reuses the folder's server
only if every setting the user named matches; a live server is never ended by
a start, however slow it answers (only ``stop`` and ``restart`` end one);
``restart`` brings back the same server, changed only where a flag says, in
one hold of the folder lock; ``stop`` ends every process of the server and
nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import psutil

from . import access, auth, diagnosis, logfile, ownership, process, registry, rest
from .config import ServerConfig, first_port, resolve, resolve_data_dir
from .contract import (
    ARGS_ENV,
    ATTACH_FILE,
    ATTACH_FILE_ENV,
    CACHE_DIR_ENV,
    LISTEN_FD_ENV,
    LOG_ENV,
    PARENT_ENV,
    PRIVATE_DIR_ENV,
    UPGRADE_ENV,
)
from .errors import (
    ConfigError,
    ForeignHostError,
    MlflowMagicError,
    PortInUseError,
    SettingsMismatchError,
    StartFailedError,
    StartTimeoutError,
    UnresponsiveError,
)
from .masking import mask_text
from .options import SETTING_FLAGS, ServerOptions, merge_options
from .paths import cache_dir
from .registry import ServerRecord
from .results import (
    Launched,
    LogTail,
    Reused,
    ServerList,
    ServerStatus,
    Stopped,
    StoppedAll,
)
from .server_command import (
    equivalent_command,
    inherited_settings,
    server_argv,
    server_env,
    server_flags,
)

#: Called with (phase, seconds since start) while a server starts.
Progress = Callable[[str, float], None]
#: Called with the server's URL as soon as a start has chosen it (before it answers).
UrlKnown = Callable[[str], None]

PORT_RETRIES = 3
LOCK_MARGIN = 30.0
LOG_TAIL_LINES = 30


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses: wildcard hosts become loopback."""
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _no_progress(phase: str, elapsed: float) -> None:
    """Default progress callback: stay quiet."""


def _no_url(url: str) -> None:
    """Default URL callback: nobody waits for it."""


# --- start -------------------------------------------------------------------------------


def start(config: ServerConfig, on_progress: Progress | None = None,
          on_url: UrlKnown | None = None) -> Launched | Reused:
    """Reuse the folder's running server, or start one and wait until it answers.

    A healthy server is reused without taking the folder lock (its record is
    written atomically), which keeps a new kernel's ``start`` fast. Anything else
    happens under the lock, held for the whole start, so concurrent starts on
    one folder (other kernels, terminals, the JupyterLab launcher) wait and then
    reuse the one server instead of starting a second one on the same database.
    """
    registry.refuse_foreign(config.data_dir)
    record = registry.read_record(config.data_dir)
    if record is not None and record.mlflow_version and registry.process_of(record) is not None \
            and not _must_detach(config, record) and _probe(record).answering:
        _check_settings(config, record)
        return Reused(record, _warnings(config.data_dir, record))
    if record is None and config.port is not None:
        _check_port(config)
    registry.prepare_folder(config.data_dir)
    with registry.folder_lock(config.data_dir, config.timeout + LOCK_MARGIN):
        return _start_locked(config, on_progress or _no_progress, on_url or _no_url)


def _start_locked(config: ServerConfig, on_progress: Progress,
                  on_url: UrlKnown) -> Launched | Reused:
    record = registry.read_record(config.data_dir)
    if record is not None:
        _refuse_foreign_host(record, "start")
        if registry.process_of(record) is not None:
            return _reuse_live(config, record, on_progress, on_url)
        _end_remains(record)  # crashed: workers that outlived their leader go too
        registry.remove_record(config.data_dir)
    return _launch(config, on_progress, on_url)


def _reuse_live(config: ServerConfig, record: ServerRecord,
                on_progress: Progress, on_url: UrlKnown) -> Launched | Reused:
    """A live server is reused, never replaced: if it is busy, wait for it to answer."""
    _check_settings(config, record)
    found = _probe(record)
    version = found.version or "unknown (login required)"
    if not found.answering:
        on_url(record.url)
        started = time.monotonic()
        outcome = process.wait_ready(
            lambda: None if registry.process_of(record) is not None else -1,
            record.url, config.timeout,
            on_tick=lambda _: on_progress(diagnosis.BUSY_PHASE, time.monotonic() - started),
            credentials=lambda: access.credentials(record))
        if isinstance(outcome, process.Exited):  # it died while we waited: replace it
            _end_remains(record)
            registry.remove_record(config.data_dir)
            return _launch(config, on_progress, on_url)
        if isinstance(outcome, process.Taken):
            raise UnresponsiveError(
                f"The MLflow server for {config.data_dir} (pid {record.pid}) runs, but another "
                f"program answers on its port {record.port}, so nothing was sent there. "
                "Replace the server with `%mlflow_server restart` (it keeps its settings), or "
                "end it with `%mlflow_server stop`.")
        if isinstance(outcome, process.TimedOut):
            tail = _log_tail(Path(record.log_path))
            raise UnresponsiveError(
                f"The MLflow server for {config.data_dir} (pid {record.pid}, {record.url}) "
                f"runs but has not answered for {config.timeout:g} s ({outcome.last_error}). "
                "It was left running: it may be busy with a long request. Wait and start "
                "again, or replace it with `%mlflow_server restart` (`stop` ends it). Last "
                f"lines of its log ({record.log_path}):\n{tail}")
        version = outcome.version
    if not record.mlflow_version:  # its starter died before it answered: finish the record
        listener = access.record_listener(record)
        record = dataclasses.replace(record, started_at=time.time(), mlflow_version=version,
                                     listener=listener.to_dict() if listener else None)
        registry.write_record(record)
    return Reused(_detach_if_needed(config, record), _warnings(config.data_dir, record))


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
        _attach_file(config.data_dir).unlink()
    detached = dataclasses.replace(record, attached=False, attached_pid=None,
                                   settings={**record.settings, "attached": False})
    registry.write_record(detached)
    return detached


def _attach_file(data_dir: Path) -> Path:
    """While it exists, an ``--attached`` server stops when its kernel exits."""
    return registry.record_dir(data_dir) / ATTACH_FILE


def _refuse_foreign_host(record: ServerRecord, action: str) -> None:
    """A shared home (NFS) seen from two hosts: never start a second server on one store."""
    if registry.on_this_host(record):
        return
    hint = ("Stop it there (`%mlflow_server stop` on that host), or use another --path here. "
            "If that host is gone for good, `%mlflow_server stop --force` forgets its record.")
    raise ForeignHostError(
        f"The MLflow server for {record.data_dir} was started on host {record.hostname!r} "
        f"(pid {record.pid}, {record.url}), not on this host ({socket.gethostname()!r}), so "
        f"it cannot be checked or {'stopped' if action == 'stop' else 'reused'} from here, "
        f"and a second server on the same store would corrupt it. {hint}")


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


def _check_port(config: ServerConfig) -> None:
    """A taken ``--port`` is explained before anything is created."""
    if config.port is not None and not process.port_is_free(config.host, config.port):
        _port_taken(config)


def _listen(config: ServerConfig, tried: list[int]) -> socket.socket:
    """The server's listening socket, held from now on: on ``--port``, else the first port
    from 5000 that this start can hold (a taken ``--port`` is explained)."""
    try:
        if config.port is None:
            return process.listen_on_first_free(config.host, first_port(), skip=tried)
        sock = process.listen_on(config.host, config.port)
    except OSError as exc:
        raise ConfigError(
            f"No port could be held on {config.host} for the MLflow server: "
            f"{exc.strerror or exc}. Free a port, or name one with --port.") from None
    if sock is None:
        _port_taken(config)
    return sock


def _port_taken(config: ServerConfig) -> NoReturn:
    """Explain who holds the requested ``--port``."""
    assert config.port is not None
    url = client_url(config.host, config.port)
    found = rest.probe(url, timeout=1.0)  # nothing of ours goes to a port we do not hold
    owner = ownership.port_owner(config.port)
    if owner is not None and owner != os.geteuid():
        raise PortInUseError(
            f"Port {config.port} is held by another user ({ownership.user_name(owner)}) of "
            f"this machine{', whose MLflow server answers there' if found.answering else ''}. "
            "Choose another --port, or leave --port out to take the first free port.")
    if found.answering:
        what = (f"a private MLflow server of yours that was not started for {config.data_dir}"
                if found.private else f"an MLflow {found.version} server that was not started "
                f"for {config.data_dir}")
        raise PortInUseError(
            f"Port {config.port} is already used by {what}. Use it with `%mlflow_server "
            f"connect {url}`, choose another --port, or leave --port out to take the first "
            "free port.")
    holder = process.port_holder_process(config.port)
    if process.is_mlflow_server(holder):
        raise PortInUseError(
            f"Port {config.port} is held by an MLflow server that is still starting (pid "
            f"{holder.pid}) and was not started for {config.data_dir}. Choose another --port, "  # type: ignore[union-attr]
            "or leave --port out to take the first free port.")
    raise PortInUseError(
        f"Port {config.port} on {config.host} is held by {process.port_holder(config.port)}, "
        "which is not an MLflow server. Choose another --port, leave --port out to take the "
        "first free port, or stop that process.")


def _launch(config: ServerConfig, on_progress: Progress,
            on_url: UrlKnown = _no_url) -> Launched:
    """Spawn the server, wait for it, record it; on any failure leave nothing running.

    The port is held from the moment it is chosen (:func:`_listen`): the address shown
    at once is the one served. A start still moves to another port if its server lost
    the port anyway (a web server that cannot take the socket binds for itself).
    """
    started = time.monotonic()
    tried: list[int] = []
    while True:
        sock = _listen(config, tried)
        port = sock.getsockname()[1]
        tried.append(port)
        try:
            return _launch_on(config, sock, started, on_progress, on_url)
        except StartFailedError as exc:
            port_taken = "address already in use" in exc.log_tail.lower()
            if config.port is not None or not port_taken or len(tried) >= PORT_RETRIES:
                raise
        finally:
            sock.close()


def _launch_on(config: ServerConfig, sock: socket.socket, started: float,
               on_progress: Progress, on_url: UrlKnown) -> Launched:
    port = sock.getsockname()[1]
    log = registry.log_path(config.data_dir)
    logfile.rotate(log)
    command = equivalent_command(config, port)
    try:
        logfile.append(log, f"\n--- mlflow_magic {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                            f"{' '.join(command)}\n")
    except OSError as exc:
        raise ConfigError(
            f"The server's log {log} cannot be written: {exc.strerror or exc}. Free some "
            "space on the data folder's disk, or choose another folder with --path.") from None
    offset = logfile.size(log)
    token = secrets.token_hex(12)
    env = server_env(config)
    env.update(auth.server_env(config.app_name, config.data_dir, env))
    if config.private:  # the gate refuses every request without the folder's key
        access.folder_key(config.data_dir, create=True)
        env[PRIVATE_DIR_ENV] = str(registry.record_dir(config.data_dir))
    env.update({process.TOKEN_ENV: token, ARGS_ENV: json.dumps(server_flags(config, port)),
                LOG_ENV: str(log), CACHE_DIR_ENV: str(cache_dir())})
    if config.upgrade_db:
        env[UPGRADE_ENV] = "1"
    if config.attached:
        registry.write_private(_attach_file(config.data_dir), str(os.getpid()))
        env.update({PARENT_ENV: str(os.getpid()),
                    ATTACH_FILE_ENV: str(_attach_file(config.data_dir))})
    env[LISTEN_FD_ENV] = str(sock.fileno())
    url = client_url(config.host, port)
    on_progress(diagnosis.PHASE_ORDER[0], time.monotonic() - started)
    proc = process.spawn(server_argv(config, port), env, log, pass_fds=[sock.fileno()])
    sock.close()  # the server holds the port now
    create_time = psutil.Process(proc.pid).create_time()  # not reaped yet: always readable
    try:
        # Recorded at once, before it answers: `stop --all`, `status` ("starting") and a
        # later start see it even if this process dies meanwhile (a kernel killed during a
        # background start): the next start then waits for this server instead of
        # starting a second one on the same store.
        record = ServerRecord(
            data_dir=str(config.data_dir), pid=proc.pid, create_time=create_time,
            host=config.host, port=port, url=url, started_at=time.time(),
            mlflow_version="", settings={**config.settings(), "port": port},
            command=command, log_path=str(log), workers=config.workers, jobs=config.jobs,
            attached=config.attached, hostname=socket.gethostname(), token=token,
            attached_pid=os.getpid() if config.attached else None,
            inherited_env=inherited_settings(), private=config.private)
        registry.write_record(record)
        on_url(url)
        held: list[ownership.Listener] = []

        def credentials() -> dict[str, str] | None:
            """Our key goes only to our own process's socket, never to a rival's."""
            listener = ownership.find_listener(
                process.server_processes(proc.pid, create_time, token), port)
            if listener is None:
                return None
            held[:] = [listener]
            return access.key_headers(record)

        outcome = process.wait_ready(
            proc.poll, url, config.timeout,
            on_tick=lambda _: on_progress(diagnosis.phase(logfile.tail(log, 200, offset)),
                                          time.monotonic() - started),
            credentials=credentials)
        if isinstance(outcome, process.Exited):
            raise _start_failed(config, outcome.exit_code, _log_tail(log, offset))
        if isinstance(outcome, process.TimedOut):
            log_tail = _log_tail(log, offset)
            hint = diagnosis.hint(log_tail, config.backend_store_uri) or (
                "A slow disk or a remote database can make the first start slow: try a "
                "longer --timeout.")
            raise StartTimeoutError(
                f"The MLflow server did not answer at {url} within {config.timeout:g} s, so "
                f"it was stopped. {hint} Last lines of its log ({log}):\n{log_tail}",
                log_tail=log_tail)
        if isinstance(outcome, process.Taken) or not held:  # only our own listener counts
            raise StartFailedError(
                f"Another server took port {port} on {config.host} while the MLflow server "
                f"for {config.data_dir} was starting, and answered in its place. Choose "
                "another --port, or leave --port out to take the next free one.",
                log_tail="address already in use")
        record = dataclasses.replace(record, started_at=time.time(),
                                     mlflow_version=outcome.version,
                                     listener=held[0].to_dict())
        registry.write_options(config.data_dir, config.options)  # upgrade_db is not kept
        registry.write_record(record)
    except BaseException:
        # Includes KeyboardInterrupt: an interrupted start must not leave a server behind.
        # The leader may already be reaped (its pid free for reuse): only processes that
        # carry this start's token are signalled.
        process.stop_processes(process.server_processes(proc.pid, create_time, token), grace=5)
        proc.wait()
        registry.remove_record(config.data_dir)
        raise
    on_progress("ready", time.monotonic() - started)
    return Launched(record, time.monotonic() - started, _warnings(config.data_dir, record))


def _warnings(data_dir: Path, record: ServerRecord | None) -> tuple[str, ...]:
    """The risks a user should know of: a server anyone can write to, data anyone can read."""
    found = []
    if record is not None and not record.private \
            and record.settings.get("app_name") != auth.BASIC_AUTH:
        found.append(
            f"This server listens on {record.host}, beyond this machine, and asks for no "
            f"login: anyone who can reach port {record.port} can read, change and delete its "
            "experiments and models, and plant artifacts that run as code when a model is "
            "loaded. Restart it with --app-name basic-auth (see the README's \"From laptop to "
            "team\"), or leave --host out to keep it on 127.0.0.1.")
    exposed = registry.open_to_others(data_dir)
    if exposed:
        found.append(
            f"Other users of this machine can read or change this folder's data: "
            f"{', '.join(exposed)}. Make it yours alone with `chmod -R go-rwx {data_dir}` "
            "(new folders are made that way).")
    return tuple(found)


def _probe(record: ServerRecord, timeout: float = 2.0) -> rest.Probe:
    """Is the record's server up? Asked only of the process that holds its port."""
    headers = access.credentials(record)
    if headers is None:
        return rest.Probe(False, error="its port is not held by its process")
    return rest.probe(record.url, timeout=timeout, headers=headers)


def _log_tail(log: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The end of the log, secrets masked, for an error message or a status."""
    return mask_text(logfile.tail(log, lines, offset))


def _start_failed(config: ServerConfig, code: int | None, log_tail: str) -> StartFailedError:
    """Explain an early exit, with the exit code and the log tail."""
    hint = diagnosis.hint(log_tail, config.backend_store_uri) or (
        "The log below says why; fix that and start again.")
    return StartFailedError(
        f"The MLflow server for {config.data_dir} exited with code {code} before it "
        f"answered. {hint} Last lines of its log "
        f"({registry.log_path(config.data_dir)}):\n{log_tail}",
        exit_code=code, log_tail=log_tail)


# --- stop and restart ---------------------------------------------------------------------


def _processes(record: ServerRecord) -> list[psutil.Process]:
    return process.server_processes(record.pid, record.create_time, record.token)


def _end_remains(record: ServerRecord) -> list[psutil.Process]:
    """Stop every process of the recorded server; sweep once more for late forks."""
    procs = _processes(record)
    if procs:
        process.stop_processes(procs)
        process.stop_processes(_processes(record), grace=2)
    return procs


def stop(data_dir: Path, force: bool = False) -> Stopped:
    """Stop the folder's server and every process it spawned; forget its record.

    A folder that no longer exists is only dropped from the list of known
    servers: stopping never creates anything.
    """
    if not registry.record_dir(data_dir).is_dir():
        registry.forget_folder(data_dir)
        return Stopped(str(data_dir), None)
    registry.refuse_foreign(data_dir)
    with registry.folder_lock(data_dir, LOCK_MARGIN):
        return _stop_locked(data_dir, force)


def _stop_locked(data_dir: Path, force: bool = False) -> Stopped:
    record = registry.read_record(data_dir)
    if record is not None and not registry.on_this_host(record):
        if not force:
            _refuse_foreign_host(record, "stop")
        registry.remove_record(data_dir)
        return Stopped(str(data_dir), None, forgot=record)
    ended = _end_remains(record) if record is not None else []
    registry.remove_record(data_dir)
    with contextlib.suppress(OSError):
        _attach_file(data_dir).unlink()
    return Stopped(str(data_dir), record if ended else None)


def stop_all() -> StoppedAll:
    """Stop the server of every known data folder; one failure does not stop the rest."""
    stopped, failed = [], []
    for folder in registry.known_data_dirs():
        try:
            stopped.append(stop(folder))
        except (MlflowMagicError, OSError) as exc:
            failed.append((str(folder), str(exc)))
    return StoppedAll(stopped, failed)


def restart(options: ServerOptions, on_progress: Progress | None = None,
            on_url: UrlKnown | None = None) -> Launched:
    """Stop the folder's server and start it again: the same server, changed only where
    ``options`` says, on the same port, in one hold of the folder lock.

    The settings come from the folder's private options file (secrets included);
    bad flags are refused before anything is stopped.
    """
    on_progress = on_progress or _no_progress
    data_dir = resolve_data_dir(options.path)
    resolve(options)  # bad flags: refused while the server still runs
    registry.prepare_folder(data_dir)
    with registry.folder_lock(data_dir, (options.timeout or 120.0) + LOCK_MARGIN):
        record = registry.read_record(data_dir)
        if record is not None:
            _refuse_foreign_host(record, "stop")
        old = registry.read_options(data_dir) or _options_from_record(record)
        merged = merge_options(old, options) if old is not None else options
        if merged.port is None and record is not None:
            merged = dataclasses.replace(merged, port=record.port)  # kernels keep their URL
        config = resolve(merged)
        _stop_locked(data_dir)
        return _launch(config, on_progress, on_url or _no_url)


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


# --- inspect ------------------------------------------------------------------------------


def status(data_dir: Path) -> ServerStatus:
    """The folder's server state, read-only: a stale record is reported, not removed;
    with what the folder exposes to other users named."""
    found = _status(data_dir)
    warnings = _warnings(data_dir, found.server) if found.state != "foreign" else ()
    return dataclasses.replace(found, warnings=warnings) if warnings else found


def _status(data_dir: Path) -> ServerStatus:
    foreign = registry.foreign_owner(data_dir)
    if foreign is not None:
        return ServerStatus(str(data_dir), "foreign", detail=f"{foreign}; only its owner can "
                            "start, stop or check its server")
    record = registry.read_record(data_dir)
    log = registry.log_path(data_dir)
    log_str = str(log) if log.exists() else None
    if record is None:
        return ServerStatus(str(data_dir), "stopped", log_path=log_str)
    if not registry.on_this_host(record):
        return ServerStatus(str(data_dir), "elsewhere", record, log_path=log_str,
                            detail=f"started on host {record.hostname}; only that host can "
                                   "check or stop it")
    if registry.process_of(record) is None:
        remains = _processes(record)
        detail = ("process is gone; the next start replaces it" if not remains else
                  f"its main process is gone but {len(remains)} of its processes still run; "
                  "`stop` ends them, the next start replaces them")
        return ServerStatus(str(data_dir), "crashed", record, detail=detail,
                            log_path=log_str, log_tail=_log_tail(log, lines=15))
    # A server still starting holds its port already (connections wait for it): ask briefly.
    found = _probe(record, timeout=2.0 if record.mlflow_version else 0.3)
    if found.answering:
        return ServerStatus(str(data_dir), "running", record, log_path=log_str,
                            detail=f"OK (MLflow {found.version})" if found.healthy
                            else "OK (MLflow, login required)")
    if not record.mlflow_version:  # recorded at spawn, not answered yet (see _launch_on)
        return ServerStatus(str(data_dir), "starting", record, log_path=log_str,
                            detail="starting; MLflow calls wait for it")
    return ServerStatus(str(data_dir), "unresponsive", record, detail=found.error,
                        log_path=log_str, log_tail=_log_tail(log, lines=15))


def list_servers() -> ServerList:
    """The state of every data folder with a recorded server; deleted folders are dropped."""
    statuses = []
    for folder in registry.known_data_dirs():
        if not folder.is_dir():
            registry.forget_folder(folder)
            continue
        statuses.append(status(folder))
    return ServerList([s for s in statuses if s.state != "stopped"])


def logs(data_dir: Path, lines: int = 30) -> LogTail:
    """The last ``lines`` lines of the folder's server log, secrets masked."""
    log = registry.log_path(data_dir)
    return LogTail(str(log), _log_tail(log, lines=lines))
