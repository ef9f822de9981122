"""The typed results every operation returns: data only, no text, no HTML.

How a result reads, in a terminal or a notebook, is decided in one place,
:mod:`mlflow_magic.front.render`, which registers itself here when a front end (the
API, the magics, the console script) is loaded. The results keep IPython's display
protocol (``_repr_html_``, ``_repr_pretty_``) and ``str`` by asking that renderer, so
``mlflow_magic.status()`` shows as a table in a notebook and as text in a terminal
without this module knowing either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .lifecycle.pending import PendingStart
    from .remote.transfer import Verified
    from .state.records import ServerRecord


@dataclass(frozen=True)
class Renderer:
    """Text for terminals, HTML for notebooks: installed by :mod:`mlflow_magic.front.render`."""

    text: Callable[[Result], str]
    html: Callable[[Result], str]


_renderer: Renderer | None = None


def install(renderer: Renderer) -> None:
    """Make ``renderer`` the one every result asks how it reads."""
    global _renderer
    _renderer = renderer


class Result:
    """A result's display, delegated to the installed renderer (a plain description of its
    fields where none is, as in a process that loaded no front end)."""

    def text(self) -> str:
        if _renderer is None:
            return f"{type(self).__name__}({', '.join(_fields(self))})"
        return _renderer.text(self)

    def html(self) -> str:
        if _renderer is None:
            import html

            return f"<pre>{html.escape(self.text())}</pre>"
        return _renderer.html(self)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.text().splitlines()[0]}>"

    def _repr_html_(self) -> str:
        return self.html()

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self.text())


def _fields(result: object) -> list[str]:
    return [f"{f.name}={getattr(result, f.name)!r}" for f in fields(result)]  # type: ignore[arg-type]



@dataclass(frozen=True, repr=False)
class Launched(Result):
    """A new server was started and answered after ``seconds``."""

    server: ServerRecord
    seconds: float
    #: risks to name: a server open beyond this machine, data others can read
    warnings: tuple[str, ...] = ()
    #: a restart: what it changed (``workers 1 → 2``; empty: nothing); None for a start
    changes: tuple[str, ...] | None = None

    @property
    def url(self) -> str:
        return self.server.url


@dataclass(frozen=True, repr=False)
class Starting(Result):
    """A new server is starting in the background; MLflow calls wait for it.

    ``pending.result()`` waits for the end of the start: the :class:`Launched`
    (or :class:`Reused`) result, or the start's error.
    """

    url: str
    data_dir: str
    pending: PendingStart
    #: a restart going on in the background
    restarting: bool = False


@dataclass(frozen=True, repr=False)
class Reused(Result):
    """A server was already running for the folder and is used as is."""

    server: ServerRecord
    warnings: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return self.server.url


@dataclass(frozen=True, repr=False)
class Stopped(Result):
    """The outcome of ``stop`` for one folder: ``server`` is None if none was running."""

    data_dir: str
    server: ServerRecord | None
    #: ``stop --force``: the record of a server on another host, forgotten here
    forgot: ServerRecord | None = None


@dataclass(frozen=True, repr=False)
class StoppedAll(Result):
    """The outcome of ``stop --all``: what stopped, and each folder that could not be."""

    stopped: list[Stopped] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


#: The states of a folder's server, as ``status`` tells them.
STATES = ("running", "starting", "sleeping", "restarting", "unresponsive", "crashed",
          "crash loop", "elsewhere", "stopped", "foreign")
#: The states in which the server is there for its clients (a request is answered, at the
#: latest once it has woken up or started again).
UP = ("running", "starting", "sleeping", "restarting")


@dataclass(frozen=True, repr=False)
class SyncStatus(Result):
    """Where ``--sync-to`` is: in sync, behind (by how much), or waiting on an error."""

    data_dir: str
    target: str  # the team server's URL, password masked
    state: str  # contract.SYNC_IN_SYNC, SYNC_BEHIND or SYNC_WAITING
    behind: str | None = None  # "3 runs, 1,200 metric points, 4.0 MB of artifacts"
    last_error: str | None = None  # one paragraph, with its fix
    last_copied: float | None = None
    left_alone: tuple[str, ...] = ()  # runs deleted on the team server, and why
    differences: tuple[str, ...] = ()  # what a finished run's check found


@dataclass(frozen=True, repr=False)
class ServerStatus(Result):
    """The state of a data folder's server (one of :data:`STATES`)."""

    data_dir: str
    state: str
    server: ServerRecord | None = None
    detail: str | None = None
    log_path: str | None = None
    #: the end of the log, for a server that crashed or does not answer
    log_tail: str | None = None
    warnings: tuple[str, ...] = ()
    sync: SyncStatus | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def up(self) -> bool:
        """There for its clients: running, or coming back by itself (see :data:`UP`)."""
        return self.state in UP


@dataclass(frozen=True, repr=False)
class ServerList(Result):
    """Every known server (``list``)."""

    servers: list[ServerStatus]


@dataclass(frozen=True, repr=False)
class Connected(Result):
    """The kernel now talks to an existing tracking server (``connect``)."""

    url: str
    version: str
    registry_uri: str | None = None


@dataclass(frozen=True, repr=False)
class LogTail(Result):
    """The last lines of a server's log."""

    path: str
    lines: str


@dataclass(frozen=True, repr=False)
class Pushed(Result):
    """A push's outcome: what was copied (or, with ``--dry-run``, would be), and what the
    comparison of the two servers covered."""

    data_dir: str
    target: str  # masked
    dry_run: bool
    copied: str  # the plan's one line: runs, metric points, artifacts, models, traces
    nothing: bool  # the target already held everything
    created: tuple[str, ...] = ()  # experiments made on the target
    merged: tuple[tuple[str, int], ...] = ()  # (experiment, runs there from elsewhere)
    seconds: float = 0.0
    #: runs, metric points and bytes per second while copying (None: nothing was copied)
    rates: tuple[float, float, float] | None = None
    #: what the comparison of both sides covered (None: a dry run)
    checked: Verified | None = None
