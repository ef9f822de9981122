"""Launch a folder's server: hold a port, build its environment, spawn it, wait until it
answers, record it; on any failure leave nothing running.

:func:`launch_env` is pure (what the server process gets, from the config and what this
start chose); :func:`_launch_on` does the side effects in order; :func:`outcome_error` maps
how the wait ended to the one paragraph the user reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psutil

from ..contract import (
    ACTIVITY_FILE_ENV,
    ARGS_ENV,
    CACHE_DIR_ENV,
    JOURNAL_ENV,
    LISTEN_FD_ENV,
    LOG_ENV,
    PRIVATE_DIR_ENV,
    STATE_DIR_ENV,
    SYNC_TO_ENV,
    TOKEN_ENV,
    UPGRADE_ENV,
)
from ..errors import (
    ConfigError,
    MlflowMagicError,
    PortInUseError,
    StartFailedError,
    StartTimeoutError,
)
from ..paths import cache_dir
from ..remote import rest
from ..results import Launched
from ..security import keys, ownership, ports
from ..settings.config import ServerConfig, client_url, first_port
from ..settings.masking import mask_uri
from ..settings.server_command import (
    equivalent_command,
    inherited_settings,
    server_argv,
    server_env,
    server_flags,
)
from ..state import logfile, processes, records, syncstate
from ..state.records import ServerRecord
from . import basic_auth, diagnosis, status

#: Called with (phase, seconds since start) while a server starts.
Progress = Callable[[str, float], None]
#: Called with the server's URL as soon as a start has chosen it (before it answers).
UrlKnown = Callable[[str], None]

#: How many ports a start without ``--port`` tries when its server loses the port.
PORT_RETRIES = 3
POLL_INTERVAL = 0.1
#: How long a start waits for a port that nobody listens on but a killed server's
#: connections still hold.
LINGER_WAIT = 10.0


def no_progress(phase: str, elapsed: float) -> None:
    """Default progress callback: stay quiet."""


def no_url(url: str) -> None:
    """Default URL callback: nobody waits for it."""


# --- waiting for the server ---------------------------------------------------------------


@dataclass(frozen=True)
class Exited:
    """The process ended before it answered."""

    exit_code: int | None


@dataclass(frozen=True)
class Ready:
    """The server answered ``/health`` and ``/version``."""

    version: str


@dataclass(frozen=True)
class Taken:
    """Something answers on the port, but not a process of this server: someone else's."""


@dataclass(frozen=True)
class Unreachable:
    """The server's log says its database cannot be reached (it would retry for minutes)."""

    line: str


@dataclass(frozen=True)
class TimedOut:
    """Neither ready nor exited within the timeout."""

    last_error: str | None


def wait_ready(
    poll: Callable[[], int | None],
    url: str,
    timeout: float,
    on_tick: Callable[[float], None] | None = None,
    credentials: Callable[[], Mapping[str, str] | None] | None = None,
    fatal: Callable[[], str | None] | None = None,
) -> Ready | Exited | Taken | TimedOut | Unreachable:
    """Poll ``url`` until the server answers, ``poll()`` reports an exit, or time runs out.

    ``poll`` is ``Popen.poll`` for a server we just spawned, or a liveness check
    for one we found running. Once ``/health`` (open on every server) answers,
    ``credentials()`` gives the headers ``/version`` needs (the folder's key), or
    None if the port is not held by our server: then the answer is someone
    else's (:class:`Taken`), and nothing of ours is sent there. ``fatal()`` names a failure
    the server would only retry (its database cannot be reached): :class:`Unreachable`.
    """
    start = time.monotonic()
    while True:
        code = poll()
        if code is not None:
            return Exited(code)
        said = fatal() if fatal is not None else None
        if said is not None:
            return Unreachable(said)
        last = rest.health(url, timeout=1.0)
        if last.healthy:
            headers = credentials() if credentials is not None else {}
            if headers is None:
                return Taken()
            last = rest.version(url, timeout=1.0, headers=headers)
            if last.answering:
                return Ready(last.version or "unknown (login required)")
        elapsed = time.monotonic() - start
        if on_tick is not None:
            on_tick(elapsed)
        if elapsed > timeout:
            return TimedOut(last.error)
        time.sleep(POLL_INTERVAL)



