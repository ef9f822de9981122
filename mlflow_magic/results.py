"""Typed results of the manager, each able to render itself as text and as HTML.

``str(result)`` is what a terminal shows; ``_repr_html_`` is what a notebook
shows (IPython picks it up without this module importing IPython).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from .masking import mask_uri
from .pending import PendingStart
from .registry import ServerRecord

#: One colour per server state, for every HTML rendering (results and the panel).
STATE_COLOURS = {"running": "#2e7d32", "starting": "#1565c0", "unresponsive": "#ef6c00",
                 "crashed": "#c62828", "elsewhere": "#6a1b9a", "stopped": "#616161",
                 "foreign": "#6a1b9a"}


def human_duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``2 h 5 min``, ``3 d 4 h``: short enough for a status line."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def link_html(url: str, text: str | None = None) -> str:
    """A link that opens in a new browser tab."""
    return (f'<a href="{html.escape(url)}" target="_blank" rel="noopener">'
            f"{html.escape(text or url)}</a>")


def code_html(text: str) -> str:
    """An address shown, not linked: a private server answers a bare browser visit with
    its 401 page; the UI's own links (with a one-time login where one is needed) are
    the ones to click."""
    return f"<code>{html.escape(text)}</code>"


def warnings_text(warnings: tuple[str, ...]) -> str:
    return "".join(f"\n  warning: {w}" for w in warnings)


def warnings_html(warnings: tuple[str, ...]) -> str:
    return "".join(f'<div style="color:#ef6c00">&#9888; {html.escape(w)}</div>'
                   for w in warnings)


def table_html(rows: list[tuple[str, str]]) -> str:
    """A two-column key/value table; values are already HTML."""
    body = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{html.escape(k)}</th>'
        f'<td style="text-align:left">{v}</td></tr>'
        for k, v in rows
    )
    return f'<table class="mlflow-magic">{body}</table>'


class Renders:
    """Text for terminals (``str``/IPython pretty), HTML for notebooks."""

    def text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def html(self) -> str:
        return f"<pre>{html.escape(self.text())}</pre>"

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.text().splitlines()[0]}>"

    def _repr_html_(self) -> str:
        return self.html()

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self.text())


LOGIN_NOTE = ("This server asks for a login (user admin, password from "
              "$MLFLOW_AUTH_ADMIN_PASSWORD): clients set MLFLOW_TRACKING_USERNAME and "
              "MLFLOW_TRACKING_PASSWORD.")


def _backend(server: ServerRecord) -> str:
    """The backend store as shown (masked in the record), or what stands in for one."""
    return str(server.backend_store_uri or "none (artifacts only)")


def _login(server: ServerRecord) -> bool:
    return server.settings.get("app_name") == "basic-auth"


def _server_rows(server: ServerRecord, health: str | None = None) -> list[tuple[str, str]]:
    """The facts a user wants about a running server, as (label, HTML) rows. Stores are
    masked again here: a record is written masked, but one edited by hand may not be."""
    rows = [
        ("URL", code_html(server.url)),
        ("pid", f"{server.pid}" + (" (attached to its kernel)" if server.attached else "")),
        ("uptime", human_duration(server.uptime)),
        ("data folder", html.escape(server.data_dir)),
        ("backend store", html.escape(mask_uri(server.backend_store_uri)
                                      or "none (artifacts only)")),
    ]
    if server.registry_store_uri:
        rows.append(("registry store", html.escape(mask_uri(server.registry_store_uri))))
    proxied = " (proxied by the server)" if server.settings.get("serve_artifacts") else ""
    rows.append(("artifacts", html.escape(f"{mask_uri(server.artifact_location)}{proxied}")))
    if server.workers != 1 or server.jobs:
        rows.append(("processes", f"{server.workers} worker(s)"
                     + (", job runner on" if server.jobs else "")))
    if server.inherited_env:
        rows.append(("inherited", html.escape(", ".join(server.inherited_env))))
    rows.append(("MLflow", html.escape(server.mlflow_version)))
    rows.append(("log", html.escape(server.log_path)))
    if health:
        rows.append(("health", html.escape(health)))
    return rows


def _rows_text(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {html.unescape(_strip_tags(v))}" for k, v in rows)


def _strip_tags(fragment: str) -> str:
    """Drop the tags of our own small HTML fragments (links) for the text rendering."""
    out, inside = [], False
    for ch in fragment:
        if ch == "<":
            inside = True
        elif ch == ">":
            inside = False
        elif not inside:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True, repr=False)
class Launched(Renders):
    """A new server was started and answered after ``seconds``."""

    server: ServerRecord
    seconds: float
    #: risks to name: a server open beyond this machine, data others can read
    warnings: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return self.server.url

    def text(self) -> str:
        s = self.server
        return (f"Started MLflow server at {s.url} (pid {s.pid}): ready in {self.seconds:.1f} s"
                f"\n  data folder {s.data_dir}\n  backend {_backend(s)}"
                + (f"\n  {LOGIN_NOTE}" if _login(s) else "") + warnings_text(self.warnings))

    def html(self) -> str:
        s = self.server
        return (f"<div>Started MLflow server at {code_html(s.url)} (pid {s.pid}): ready in "
                f"{self.seconds:.1f} s &middot; data folder <code>{html.escape(s.data_dir)}"
                f"</code> &middot; backend <code>{html.escape(_backend(s))}</code>"
                + (f"<br>{html.escape(LOGIN_NOTE)}" if _login(s) else "")
                + warnings_html(self.warnings) + "</div>")


@dataclass(frozen=True, repr=False)
class Starting(Renders):
    """A new server is starting in the background; MLflow calls wait for it.

    ``pending.result()`` waits for the end of the start: the :class:`Launched`
    (or :class:`Reused`) result, or the start's error.
    """

    url: str
    data_dir: str
    pending: PendingStart

    def text(self) -> str:
        return (f"Starting MLflow server at {self.url}: MLflow calls wait for it\n"
                f"  data folder {self.data_dir}")

    def html(self) -> str:
        return (f"<div>Starting MLflow server at {code_html(self.url)} &middot; data folder "
                f"<code>{html.escape(self.data_dir)}</code>. The tracking URI is set: MLflow "
                "calls in the next cells wait for it.</div>")


@dataclass(frozen=True, repr=False)
class Reused(Renders):
    """A server was already running for the folder and is used as is."""

    server: ServerRecord
    warnings: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return self.server.url

    def text(self) -> str:
        s = self.server
        return (f"Reusing MLflow server at {s.url} (pid {s.pid}, up "
                f"{human_duration(s.uptime)})\n  data folder {s.data_dir}\n  backend "
                f"{_backend(s)}" + warnings_text(self.warnings))

    def html(self) -> str:
        s = self.server
        return (f"<div>Reusing MLflow server at {code_html(s.url)} (pid {s.pid}, up "
                f"{human_duration(s.uptime)}) &middot; data folder "
                f"<code>{html.escape(s.data_dir)}</code> &middot; backend "
                f"<code>{html.escape(_backend(s))}</code>{warnings_html(self.warnings)}</div>")


@dataclass(frozen=True, repr=False)
class Stopped(Renders):
    """The outcome of ``stop`` for one folder: ``server`` is None if none was running."""

    data_dir: str
    server: ServerRecord | None
    #: ``stop --force``: the record of a server on another host, forgotten here
    forgot: ServerRecord | None = None

    def text(self) -> str:
        if self.forgot is not None:
            return (f"Forgot the record of the MLflow server that host {self.forgot.hostname} "
                    f"started for {self.data_dir} (pid {self.forgot.pid} there); nothing "
                    "was stopped")
        if self.server is None:
            return f"No MLflow server is running for {self.data_dir}"
        return f"Stopped MLflow server at {self.server.url} (pid {self.server.pid})"


@dataclass(frozen=True, repr=False)
class StoppedAll(Renders):
    """The outcome of ``stop --all``: what stopped, and each folder that could not be."""

    stopped: list[Stopped] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def text(self) -> str:
        lines = [s.text() for s in self.stopped if s.server is not None]
        if not lines:
            lines = ["No MLflow servers were running."]
        lines += [f"Could not stop the server of {folder}: {why}" for folder, why in self.failed]
        return "\n".join(lines)


@dataclass(frozen=True, repr=False)
class ServerStatus(Renders):
    """The state of a data folder's server: running, unresponsive, crashed or stopped."""

    data_dir: str
    state: str
    server: ServerRecord | None = None
    detail: str | None = None
    log_path: str | None = None
    #: the end of the log, for a server that crashed or does not answer
    log_tail: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def _rows(self) -> list[tuple[str, str]]:
        if self.server is None:
            rows = [("data folder", html.escape(self.data_dir))]
            if self.detail:
                rows.append(("detail", html.escape(self.detail)))
            if self.log_path:
                rows.append(("log", html.escape(self.log_path)))
            return rows
        return _server_rows(self.server, self.detail)

    def _headline(self) -> str:
        return {
            "running": "MLflow server is running",
            "starting": "MLflow server is starting",
            "unresponsive": "MLflow server process is alive but does not answer",
            "crashed": "MLflow server has stopped unexpectedly (its record was stale)",
            "elsewhere": "MLflow server was started on another host",
            "foreign": "This data folder is another user's",
            "stopped": "No MLflow server is running",
        }.get(self.state, self.state)

    def text(self) -> str:
        text = f"{self._headline()}\n{_rows_text(self._rows())}" + warnings_text(self.warnings)
        if self.log_tail:
            text += f"\n  last lines of its log:\n{self.log_tail}"
        return text

    def html(self) -> str:
        colour = STATE_COLOURS.get(self.state, STATE_COLOURS["stopped"])
        tail = (f"<details><summary>last lines of its log</summary><pre>"
                f"{html.escape(self.log_tail)}</pre></details>" if self.log_tail else "")
        return (f'<div><b style="color:{colour}">{html.escape(self._headline())}</b>'
                f"{table_html(self._rows())}{warnings_html(self.warnings)}{tail}</div>")


