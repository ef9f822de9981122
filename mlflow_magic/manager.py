"""Start, reuse, stop and inspect the one MLflow server of a data folder.

Pure orchestration over :mod:`config`, :mod:`registry` and :mod:`process`: no
IPython, no printing. Successes come back as typed results
(:mod:`results`), failures as :class:`~mlflow_magic.errors.MlflowMagicError`
subclasses whose message tells the user what to do.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from . import process, registry
from .config import (
    FIRST_PORT,
    SETTING_FLAGS,
    ServerConfig,
    equivalent_command,
    mask_uri,
    resolve_data_dir,
    server_argv,
    server_env,
)
from .errors import (
    ConnectError,
    PortInUseError,
    SettingsMismatchError,
    StartFailedError,
    StartTimeoutError,
)
from .registry import ServerRecord
from .results import (
    Connected,
    Launched,
    LogTail,
    Reused,
    ServerList,
    ServerStatus,
    Stopped,
    StoppedAll,
)

#: Called with (phase, seconds since start) while a server starts.
Progress = Callable[[str, float], None]

#: The start-up phases, in order, as reported to a Progress callback.
PHASE_ORDER = ("starting Python and MLflow", "preparing database", "starting web server",
               "waiting for health", "ready")

#: Log lines that tell which start-up phase the server is in, latest phase first.
PHASES = (
    ("Uvicorn running", "waiting for health"),
    ("Started server process", "starting web server"),
    ("database tables", "preparing database"),
)
PORT_RETRIES = 3
LOCK_MARGIN = 30.0


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses: wildcard hosts become loopback."""
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


# --- start -------------------------------------------------------------------------------


def start(config: ServerConfig, on_progress: Progress | None = None) -> Launched | Reused:
    """Reuse the folder's running server, or start one and wait until it answers.

    A healthy server is reused without taking the folder lock (its record is
    written atomically), which keeps a new kernel's ``start`` fast. Anything else
    happens under the lock, held for the whole start, so concurrent starts on
    one folder (other kernels, terminals, the JupyterLab launcher) wait and then
    reuse the one server instead of starting a second one on the same database.
    """
    reused = _reuse(config, registry.read_record(config.data_dir))
    if reused is not None:
        return reused
    with registry.folder_lock(config.data_dir, config.timeout + LOCK_MARGIN):
        record = registry.read_record(config.data_dir)
        reused = _reuse(config, record)
        if reused is not None:
            return reused
        if record is not None:
            proc = registry.process_of(record)
            if proc is not None:  # ours, alive, but not answering: replace it
                process.stop_tree(proc)
            registry.remove_record(config.data_dir)
        return _launch(config, on_progress or _no_progress)


def _reuse(config: ServerConfig, record: ServerRecord | None) -> Reused | None:
    """The recorded server, if it is alive, ours and answering (and has the asked settings)."""
    if record is None or registry.process_of(record) is None:
        return None
    if not process.probe(record.url).healthy:
        return None
    _check_settings(config, record)
    return Reused(record)


def _no_progress(phase: str, elapsed: float) -> None:
    """Default progress callback: stay quiet."""


def _check_settings(config: ServerConfig, record: ServerRecord) -> None:
    """Refuse to silently reuse a server whose settings differ from what was asked."""
    wanted = config.settings()
    diffs = [
        f"{SETTING_FLAGS[key]} is {record.settings.get(key)!r} on the running server, "
        f"{wanted[key]!r} requested"
        for key in sorted(config.explicit)
        if record.settings.get(key) != wanted[key]
    ]
    if diffs:
        raise SettingsMismatchError(
            f"An MLflow server already runs for {config.data_dir} (pid {record.pid}, "
            f"{record.url}) with other settings: {'; '.join(diffs)}. Use "
            "`%mlflow_server restart` with your flags to replace it, or `%mlflow_server start` "
            "without them to reuse it as it is."
        )


def _pick_port(config: ServerConfig, tried: list[int]) -> int:
    """The requested port if it is free, else explain who holds it; or the first free one."""
    if config.port is None:
        return process.find_free_port(config.host, FIRST_PORT, skip=tried)
    if process.port_is_free(config.host, config.port):
        return config.port
    url = client_url(config.host, config.port)
    found = process.probe(url, timeout=1.0)
    if found.healthy:
        raise PortInUseError(
            f"Port {config.port} is already used by an MLflow {found.version} server that "
            f"was not started for {config.data_dir}. Use it with `%mlflow_server connect "
            f"{url}`, choose another --port, or leave --port out to take the first free port."
        )
    raise PortInUseError(
        f"Port {config.port} on {config.host} is held by {process.port_holder(config.port)}, "
        "which is not an MLflow server. Choose another --port, leave --port out to take the "
        "first free port, or stop that process."
    )