# --- the port -----------------------------------------------------------------------------


def check_port(config: ServerConfig) -> None:
    """A taken ``--port`` is explained before anything is created."""
    if config.port is None:
        return
    try:
        free = processes.port_is_free(config.host, config.port)
    except PermissionError:
        raise ConfigError(_privileged(config.port)) from None
    if not free:
        _port_taken(config)


def _privileged(port: int) -> str:
    return (f"Port {port} cannot be used: ports below 1024 need root (nothing else holds "
            "it). Leave --port out to take the first free port from 5000, or choose one from "
            "1024 up.")


def _listen(config: ServerConfig, tried: list[int]) -> socket.socket:
    """The server's listening socket, held from now on: on ``--port``, else the first port
    from 5000 that this start can hold (a taken ``--port`` is explained)."""
    try:
        if config.port is None:
            return processes.listen_on_first_free(config.host, first_port(), skip=tried)
        sock = processes.listen_on(config.host, config.port)
        deadline = time.monotonic() + LINGER_WAIT
        while sock is None and _passing(config.port) and time.monotonic() < deadline:
            time.sleep(0.2)
            sock = processes.listen_on(config.host, config.port)
    except PermissionError:
        raise ConfigError(_privileged(config.port or first_port())) from None
    except OSError as exc:
        raise ConfigError(
            f"No port could be held on {config.host} for the MLflow server: "
            f"{exc.strerror or exc}. Free a port, or name one with --port.") from None
    if sock is None:
        _port_taken(config)
    return sock


def _passing(port: int) -> bool:
    """What holds the port goes away by itself within seconds: connections of a killed
    server that linger (nobody listens), or a server of ours that is ending (one whose
    keeper was killed a moment ago ends itself within a second)."""
    owner = ownership.port_owner(port)
    if owner is None:
        return True
    if owner != os.geteuid():
        return False
    with contextlib.suppress(ports.PortTaken):
        if ports.server_on_port(port) is not None:
            return False  # a server of another folder of ours: it stays
    holder = processes.port_holder_process(port)
    return holder is None or processes.is_mlflow_magic(holder)