@dataclass(frozen=True, repr=False)
class ServerList(Renders):
    """Every known server (``list``)."""

    servers: list[ServerStatus]

    def text(self) -> str:
        if not self.servers:
            return "No MLflow servers are known to be running."
        lines = [f"{'STATE':<13}{'URL':<28}{'PID':>8}  {'UP':>9}  DATA FOLDER"]
        for st in self.servers:
            s = st.server
            lines.append(
                f"{st.state:<13}{(s.url if s else '-'):<28}{(s.pid if s else '-'):>8}  "
                f"{(human_duration(s.uptime) if s else '-'):>9}  {st.data_dir}"
            )
        return "\n".join(lines)

    def html(self) -> str:
        if not self.servers:
            return f"<div>{html.escape(self.text())}</div>"
        head = "".join(f"<th style='text-align:left'>{h}</th>"
                       for h in ("state", "URL", "pid", "up", "data folder"))
        rows = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in (
                html.escape(st.state),
                code_html(st.server.url) if st.server else "-",
                str(st.server.pid) if st.server else "-",
                human_duration(st.server.uptime) if st.server else "-",
                f"<code>{html.escape(st.data_dir)}</code>",
            )) + "</tr>"
            for st in self.servers
        )
        return f"<table><tr>{head}</tr>{rows}</table>"


