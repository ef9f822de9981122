"""A server start that finishes in the background while the notebook goes on.

In a notebook, ``%mlflow_server start`` returns as soon as the server's URL is
known (the tracking URI is set at once); the rest of the start runs in a
thread of the kernel. An MLflow call made meanwhile waits for exactly what is
left of the start: MLflow asks every request-header provider registered under
the ``mlflow.request_header_provider`` entry point before each REST request
(``mlflow/tracking/request_header/registry.py``), and :mod:`mlflow_magic.hook`
calls :func:`wait_for_server`, which blocks until the start is over. So no
connection is refused and no request is retried.

If the start failed, the call raises the start's own message instead. MLflow
catches ``Exception`` from header providers and only logs it, so that error is
a ``BaseException`` (as ``KeyboardInterrupt`` is): it ends the call, rather
than letting it retry for minutes against a port where nothing listens.

No IPython and no MLflow import here: MLflow loads this module with its entry
points, and a process without a pending start pays one attribute read per request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from ..contract import STARTING_ENV
from ..errors import CellMessage

if TYPE_CHECKING:
    from ..state.records import ServerRecord

T = TypeVar("T")
#: A folder's record missing this long (s) in a started process: the start failed (a retry
#: on another port rewrites it within milliseconds).
GONE_FOR_GOOD = 2.0
#: Called with (result, None) or (None, error) when a start ends.
DoneCallback = Callable[[T | None, BaseException | None], None]
_log = logging.getLogger(__name__)


class PendingStart(Generic[T]):
    """``work(on_url)`` running in a thread; its URL as soon as known, its result at the end.

    ``work`` calls ``on_url(url)`` once it has chosen the server's address. Done
    callbacks run in the thread before waiters are released, so whatever they
    set (the cell's display, the tracking URI of a start that moved to another
    port) is in place for the first MLflow call.
    """

    def __init__(self, work: Callable[[Callable[[str], None]], T]) -> None:
        self.url: str | None = None
        self._work = work
        self._lock = threading.Lock()
        self._url_known = threading.Event()
        self._done = threading.Event()
        self._callbacks: list[DoneCallback[T]] = []
        self._finished = False
        self._ended = False
        self._result: T | None = None
        self._error: BaseException | None = None
        # Not a daemon: a kernel that exits mid-start lets it finish first, so the server it
        # spawned is recorded (or stopped on failure), never left running unknown.
        self._thread = threading.Thread(target=self._run, name="mlflow-magic-start")

    def begin(self) -> PendingStart[T]:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._result = self._work(self._set_url)
        except BaseException as exc:  # handed to whoever waits, in their thread
            self._error = exc
        self._ended = True
        self._url_known.set()
        self._finish()

    def _set_url(self, url: str) -> None:
        self.url = url
        self._url_known.set()

    def _finish(self) -> None:
        """Run the done callbacks (also ones added meanwhile), then release the waiters."""
        while True:
            with self._lock:
                callbacks, self._callbacks = self._callbacks, []
                if not callbacks:
                    self._finished = True
                    break
            for callback in callbacks:
                self._call(callback)
        global _current
        if _current is self:
            os.environ.pop(STARTING_ENV, None)
            if self._error is None:
                _current = None  # later requests pay nothing
        self._done.set()

    def _call(self, callback: DoneCallback[T]) -> None:
        try:
            callback(self._result, self._error)
        except Exception:  # a display that failed must not hold up the start's waiters
            _log.exception("mlflow_magic: a callback of the server start failed")

    def add_done_callback(self, callback: DoneCallback[T]) -> None:
        """Call ``callback(result, error)`` when the start ends (at once, if it has)."""
        with self._lock:
            if not self._finished:
                self._callbacks.append(callback)
                return
        self._call(callback)

    def wait_done(self, timeout: float | None = None) -> bool:
        """Wait until the start is over and its callbacks ran; raises nothing."""
        return self._done.wait(timeout)

    def wait_for_url(self, timeout: float | None = None) -> bool:
        """True once the URL is known or the start has ended."""
        return self._url_known.wait(timeout)

    @property
    def ended(self) -> bool:
        """The work is over (its done callbacks may still be running)."""
        return self._ended

    @property
    def done(self) -> bool:
        """Over, callbacks run: waiters are released."""
        return self._done.is_set()

    @property
    def error(self) -> BaseException | None:
        return self._error if self._done.is_set() else None

    def result(self, timeout: float | None = None) -> T:
        """Wait for the end of the start: its result, or its error raised here."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the MLflow server at {self.url} is still starting")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