def _launch(config: ServerConfig, on_progress: Progress) -> Launched:
    """Spawn the server, wait for it, record it; on any failure leave nothing running."""
    started = time.monotonic()
    tried: list[int] = []
    while True:
        port = _pick_port(config, tried)
        tried.append(port)
        try:
            return _launch_on(config, port, started, on_progress)
        except StartFailedError as exc:
            port_taken = "address already in use" in exc.log_tail.lower()
            if config.port is not None or not port_taken or len(tried) >= PORT_RETRIES:
                raise


def _launch_on(config: ServerConfig, port: int, started: float,
               on_progress: Progress) -> Launched:
    log = registry.log_path(config.data_dir)
    command = equivalent_command(config, port)
    with open(log, "a") as fh:
        fh.write(f"\n--- mlflow_magic {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                 f"{' '.join(command)}\n")
    offset = process.file_size(log)
    env = server_env(config)
    if config.attached:
        env["MLFLOW_MAGIC_PARENT_PID"] = str(os.getpid())
    url = client_url(config.host, port)
    on_progress(PHASE_ORDER[0], time.monotonic() - started)
    proc = process.spawn(server_argv(config, port), env, log)
    try:
        outcome = process.wait_ready(
            proc, url, config.timeout,
            on_tick=lambda _: on_progress(_phase(log, offset), time.monotonic() - started),
        )
        if isinstance(outcome, process.Exited):
            raise _start_failed(config, outcome.exit_code, process.tail(log, 30, offset))
        if isinstance(outcome, process.TimedOut):
            log_tail = process.tail(log, 30, offset)
            hint = _hint(config, log_tail) or (
                "A slow disk or a remote database can make the first start slow: try a "
                "longer --timeout.")
            raise StartTimeoutError(
                f"The MLflow server did not answer at {url} within {config.timeout:g} s, so "
                f"it was stopped. {hint} Last lines of its log ({log}):\n{log_tail}",
                log_tail=log_tail,
            )
        ps = psutil.Process(proc.pid)
        record = ServerRecord(
            data_dir=str(config.data_dir),
            pid=proc.pid,
            create_time=ps.create_time(),
            host=config.host,
            port=port,
            url=url,
            started_at=time.time(),
            mlflow_version=outcome.version,
            settings={**config.settings(), "port": port},
            command=command,
            log_path=str(log),
            workers=config.workers,
            jobs=config.jobs,
            attached=config.attached,
            hostname=socket.gethostname(),
        )
        registry.write_record(record)
    except BaseException:
        # Includes KeyboardInterrupt: an interrupted start must not leave a server behind.
        with contextlib.suppress(psutil.Error):
            process.stop_tree(psutil.Process(proc.pid), grace=5)
        proc.wait()
        raise
    on_progress("ready", time.monotonic() - started)
    return Launched(record, time.monotonic() - started)


def _phase(log: Path, offset: int) -> str:
    """Which start-up phase the server's log shows so far."""
    text = process.tail(log, 200, offset)
    for marker, phase in PHASES:
        if marker in text:
            return phase
    return PHASE_ORDER[0]


def _hint(config: ServerConfig, log_tail: str) -> str | None:
    """A specific fix for the known causes of a failed start, found in the log."""
    lowered = log_tail.lower()
    if "out-of-date database schema" in lowered:
        return (f"The database was created by an older MLflow. Back it up, then upgrade it "
                f"with `mlflow db upgrade {mask_uri(config.backend_store_uri)}` and start "
                "again.")
    if "usage: mlflow server" in lowered:
        return ("`mlflow server` refused its arguments: check the ones you passed after `--` "
                "(`mlflow server --help` lists them).")
    if "address already in use" in lowered:
        return "Its port was taken by another process meanwhile; start again."
    if "connection refused" in lowered or "could not connect" in lowered:
        return (f"The database at {mask_uri(config.backend_store_uri)} does not accept "
                "connections: check that it runs and that host, port and credentials are "
                "right.")
    if "password authentication failed" in lowered:
        return "The database refused the user name or password in --backend-store-uri."
    missing = re.search(r"no module named '([^'.]+)", lowered)
    if missing:
        return f"A Python module is missing: install it with `pip install {missing.group(1)}`."
    return None


def _start_failed(config: ServerConfig, code: int | None, log_tail: str) -> StartFailedError:
    """Explain an early exit, with the exit code and the log tail."""
    hint = _hint(config, log_tail) or "The log below says why; fix that and start again."
    return StartFailedError(
        f"The MLflow server for {config.data_dir} exited with code {code} before it "
        f"answered. {hint} Last lines of its log "
        f"({registry.log_path(config.data_dir)}):\n{log_tail}",
        exit_code=code,
        log_tail=log_tail,
    )


# --- stop ---------------------------------------------------------------------------------


def stop(data_dir: Path) -> Stopped:
    """Stop the folder's server and every process it spawned; forget its record."""
    with registry.folder_lock(data_dir, LOCK_MARGIN):
        record = registry.read_record(data_dir)
        proc = registry.process_of(record) if record else None
        if proc is not None:
            process.stop_tree(proc)
        registry.remove_record(data_dir)
    return Stopped(str(data_dir), record if proc is not None else None)


def stop_all() -> StoppedAll:
    """Stop the server of every data folder this user started one for."""
    return StoppedAll([stop(folder) for folder in registry.known_data_dirs()])


def restart(config: ServerConfig, on_progress: Progress | None = None) -> Launched | Reused:
    """Stop the folder's server (whatever its settings) and start it with ``config``."""
    stop(config.data_dir)
    return start(config, on_progress)


# --- inspect ------------------------------------------------------------------------------


def status(data_dir: Path) -> ServerStatus:
    """The folder's server state, read-only: a stale record is reported, not removed."""
    record = registry.read_record(data_dir)
    log = registry.log_path(data_dir)
    log_str = str(log) if log.exists() else None
    if record is None:
        return ServerStatus(str(data_dir), "stopped", log_path=log_str)
    if registry.process_of(record) is None:
        return ServerStatus(str(data_dir), "crashed", record,
                            detail="process is gone; the next start replaces it",
                            log_path=log_str)
    found = process.probe(record.url)
    if found.healthy:
        return ServerStatus(str(data_dir), "running", record,
                            detail=f"OK (MLflow {found.version})", log_path=log_str)
    return ServerStatus(str(data_dir), "unresponsive", record, detail=found.error,
                        log_path=log_str)


def list_servers() -> ServerList:
    """The state of every data folder with a recorded server."""
    statuses = [status(folder) for folder in registry.known_data_dirs()]
    return ServerList([s for s in statuses if s.state != "stopped"])


def logs(data_dir: Path, lines: int = 30) -> LogTail:
    """The last ``lines`` lines of the folder's server log."""
    log = registry.log_path(data_dir)
    return LogTail(str(log), process.tail(log, lines))


# --- connect ------------------------------------------------------------------------------


def connect(uri: str, registry_uri: str | None = None, timeout: float = 10.0) -> Connected:
    """Check that ``uri`` is a live MLflow tracking server before the kernel uses it."""
    scheme = urlsplit(uri).scheme
    if scheme not in ("http", "https"):
        raise ConnectError(
            f"{mask_uri(uri)} is not the address of a tracking server. `connect` takes its "
            "http(s) URL, e.g. `%mlflow_server connect http://mlflow.example.org:5000`; to run "
            "a server on a database, use `%mlflow_server start --backend-store-uri URI`."
        )
    found = process.probe(uri, timeout=timeout)
    if not found.healthy:
        hint = ""
        if found.error and "403" in found.error:
            hint = (" The server refused this host name: start it with --allowed-hosts "
                    "naming the host you connect through.")
        elif found.error and "401" in found.error:
            hint = (" The server asks for credentials: set MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD in the environment.")
        raise ConnectError(
            f"No MLflow tracking server answers at {mask_uri(uri)}: {found.error}.{hint} "
            "Check the address and that the server runs (`mlflow server ...` on that "
            "machine), then connect again."
        )
    return Connected(mask_uri(uri) or uri, found.version or "unknown",
                     mask_uri(registry_uri))


def default_data_dir() -> Path:
    """The data folder used when none is named: ``$MLFLOW_PATH`` or ``~/mlflow_data``."""
    return resolve_data_dir(None)