@dataclass(frozen=True, repr=False)
class Connected(Renders):
    """The kernel now talks to an existing tracking server (``connect``)."""

    url: str
    version: str
    registry_uri: str | None = None

    def text(self) -> str:
        extra = f", model registry at {self.registry_uri}" if self.registry_uri else ""
        return f"Connected to MLflow {self.version} at {self.url}{extra}"

    def html(self) -> str:
        extra = (f", model registry at <code>{html.escape(self.registry_uri)}</code>"
                 if self.registry_uri else "")
        return (f"<div>Connected to MLflow {html.escape(self.version)} at "
                f"{link_html(self.url)}{extra}</div>")


@dataclass(frozen=True, repr=False)
class LogTail(Renders):
    """The last lines of a server's log."""

    path: str
    lines: str

    def text(self) -> str:
        return f"==> {self.path} <==\n{self.lines}" if self.lines else f"{self.path} is empty"



@dataclass(frozen=True, repr=False)
class Pushed(Renders):
    """A push's outcome: what was copied (or, with ``--dry-run``, would be), and what the
    comparison of the two servers covered. Built by :func:`mlflow_magic.api.push`."""

    data_dir: str
    target: str  # masked
    dry_run: bool
    copied: str  # the plan's one line: runs, metric points, artifacts, models, traces
    nothing: bool  # the target already held everything
    created: tuple[str, ...] = ()  # experiments made on the target
    merged: tuple[tuple[str, int], ...] = ()  # (experiment, runs there from elsewhere)
    seconds: float = 0.0
    rates: str = ""
    checked: str = ""  # what the verification compared

    def lines(self) -> list[str]:
        if self.dry_run:
            head = (f"Nothing to push: {self.target} already holds everything of "
                    f"{self.data_dir}." if self.nothing else
                    f"A push of {self.data_dir} to {self.target} would copy {self.copied}.")
        elif self.nothing:
            head = (f"Nothing to copy: {self.target} already holds everything of "
                    f"{self.data_dir}.")
        else:
            head = (f"Pushed {self.data_dir} to {self.target} in "
                    f"{human_duration(self.seconds)}: {self.copied}.")
        out = [head]
        if self.created:
            verb = "would be created" if self.dry_run else "created"
            out.append(f"Experiments {verb} there: {', '.join(map(repr, self.created))}.")
        for name, others in self.merged:
            out.append(f"Experiment {name!r} already exists there with {others} other "
                       f"run{'s' if others != 1 else ''}: "
                       + ("this folder's runs would join them." if self.dry_run else
                          "this folder's runs were merged into it."))
        if self.rates:
            out.append(f"Rate: {self.rates}.")
        if self.checked:
            out.append(f"Verified: {self.checked}.")
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def html(self) -> str:
        first, *rest = self.lines()
        items = "".join(f"<li>{html.escape(line)}</li>" for line in rest)
        return (f"<div><b>{html.escape(first)}</b>"
                + (f"<ul style='margin:4px 0'>{items}</ul>" if items else "") + "</div>")