class ServerStartFailed(CellMessage):
    """An MLflow call found that the start of its server failed; the start's message."""

    def __init__(self, error: BaseException, url: str | None) -> None:
        super().__init__(
            f"This MLflow call needs the server at {url}, and its start failed: {error}")
        self.error = error


class ServerMoved(CellMessage):
    """An MLflow call made for the start's first address, which the start had to give up
    (another program took the port meanwhile): sending it there could write into a server
    that is not this folder's."""

    def __init__(self, asked: str, url: str | None) -> None:
        super().__init__(
            f"This MLflow call was made for {asked}, but another program took that port while "
            f"the MLflow server was starting, so the server started at {url} instead. The "
            f"call was not sent. Run it again: MLflow now uses {url}.")


#: The start this process's tracking URI waits for, if any, and its URL when tracked.
_current: PendingStart | None = None
_tracked_url: str | None = None


def track(start: PendingStart, timeout: float, data_dir: str | os.PathLike | None = None) -> None:
    """MLflow calls of this process, and of the processes it starts until the start ends,
    wait for ``start`` (it replaces any earlier one); those give up after ``timeout`` s.

    ``data_dir`` lets those processes read where the server ended up from its record.
    """
    global _current, _tracked_url
    _current, _tracked_url = start, start.url
    os.environ[STARTING_ENV] = f"{start.url} {time.time() + timeout:.0f} {data_dir or ''}".rstrip()
    if start.done:  # ended while being tracked: nothing to wait for
        os.environ.pop(STARTING_ENV, None)


def forget() -> None:
    """MLflow calls no longer wait for, or fail with, a background start."""
    global _current, _tracked_url
    _current = _tracked_url = None
    os.environ.pop(STARTING_ENV, None)


def wait_for_server(tracking_uri: Callable[[], str] | None = None) -> None:
    """Block until the tracked start ends; raise :class:`ServerStartFailed` if it failed,
    :class:`ServerMoved` if it moved away from the address this call was made for.

    Only the main thread (the notebook's cells) gets a failed start's error, and
    only while MLflow still points at that server: MLflow's background threads
    (async logging, trace export) handle a failed request on their own. A call for
    an address the start gave up is stopped in every thread: another program
    answers there now.
    """
    start = _current
    if start is None:
        if STARTING_ENV in os.environ and tracking_uri is not None:
            _wait_for_the_parents_start(tracking_uri())
        return
    first = _tracked_url
    asked = tracking_uri() if tracking_uri is not None and not start.done else None
    start._done.wait()
    error = start.error
    if error is None:
        if asked and _same(asked, first) and not _same(start.url, first):
            raise ServerMoved(asked, start.url)
        return
    if threading.current_thread() is not threading.main_thread():
        return
    if tracking_uri is not None and not _same(tracking_uri(), start.url):
        return
    raise ServerStartFailed(error, start.url)


def _same(url: str | None, other: str | None) -> bool:
    return (url or "").rstrip("/") == (other or "").rstrip("/")


def _wait_for_the_parents_start(tracking_uri: str) -> None:
    """In a process started during a background start: wait until its server is ready.

    The folder's record says where the server ended up: a start that lost its port
    to another program moved on, and this call, made for the old address, is stopped.
    A record gone for good means the start failed: MLflow's own call then says so.
    """
    url, deadline, data_dir = [*os.environ.pop(STARTING_ENV, "").split(" ", 2), "", ""][:3]
    if not url or not _same(url, tracking_uri):
        return
    end = float(deadline) if deadline.replace(".", "", 1).isdigit() else time.time()
    gone_since: float | None = None
    while time.time() < end:
        if data_dir:
            record = _record(Path(data_dir))
            gone_since = (gone_since or time.time()) if record is None else None
            if gone_since is not None and time.time() - gone_since > GONE_FOR_GOOD:
                return
            ready_at = record.url if record is not None and record.mlflow_version else None
        else:
            ready_at = _answers(url)
        if ready_at is not None:
            if not _same(ready_at, url):
                raise ServerMoved(url, ready_at)
            return
        time.sleep(0.1)


def _record(data_dir: Path) -> ServerRecord | None:
    """The folder's server record (written at spawn; its version is set once ready)."""
    from ..state.records import read_record

    return read_record(data_dir)


def _answers(url: str) -> str | None:
    """``url`` if a server answers there (a start of an older mlflow_magic)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=1):
            return url
    except OSError:
        return None
