"""The Python API: the manager's operations, plus pointing this process at the server.

``mlflow_magic.start()`` in a script or notebook does what ``%mlflow_server
start`` does; the magics, the console script and the widgets all call these.
"""

from __future__ import annotations

import os
from typing import Any

from . import manager, pending
from .config import DEFAULT_TIMEOUT, ServerOptions, resolve, resolve_data_dir
from .manager import Progress
from .results import (
    Connected,
    Launched,
    LogTail,
    Reused,
    ServerList,
    ServerStatus,
    Starting,
    Stopped,
    StoppedAll,
)
from .tracking import TRACKING_ENV, use_tracking_server

PathLike = str | os.PathLike[str] | None


def start(path: PathLike = None, *, on_progress: Progress | None = None,
          use: bool = True, wait: bool = True, **options: Any) -> Launched | Reused | Starting:
    """Start (or reuse) the MLflow server of a data folder and point MLflow at it.

    ``path`` defaults to ``$MLFLOW_PATH``, else ``~/mlflow_data``. ``options`` are
    the fields of :class:`~mlflow_magic.config.ServerOptions` (``port=5001``,
    ``backend_store_uri=...``, ``extra_args=("--expose-prometheus", "/tmp/m")``).
    With ``use=False`` the process's tracking URI is left alone. With
    ``wait=False`` a launch returns :class:`~mlflow_magic.results.Starting` as soon
    as the server's URL is known, and MLflow calls of this process wait for the
    server (see :mod:`mlflow_magic.pending`).
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


def launch(options: ServerOptions, *, restart: bool = False,
           on_progress: Progress | None = None, use: bool = True,
           wait: bool = True) -> Launched | Reused | Starting:
    """:func:`start` (or :func:`restart`) from a ready-made :class:`ServerOptions`.

    A restart keeps every setting of the running server that ``options`` does not name.
    Bad flags, a taken port or other settings on the running server are refused at
    once, also with ``wait=False``.
    """
    config = None if restart else resolve(options)
    if use:
        pending.forget()  # an earlier background start no longer speaks for this process

    def work(on_url: manager.UrlKnown) -> Launched | Reused:
        if config is None:
            return manager.restart(options, on_progress, on_url)
        return manager.start(config, on_progress, on_url)

    if wait:
        result = work(lambda url: None)
    else:
        started = pending.PendingStart(work).begin()
        started.wait_for_url()  # milliseconds: the folder lock, a port, the spawn
        if not started.ended:
            if use:
                use_tracking_server(started.url)
                pending.track(started, options.timeout or DEFAULT_TIMEOUT,
                              resolve_data_dir(options.path))
                started.add_done_callback(_use_if_moved)
            return Starting(started.url, str(resolve_data_dir(options.path)), started)
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
    use_tracking_server(result.url)


def stop(path: PathLike = None, *, all: bool = False,
         force: bool = False) -> Stopped | StoppedAll:
    """Stop the folder's server (or, with ``all=True``, every known server).

    ``force=True`` forgets the record of a server another host started on a shared
    home; use it only when that server is known to be gone.
    """
    if all:
        return manager.stop_all()
    return manager.stop(resolve_data_dir(path), force=force)


def status(path: PathLike = None) -> ServerStatus:
    """State, URL, pid, uptime, stores and log of the folder's server."""
    return manager.status(resolve_data_dir(path))


def list_servers() -> ServerList:
    """Every server this user started from a known data folder."""
    return manager.list_servers()


def logs(path: PathLike = None, lines: int = 30) -> LogTail:
    """The last ``lines`` lines of the folder's server log."""
    return manager.logs(resolve_data_dir(path), lines)


def connect(uri: str, *, registry_uri: str | None = None, use: bool = True) -> Connected:
    """Use an existing tracking server at ``uri`` (e.g. a team server on PostgreSQL + S3)."""
    result = manager.connect(uri, registry_uri)
    if use:
        pending.forget()
        use_tracking_server(uri, registry_uri)
    return result
