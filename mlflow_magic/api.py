"""The Python API: the manager's operations, plus pointing this process at the server.

``mlflow_magic.start()`` in a script or notebook does what ``%mlflow_server
start`` does; the magics, the console script and the widgets all call these.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import manager, pending, remote, transfer
from .config import DEFAULT_TIMEOUT, data_folder, resolve, resolve_data_dir
from .errors import MlflowMagicError, PushError
from .manager import Progress
from .masking import mask_text, mask_uri
from .options import ServerOptions
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
)
from .tracking import TRACKING_ENV, use_tracking_server

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


@explained("start the server")
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

    @explained("start the server")
    def work(on_url: manager.UrlKnown) -> Launched | Reused:
        if config is None:
            return manager.restart(options, on_progress, on_url)
        return manager.start(config, on_progress, on_url)

    if wait:
        result = work(lambda url: None)
    else:
        started = pending.PendingStart(work).begin()
        started.wait_for_url()  # milliseconds: the folder lock, a port, the spawn
        url = started.url
        if not started.ended and url is not None:  # still starting: its URL is known
            if use:
                use_tracking_server(url)
                pending.track(started, options.timeout or DEFAULT_TIMEOUT,
                              resolve_data_dir(options.path))
                started.add_done_callback(_use_if_moved)
            return Starting(url, str(resolve_data_dir(options.path)), started)
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


@explained("stop the server")
def stop(path: PathLike = None, *, all: bool = False,
         force: bool = False) -> Stopped | StoppedAll:
    """Stop the folder's server (or, with ``all=True``, every known server).

    ``force=True`` forgets the record of a server another host started on a shared
    home; use it only when that server is known to be gone.
    """
    if all:
        return manager.stop_all()
    return manager.stop(data_folder(path), force=force)


@explained("read the server's status")
def status(path: PathLike = None) -> ServerStatus:
    """State, URL, pid, uptime, stores and log of the folder's server."""
    return manager.status(data_folder(path))


@explained("list your servers")
def list_servers() -> ServerList:
    """Every server this user started from a known data folder."""
    return manager.list_servers()


@explained("read the server's log")
def logs(path: PathLike = None, lines: int = 30) -> LogTail:
    """The last ``lines`` lines of the folder's server log."""
    return manager.logs(data_folder(path), lines)


def connect(uri: str, *, registry_uri: str | None = None, use: bool = True) -> Connected:
    """Use an existing tracking server at ``uri`` (e.g. a team server on PostgreSQL + S3)."""
    result = remote.check(uri, registry_uri)
    if use:
        pending.forget()
        use_tracking_server(uri, registry_uri)
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
    folder = data_folder(path)
    if not folder.exists():  # a start would make an empty one, and push nothing from it
        raise PushError(
            f"There is no data folder at {folder} to push. Name the folder your runs are in "
            "with --path DIR (or set MLFLOW_PATH); `%mlflow_server list` shows the folders "
            "of your servers.")
    remote.check(to, again="push again")  # unreachable, or a wrong password: one paragraph
    data_dir = str(folder)
    reading = start(path, use=False)  # waits: never Starting
    assert not isinstance(reading, Starting)
    source_url = reading.server.url
    from mlflow import MlflowClient

    source, target = MlflowClient(source_url), MlflowClient(to)
    t0 = time.monotonic()
    with _stopped_push_explained(to), transfer.quiet():
        found = transfer.plan(source, target, experiments)
        created = tuple(e.name for e in found.experiments if e.target_id is None)
        merged = tuple((e.name, e.others) for e in found.experiments if e.others)
        summary = found.summary()
        if dry_run:
            return Pushed(data_dir, mask_uri(to), True, summary, found.empty, created, merged)
        tally = None if found.empty else transfer.apply(source, target, found, on_progress)
        # Nothing copied: the plan just read is what the comparison reads (no second pass).
        checked = transfer.verify(source, target, experiments,
                                  already=found if tally is None else None)
    if checked.differences:
        listed = "; ".join(checked.differences[:10])
        more = len(checked.differences) - 10
        raise PushError(
            f"The push to {mask_uri(to)} ended, but the two servers differ: {listed}"
            + (f"; and {more} more" if more > 0 else "")
            + ". Run the same push again to copy what is missing; a difference that stays "
              "(a param with another value there, extra metric points) was made on the "
              "target by something else and needs a look there.")
    seconds = time.monotonic() - t0
    rates = tally.rates() if tally is not None else ""
    verified = (f"{checked.runs:,} runs, {checked.params:,} params, {checked.tags:,} tags, "
                f"{checked.points:,} metric points and {checked.artifacts:,} artifact "
                f"checksums equal; {checked.models:,} logged models, {checked.versions:,} "
                f"model versions and their aliases, {checked.traces:,} traces there")
    return Pushed(data_dir, mask_uri(to), False, summary, found.empty, created, merged,
                  seconds, rates, verified)


@contextlib.contextmanager
def _stopped_push_explained(to: str) -> Iterator[None]:
    """An MLflow or network error in the middle of a push: one paragraph that says the next
    push goes on from there (nothing copied is lost or doubled)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, ConnectionError, OSError) as exc:
        if isinstance(exc, OSError) and not _is_network_error(exc):
            raise
        reason = mask_text(str(exc).strip().splitlines()[0] if str(exc).strip() else
                           type(exc).__name__).rstrip(".")
        raise PushError(
            f"The push to {mask_uri(to)} stopped: {reason}. What was copied so far is kept, "
            "and nothing is copied twice: once the server answers again, run the same push "
            "to go on from where it stopped.") from exc


def _is_network_error(exc: OSError) -> bool:
    import requests

    return isinstance(exc, requests.exceptions.RequestException | ConnectionError)
