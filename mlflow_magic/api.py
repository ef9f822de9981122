"""The Python API: the lifecycle's operations, plus pointing this process at the server.

``mlflow_magic.start()`` in a script or notebook does what ``%mlflow_server
start`` does; the magics, the console script and the widgets all call these.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import internals
from .errors import ConfigError, MlflowMagicError, PushError
from .lifecycle import pending
from .lifecycle.launch import Progress, UrlKnown
from .lifecycle.start import restart as restart_server
from .lifecycle.start import start as start_server
from .lifecycle.status import list_servers as known_servers
from .lifecycle.status import logs as server_logs
from .lifecycle.status import status as server_status
from .lifecycle.status import sync_status
from .lifecycle.stop import stop as stop_server
from .lifecycle.stop import stop_all
from .remote import check, transfer
from .remote.rest import experiment_name
from .results import (
    Connected,
    Launched,
    LogTail,
    Pushed,
    Reused,
    ServerList,
    ServerStatus,
    Starting,
    Stopped,
    StoppedAll,
    SyncStatus,
)
from .security import ports
from .settings.config import DEFAULT_TIMEOUT, data_folder, is_loopback, resolve, resolve_data_dir
from .settings.masking import mask_uri
from .settings.options import ServerOptions
from .state.records import folder_last_on
from .tracking import TRACKING_ENV, http_tracking_uri, use_tracking_server

PathLike = str | os.PathLike[str] | None
F = TypeVar("F", bound=Callable[..., Any])


def os_error_message(action: str, exc: OSError) -> str:
    """One paragraph for a file or system error the manager did not foresee (it explains the
    ones it does: a read-only folder, a full disk, a taken port)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return (f"mlflow_magic could not {action}: {exc.strerror or exc}{where}. Check that the "
            "path exists and that you may read and write it (and that its disk has free "
            "space), then run the command again.")


def explained(action: str) -> Callable[[F], F]:
    """Any ``OSError`` out of ``action`` becomes one paragraph (no traceback in a cell)."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except OSError as exc:
                raise MlflowMagicError(os_error_message(action, exc)) from exc
        return call  # type: ignore[return-value]
    return wrap


def start(path: PathLike = None, *, on_progress: Progress | None = None,
          use: bool = True, wait: bool = True, **options: Any) -> Launched | Reused | Starting:
    """Start (or reuse) the MLflow server of a data folder and point MLflow at it.

    ``path`` defaults to ``$MLFLOW_PATH``, else ``~/mlflow_data``. ``options`` are
    the fields of :class:`~mlflow_magic.settings.config.ServerOptions` (``port=5001``,
    ``backend_store_uri=...``, ``extra_args=("--expose-prometheus", "/tmp/m")``).
    With ``use=False`` the process's tracking URI is left alone. With
    ``wait=False`` a launch returns :class:`~mlflow_magic.results.Starting` as soon
    as the server's URL is known, and MLflow calls of this process wait for the
    server (see :mod:`mlflow_magic.lifecycle.pending`).
    """
    return launch(ServerOptions(path=path, **options), on_progress=on_progress, use=use,
                  wait=wait)


def restart(path: PathLike = None, *, on_progress: Progress | None = None,
            use: bool = True, wait: bool = True,
            **options: Any) -> Launched | Reused | Starting:
    """Stop the folder's server and start it again: the same settings, changed only where
    ``options`` name one (``restart(workers=4)`` changes the workers only)."""
    return launch(ServerOptions(path=path, **options), restart=True,
                  on_progress=on_progress, use=use, wait=wait)


@explained("start the server")
def launch(options: ServerOptions, *, restart: bool = False,
           on_progress: Progress | None = None, use: bool = True,
           wait: bool = True) -> Launched | Reused | Starting:
    """:func:`start` (or :func:`restart`) from a ready-made :class:`ServerOptions`.

    A restart keeps every setting of the running server that ``options`` does not name.
    Bad flags, a taken port or other settings on the running server are refused at
    once, also with ``wait=False``.
    """
    if restart and options.path is None:
        options = dataclasses.replace(options, path=folder_in_use())
    config = None if restart else resolve(options)
    if use:
        pending.forget()  # an earlier background start no longer speaks for this process

    @explained("start the server")
    def work(on_url: UrlKnown) -> Launched | Reused:
        if config is None:
            return restart_server(options, on_progress, on_url)
        return start_server(config, on_progress, on_url)

    if wait:
        result = work(lambda url: None)
    else:
        started = pending.PendingStart(work).begin()
        started.wait_for_url()  # milliseconds: the folder lock, a port, the spawn
        url = started.url
        if not started.ended and url is not None:  # still starting: its URL is known
            if use:
                _point_at(url)
                pending.track(started, options.timeout or DEFAULT_TIMEOUT,
                              resolve_data_dir(options.path))
                started.add_done_callback(_use_if_moved)
            return Starting(url, str(resolve_data_dir(options.path)), started, restart)
        result = started.result()  # reused, or refused: as a blocking start would
    if use:
        _use(result)
    return result


def _use_if_moved(result: Launched | Reused | None, error: BaseException | None) -> None:
    """A start that lost its port to a race retried on another: follow it there."""
    if result is not None and result.url != os.environ.get(TRACKING_ENV):
        _use(result)


def _use(result: Launched | Reused) -> None:
    """Tracking URI = the server; the registry too (it is served by the same server)."""
    _point_at(result.url)


def _point_at(url: str, registry_uri: str | None = None) -> None:
    """Point this process's MLflow at ``url``. MLflow's fluent API keeps the id of its active
    experiment (``set_experiment``), which means another experiment, or none, on another
    server: it is looked up again by name there, as ``set_experiment`` would (made if new),
    and the line that says so is printed."""
    old = http_tracking_uri()
    active = internals.active_experiment_id()
    if active and old and old.rstrip("/") != url.rstrip("/"):
        try:
            name: str | None = experiment_name(old, active, ports.headers_for_url(old))
        except (OSError, KeyError, ValueError, ports.PortTaken, ports.ServerNotRunning):
            name = None
        internals.forget_active_experiment()
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        if name:
            os.environ["MLFLOW_EXPERIMENT_NAME"] = name
            print(f"MLflow's active experiment {name!r} is now the one of that name on "
                  f"{mask_uri(url)} (made there by the first run if new).")
        else:
            print(f"MLflow's active experiment (id {active} on {mask_uri(old)}) could not be "
                  f"read there, so runs on {mask_uri(url)} go to its Default experiment until "
                  "`mlflow.set_experiment(NAME)`.")
    use_tracking_server(url, registry_uri)


def folder_in_use() -> Path | None:
    """The data folder whose server this process's MLflow uses: its tracking URI names a
    port of this machine where that folder's server runs, or ran last (after a ``stop``).
    None for any other tracking URI: a team server, or none set."""
    parts = urlsplit(http_tracking_uri() or "")
    try:
        port = parts.port
    except ValueError:
        return None
    return folder_last_on(port) if port and is_loopback(parts.hostname) else None


def _folder(path: PathLike) -> Path:
    """The folder a command acts on: ``path``; else the one this process uses (its last
    ``start``, ``restart`` or ``connect`` to a server of ours); else ``$MLFLOW_PATH``, else
    ``~/mlflow_data``."""
    return data_folder(path if path is not None else folder_in_use())


@explained("stop the server")
def stop(path: PathLike = None, *, all: bool = False,
         force: bool = False) -> Stopped | StoppedAll:
    """Stop the folder's server (or, with ``all=True``, every known server).

    ``force=True`` forgets the record of a server another host started on a shared
    home; use it only when that server is known to be gone.
    """
    if all:
        return stop_all()
    return stop_server(_folder(path), force=force)


@explained("read the server's status")
def status(path: PathLike = None) -> ServerStatus:
    """State, URL, pid, uptime, stores and log of the folder's server."""
    return server_status(_folder(path))