def _port_taken(config: ServerConfig) -> NoReturn:
    """Explain who holds the requested ``--port``."""
    assert config.port is not None
    url = client_url(config.host, config.port)
    found = rest.probe(url, timeout=1.0)  # nothing of ours goes to a port we do not hold
    owner = ownership.port_owner(config.port)
    if owner is not None and owner != os.geteuid():
        raise PortInUseError(
            f"Port {config.port} is held by another user ({processes.user_name(owner)}) of "
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
    holder = processes.port_holder_process(config.port)
    if processes.is_mlflow_server(holder):
        raise PortInUseError(
            f"Port {config.port} is held by an MLflow server that is still starting (pid "
            f"{holder.pid}) and was not started for {config.data_dir}. Choose another --port, "  # type: ignore[union-attr]
            "or leave --port out to take the first free port.")
    raise PortInUseError(
        f"Port {config.port} on {config.host} is held by {processes.port_holder(config.port)}, "
        "which is not an MLflow server. Choose another --port, leave --port out to take the "
        "first free port, or stop that process.")


# --- the launch ---------------------------------------------------------------------------


def launch(config: ServerConfig, on_progress: Progress,
            on_url: UrlKnown = no_url) -> Launched:
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


def launch_env(config: ServerConfig, port: int, *, token: str, listen_fd: int, log: Path,
               cache: Path, base: Mapping[str, str],
               app_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Everything the server process gets in its environment, and nothing else: the
    kernel's environment cleaned (``base``, see :func:`server_env`), what its app needs
    (``app_env``: basic auth's secret key and config), and the names of
    :mod:`mlflow_magic.contract` that tell the server what this start chose. Pure: the
    files it names (the key, the activity file) are made by the caller or the keeper."""
    env = {**base, **(app_env or {})}
    if config.private:  # the gate refuses every request without the folder's key
        env[PRIVATE_DIR_ENV] = str(records.record_dir(config.data_dir))
    env.update({TOKEN_ENV: token, ARGS_ENV: json.dumps(server_flags(config, port)),
                LOG_ENV: str(log), CACHE_DIR_ENV: str(cache), LISTEN_FD_ENV: str(listen_fd),
                ACTIVITY_FILE_ENV: str(records.activity_path(config.data_dir))})
    if config.upgrade_db:
        env[UPGRADE_ENV] = "1"
    if config.sync_to:
        env[JOURNAL_ENV] = str(records.journal_path(config.data_dir))
    return env


def sync_spec(config: ServerConfig, env: Mapping[str, str],
              environ: Mapping[str, str]) -> dict[str, object] | None:
    """What the keeper runs next to the server for ``--sync-to`` (:mod:`mlflow_magic.syncer`):
    the server's environment (the push's credentials, ``MLFLOW_TRACKING_*``, pass through
    it), less what only the server uses, plus the team server's URL. Pure."""
    if not config.sync_to:
        return None
    sync_env = {k: v for k, v in env.items()
                if k not in (LISTEN_FD_ENV, JOURNAL_ENV, ACTIVITY_FILE_ENV, ARGS_ENV)}
    sync_env[SYNC_TO_ENV] = config.sync_to
    if STATE_DIR_ENV in environ:
        sync_env[STATE_DIR_ENV] = environ[STATE_DIR_ENV]
    return {"argv": [sys.executable, "-m", "mlflow_magic.syncer.main", str(config.data_dir)],
            "env": sync_env}


def keeper_spec(config: ServerConfig, port: int, argv: list[str], env: Mapping[str, str],
                starter_pid: int, environ: Mapping[str, str] | None = None
                ) -> dict[str, object]:
    """What the keeper (:mod:`mlflow_magic.keeper.main`) runs and watches. Pure."""
    return {"argv": argv, "env": dict(env), "port": port,
            "sync": sync_spec(config, env, os.environ if environ is None else environ),
            "idle_timeout": config.idle_timeout,
            "activity_file": str(records.activity_path(config.data_dir)),
            "state_file": str(records.keeper_state_path(config.data_dir)),
            "attached_pid": starter_pid if config.attached else None,
            "attach_file": str(records.attach_file(config.data_dir)) if config.attached
            else None}


def keeper_argv(data_dir: Path) -> list[str]:
    """The keeper's command line: the spec's path (no secret) and nothing else."""
    return [sys.executable, "-m", "mlflow_magic.keeper.main",
            str(records.keeper_spec_path(data_dir))]


def outcome_error(config: ServerConfig, outcome: Exited | Taken | TimedOut | Unreachable,
                  url: str, port: int, log: Path, offset: int) -> MlflowMagicError:
    """How a start that did not get ready ended, as the one paragraph the user reads (with
    the end of the server's log where it says why)."""
    if isinstance(outcome, Unreachable):  # the stack stays in the log: one line of it here
        hint = diagnosis.hint(outcome.line, config.backend_store_uri) or (
            f"The database at {mask_uri(config.backend_store_uri)} cannot be reached.")
        return StartFailedError(
            f"The MLflow server for {config.data_dir} cannot reach its database, so it was "
            f"stopped. {hint} Its log ({log}) says:\n{outcome.line}", log_tail=outcome.line)
    if isinstance(outcome, Exited):
        return _start_failed(config, outcome.exit_code, diagnosis.log_tail(log, offset))
    if isinstance(outcome, TimedOut):
        log_tail = diagnosis.log_tail(log, offset)
        hint = diagnosis.hint(log_tail, config.backend_store_uri) or (
            "A slow disk or a remote database can make the first start slow: try a "
            "longer --timeout.")
        return StartTimeoutError(
            f"The MLflow server did not answer at {url} within {config.timeout:g} s, so "
            f"it was stopped. {hint} Last lines of its log ({log}):\n{log_tail}",
            log_tail=log_tail)
    return StartFailedError(
        f"Another server took port {port} on {config.host} while the MLflow server for "
        f"{config.data_dir} was starting, and answered in its place. Choose another --port, "
        "or leave --port out to take the next free one.", log_tail="address already in use")


def _server_environment(config: ServerConfig, port: int, token: str, listen_fd: int,
                        log: Path) -> dict[str, str]:
    """Make what the server needs on disk (the key, basic auth's files, the attach file, the
    keeper's spec), and return its environment (the keeper's too)."""
    base = server_env(config)
    app_env = basic_auth.server_env(config.app_name, config.data_dir, base)
    if config.private:
        keys.folder_key(config.data_dir, create=True)
    if config.attached:
        records.write_private(records.attach_file(config.data_dir), str(os.getpid()))
    env = launch_env(config, port, token=token, listen_fd=listen_fd, log=log,
                     cache=cache_dir(), base=base, app_env=app_env)
    if not config.sync_to:  # writes from now on are not journaled: a later sync reads all
        syncstate.forget_cursor(config.data_dir)
    spec = keeper_spec(config, port, server_argv(config, port), env, os.getpid())
    records.write_private(records.keeper_spec_path(config.data_dir), json.dumps(spec))
    return env


def relaunch(config: ServerConfig, record: ServerRecord, on_progress: Progress,
             on_url: UrlKnown) -> Launched:
    """Restart in place: the keeper replaces its server with one of ``config`` on the same
    socket, so the port is never free in between (nobody can take it, no call is refused).

    The new server's early exit ends the keeper, as a failed start does (the old server is
    gone by then, as with any restart)."""
    started = time.monotonic()
    port = record.port
    log, offset, command = _open_log(config, port)
    _server_environment(config, port, record.token, 0, log)  # the spec; the keeper sets the fd
    old = records.keeper_state(record)
    on_url(record.url)
    on_progress(diagnosis.PHASE_ORDER[0], time.monotonic() - started)
    os.kill(record.pid, signal.SIGHUP)

    def alive() -> int | None:
        """The keeper's exit (None while it runs)."""
        if records.process_of(record) is not None:
            return None
        state = records.read_keeper_state(config.data_dir)
        return state.last_exit if state is not None and state.last_exit is not None else 1

    def replaced() -> bool:
        now = records.keeper_state(record)
        return now is not None and now.server is not None and (
            old is None or now.server != old.server or now.since > old.since)

    deadline = time.monotonic() + config.timeout
    while not replaced() and alive() is None and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    outcome = wait_ready(alive, record.url, config.timeout,
                         on_tick=lambda _: on_progress(
                             diagnosis.phase(logfile.tail(log, 200, offset)),
                             time.monotonic() - started),
                         credentials=lambda: ports.credentials(record))
    if not isinstance(outcome, Ready):
        if records.process_of(record) is not None:
            stop_keeper(record)
        records.remove_record(config.data_dir)
        raise outcome_error(config, outcome, record.url, port, log, offset)
    record = dataclasses.replace(
        record, started_at=time.time(), mlflow_version=outcome.version,
        settings={**config.settings(), "port": port}, command=command,
        workers=config.workers, jobs=config.jobs, attached=config.attached,
        attached_pid=os.getpid() if config.attached else None,
        inherited_env=inherited_settings(), private=config.private,
        idle_timeout=config.idle_timeout)
    records.write_options(config.data_dir, config.options)
    records.write_record(record)
    arm(record)
    on_progress("ready", time.monotonic() - started)
    return Launched(record, time.monotonic() - started, status.risks(config.data_dir, record))


def stop_keeper(record: ServerRecord) -> None:
    """End a keeper and its server (a restart that failed)."""
    processes.stop_processes(
        processes.server_processes(record.pid, record.create_time, record.token), grace=5)


def arm(record: ServerRecord) -> None:
    """Tell the record's keeper that its server answered: a crash from now on is healed."""
    if record.keeper and records.process_of(record) is not None:
        with contextlib.suppress(OSError):
            os.kill(record.pid, signal.SIGUSR1)


def _open_log(config: ServerConfig, port: int) -> tuple[Path, int, list[str]]:
    """The server's log, rotated, with this start's line: (path, where this start's output
    begins, the equivalent ``mlflow server`` command)."""
    log = records.log_path(config.data_dir)
    logfile.rotate(log)
    command = equivalent_command(config, port)
    try:
        logfile.append(log, f"\n--- mlflow_magic {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                            f"{' '.join(command)}\n")
    except OSError as exc:
        raise ConfigError(
            f"The server's log {log} cannot be written: {exc.strerror or exc}. Free some "
            "space on the data folder's disk, or choose another folder with --path.") from None
    return log, logfile.size(log), command


def _launch_on(config: ServerConfig, sock: socket.socket, started: float,
               on_progress: Progress, on_url: UrlKnown) -> Launched:
    """Spawn the server on the held socket ``sock``, record it at once, wait until it
    answers from its own socket, then record it as ready."""
    port = sock.getsockname()[1]
    log, offset, command = _open_log(config, port)
    token = secrets.token_hex(12)
    env = _server_environment(config, port, token, sock.fileno(), log)
    url = client_url(config.host, port)
    on_progress(diagnosis.PHASE_ORDER[0], time.monotonic() - started)
    # The keeper holds the port from now until `stop`, and runs the server on it.
    proc = processes.spawn(keeper_argv(config.data_dir), env, log, pass_fds=[sock.fileno()])
    sock.close()  # the keeper holds the port now
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
            inherited_env=inherited_settings(), private=config.private, keeper=True,
            idle_timeout=config.idle_timeout)
        records.write_record(record)
        on_url(url)
        held: list[ownership.Listener] = []

        def credentials() -> dict[str, str] | None:
            """Our key goes only to our own process's socket, never to a rival's."""
            listener = ownership.find_listener(
                processes.server_processes(proc.pid, create_time, token), port)
            if listener is None:
                return None
            held[:] = [listener]
            return ports.key_headers(record)

        outcome = wait_ready(
            proc.poll, url, config.timeout,
            on_tick=lambda _: on_progress(diagnosis.phase(logfile.tail(log, 200, offset)),
                                          time.monotonic() - started),
            credentials=credentials,
            fatal=lambda: diagnosis.store_unreachable(logfile.tail(log, 200, offset)))
        if not isinstance(outcome, Ready) or not held:  # only our own listener counts
            raise outcome_error(config, outcome if not isinstance(outcome, Ready) else Taken(),
                                url, port, log, offset)
        record = dataclasses.replace(record, started_at=time.time(),
                                     mlflow_version=outcome.version,
                                     listener=held[0].to_dict())
        records.write_options(config.data_dir, config.options)  # upgrade_db is not kept
        records.write_record(record)
        arm(record)  # it answered once: from now on the keeper heals a crash
    except BaseException:
        # Includes KeyboardInterrupt: an interrupted start must not leave a server behind.
        # The leader may already be reaped (its pid free for reuse): only processes that
        # carry this start's token are signalled.
        processes.stop_processes(processes.server_processes(proc.pid, create_time, token),
                                 grace=5)
        proc.wait()
        records.remove_record(config.data_dir)
        raise
    on_progress("ready", time.monotonic() - started)
    return Launched(record, time.monotonic() - started, status.risks(config.data_dir, record))


def _start_failed(config: ServerConfig, code: int | None, log_tail: str) -> StartFailedError:
    """Explain an early exit, with the exit code and the log tail."""
    hint = diagnosis.hint(log_tail, config.backend_store_uri) or (
        "The log below says why; fix that and start again.")
    return StartFailedError(
        f"The MLflow server for {config.data_dir} exited with code {code} before it "
        f"answered. {hint} Last lines of its log "
        f"({records.log_path(config.data_dir)}):\n{log_tail}",
        exit_code=code, log_tail=log_tail)