@explained("read the sync's status")
def sync(path: PathLike = None) -> SyncStatus:
    """Where the copy of the folder to its team server (``start --sync-to URL``) is: in
    sync, how far behind, the last error with its fix."""
    folder = _folder(path)
    found = sync_status(folder)
    if found is None:
        raise ConfigError(
            f"The server of {folder} does not copy to a team server. Start it with "
            "`%mlflow_server start --sync-to URL` (or `restart --sync-to URL`) to log "
            "locally and see every change on the team server within seconds.")
    return found


@explained("list your servers")
def list_servers() -> ServerList:
    """Every server this user started from a known data folder."""
    return known_servers()


@explained("read the server's log")
def logs(path: PathLike = None, lines: int = 30) -> LogTail:
    """The last ``lines`` lines of the folder's server log."""
    return server_logs(_folder(path), lines)


def connect(uri: str, *, registry_uri: str | None = None, use: bool = True) -> Connected:
    """Use an existing tracking server at ``uri`` (e.g. a team server on PostgreSQL + S3)."""
    result = check.check(uri, registry_uri)
    if use:
        pending.forget()
        _point_at(uri, registry_uri)
    return result


@explained("push the folder")
def push(path: PathLike = None, *, to: str, experiments: Sequence[str] | None = None,
         dry_run: bool = False, on_progress: transfer.Progress | None = None) -> Pushed:
    """Copy the folder's experiments, runs, artifacts, logged and registered models and
    traces to the tracking server at ``to``, then compare both sides (see :mod:`transfer`).

    Basic-auth credentials come from ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, as for
    every MLflow client. The folder's own server is started (or reused) to read it;
    nothing in the folder changes. A second push copies nothing; one that stopped
    midway goes on where it stopped.
    """
    if urlsplit(to).scheme not in ("http", "https"):
        raise PushError(
            f"{mask_uri(to)} is not the address of a tracking server: `push --to` takes its "
            "http(s) URL, e.g. `%mlflow_server push --to https://mlflow.example.org`.")
    folder = _folder(path)
    if not folder.exists():  # a start would make an empty one, and push nothing from it
        raise PushError(
            f"There is no data folder at {folder} to push. Name the folder your runs are in "
            "with --path DIR (or set MLFLOW_PATH); `%mlflow_server list` shows the folders "
            "of your servers.")
    check.check(to, again="push again")  # unreachable, or a wrong password: one paragraph
    reading = start(folder, use=False)  # waits: never Starting
    assert not isinstance(reading, Starting)
    return transfer.push(str(folder), reading.server.url, to, experiments, dry_run,
                         on_progress)
