"""Every result as the user reads it: text for terminals (and a notebook's text form), HTML
for notebooks. The one place that knows how a result looks.

:func:`install` registers these renderings with :mod:`mlflow_magic.results`, so a result
shown by IPython (``_repr_html_``) or printed (``str``) reads the same wherever it came
from. Addresses are shown, not linked: a private server answers a bare browser visit
with its 401 page; the UI's own links (with a one-time login where one is needed) are the
ones to click.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..contract import BASIC_AUTH_APP, SYNC_IN_SYNC, SYNC_WAITING
from ..results import (
    Connected,
    Launched,
    LogTail,
    Pushed,
    Renderer,
    Result,
    Reused,
    ServerList,
    ServerStatus,
    Starting,
    Stopped,
    StoppedAll,
    SyncStatus,
)
from ..results import (
    install as install_renderer,
)
from ..settings.config import human
from ..settings.masking import mask_uri
from ..state.records import serving_pid

if TYPE_CHECKING:
    from ..state.records import ServerRecord

#: One colour per server state, for every HTML rendering (results and the panel).
STATE_COLOURS = {"running": "#2e7d32", "starting": "#1565c0", "sleeping": "#00838f",
                 "restarting": "#1565c0", "unresponsive": "#ef6c00", "crashed": "#c62828",
                 "crash loop": "#c62828", "elsewhere": "#6a1b9a", "stopped": "#616161",
                 "foreign": "#6a1b9a"}

LOGIN_NOTE = ("This server asks for a login (user admin, password from "
              "$MLFLOW_AUTH_ADMIN_PASSWORD): clients set MLFLOW_TRACKING_USERNAME and "
              "MLFLOW_TRACKING_PASSWORD.")

HEADLINES = {
    "running": "MLflow server is running",
    "starting": "MLflow server is starting",
    "sleeping": "MLflow server is asleep: its port is held, the next request wakes it",
    "restarting": "MLflow server crashed and is starting again",
    "crash loop": "MLflow server died right after each start and was given up",
    "unresponsive": "MLflow server process is alive but does not answer",
    "crashed": "MLflow server has stopped unexpectedly (its record was stale)",
    "elsewhere": "MLflow server was started on another host",
    "foreign": "This data folder is another user's",
    "stopped": "No MLflow server is running",
}


# --- small pieces ----------------------------------------------------------------------------


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
    """An address shown, not linked (see the module's docstring)."""
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


def _backend(server: ServerRecord) -> str:
    """The backend store as shown (masked in the record), or what stands in for one."""
    return str(server.backend_store_uri or "none (artifacts only)")


def _login(server: ServerRecord) -> bool:
    return server.settings.get("app_name") == BASIC_AUTH_APP


def _server_rows(server: ServerRecord, health: str | None = None) -> list[tuple[str, str]]:
    """The facts a user wants about a running server, as (label, HTML) rows. Stores are
    masked again here: a record is written masked, but one edited by hand may not be."""
    rows = [
        ("URL", code_html(server.url)),
        ("pid", _pids(server)),
        ("uptime", human_duration(server.uptime)),
        ("data folder", html.escape(server.data_dir)),
        ("backend store", html.escape(mask_uri(server.backend_store_uri)
                                      or "none (artifacts only)")),
    ]
    if server.registry_store_uri:
        rows.append(("registry store", html.escape(mask_uri(server.registry_store_uri))))
    proxied = " (proxied by the server)" if server.settings.get("serve_artifacts") else ""
    rows.append(("artifacts", html.escape(f"{mask_uri(server.artifact_location)}{proxied}")))
    if server.keeper:
        rows.append(("idle timeout", human(server.idle_timeout)
                     + (" (sleeps after that long without a request)"
                        if server.idle_timeout else "")))
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


def _pids(server: ServerRecord) -> str:
    """The keeper's pid and the MLflow server's (the one ``ps`` shows with its flags)."""
    said = f"{server.pid}"
    if server.keeper:
        serving = serving_pid(server)
        said += (f" (keeper; MLflow server {serving})" if serving is not None
                 else " (keeper; no MLflow server process now)")
    return said + (" (attached to its kernel)" if server.attached else "")


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


# --- a server started or reused ----------------------------------------------------------------


def _server_text(verb: str, s: ServerRecord, when: str, warnings: tuple[str, ...]) -> str:
    return (f"{verb} MLflow server at {s.url} ({when})\n  data folder {s.data_dir}\n"
            f"  backend {_backend(s)}" + (f"\n  {LOGIN_NOTE}" if _login(s) else "")
            + warnings_text(warnings))


def _server_html(verb: str, s: ServerRecord, when: str, warnings: tuple[str, ...]) -> str:
    return (f"<div>{verb} MLflow server at {code_html(s.url)} ({html.escape(when)}) &middot; "
            f"data folder <code>{html.escape(s.data_dir)}</code> &middot; backend "
            f"<code>{html.escape(_backend(s))}</code>"
            + (f"<br>{html.escape(LOGIN_NOTE)}" if _login(s) else "")
            + warnings_html(warnings) + "</div>")


def _launched_detail(r: Launched) -> str:
    detail = f"pid {r.server.pid}, ready in {r.seconds:.1f} s"
    if r.changes is not None:  # a restart says what it changed
        detail += "; " + (", ".join(r.changes) if r.changes else "no setting changed")
    return detail


def _launched_text(r: Launched) -> str:
    return _server_text("Started" if r.changes is None else "Restarted", r.server,
                        _launched_detail(r), r.warnings)


def _launched_html(r: Launched) -> str:
    return _server_html("Started" if r.changes is None else "Restarted", r.server,
                        _launched_detail(r), r.warnings)


def _reused_text(r: Reused) -> str:
    return _server_text("Reusing", r.server, f"pid {r.server.pid}, up "
                        f"{human_duration(r.server.uptime)}", r.warnings)


def _reused_html(r: Reused) -> str:
    return _server_html("Reusing", r.server, f"pid {r.server.pid}, up "
                        f"{human_duration(r.server.uptime)}", r.warnings)


def _starting_verb(r: Starting) -> str:
    return "Restarting" if r.restarting else "Starting"


def _starting_text(r: Starting) -> str:
    return (f"{_starting_verb(r)} MLflow server at {r.url}: MLflow calls wait for it\n"
            f"  data folder {r.data_dir}")


def _starting_html(r: Starting) -> str:
    return (f"<div>{_starting_verb(r)} MLflow server at {code_html(r.url)} &middot; data folder "
            f"<code>{html.escape(r.data_dir)}</code>. The tracking URI is set: MLflow "
            "calls in the next cells wait for it.</div>")


# --- stop -------------------------------------------------------------------------------------


def _stopped_text(r: Stopped) -> str:
    if r.forgot is not None:
        return (f"Forgot the record of the MLflow server that host {r.forgot.hostname} "
                f"started for {r.data_dir} (pid {r.forgot.pid} there); nothing was stopped")
    if r.server is None:
        return f"No MLflow server is running for {r.data_dir}"
    return (f"Stopped MLflow server at {r.server.url} (pid {r.server.pid}), the server of "
            f"{r.data_dir}")


def _stopped_all_text(r: StoppedAll) -> str:
    lines = [_stopped_text(s) for s in r.stopped if s.server is not None]
    if not lines:
        lines = ["No MLflow servers were running."]
    lines += [f"Could not stop the server of {folder}: {why}" for folder, why in r.failed]
    return "\n".join(lines)


# --- status and list --------------------------------------------------------------------------


def _status_rows(r: ServerStatus) -> list[tuple[str, str]]:
    if r.server is None:
        rows = [("data folder", html.escape(r.data_dir))]
        if r.detail:
            rows.append(("detail", html.escape(r.detail)))
        if r.log_path:
            rows.append(("log", html.escape(r.log_path)))
        return rows
    rows = _server_rows(r.server, r.detail)
    if r.sync is not None:
        rows.append(("team sync", sync_line(r.sync)))
    return rows


def _status_notes(r: ServerStatus) -> tuple[str, ...]:
    return r.warnings + (_sync_notes(r.sync) if r.sync is not None else ())


def _status_text(r: ServerStatus) -> str:
    text = (f"{HEADLINES.get(r.state, r.state)}\n{_rows_text(_status_rows(r))}"
            + warnings_text(_status_notes(r)))
    if r.log_tail:
        text += f"\n  last lines of its log:\n{r.log_tail}"
    return text


def _status_html(r: ServerStatus) -> str:
    colour = STATE_COLOURS.get(r.state, STATE_COLOURS["stopped"])
    tail = (f"<details><summary>last lines of its log</summary><pre>"
            f"{html.escape(r.log_tail)}</pre></details>" if r.log_tail else "")
    return (f'<div><b style="color:{colour}">{html.escape(HEADLINES.get(r.state, r.state))}'
            f"</b>{table_html(_status_rows(r))}{warnings_html(_status_notes(r))}{tail}</div>")


# --- the sync to a team server ------------------------------------------------------------------


def sync_line(r: SyncStatus) -> str:
    """One line (HTML) of where the sync is: "in sync with URL", "behind URL by ...",
    "waiting for URL", and when it last copied something."""
    target = code_html(r.target)
    if r.state == SYNC_IN_SYNC:
        line = f"in sync with {target}"
    elif r.state == SYNC_WAITING:
        line = f"waiting for {target} (see below)" + (
            f", behind by {html.escape(r.behind)}" if r.behind else "")
    else:
        line = f"behind {target}" + (f" by {html.escape(r.behind)}" if r.behind else "")
    if r.last_copied:
        line += f"; last copy {human_duration(max(time.time() - r.last_copied, 0))} ago"
    return line


def _sync_notes(r: SyncStatus) -> tuple[str, ...]:
    return (((r.last_error,) if r.last_error else ())
            + tuple(f"left alone on the team server: {why}" for why in r.left_alone)
            + tuple(f"the team server's copy differs: {d}" for d in r.differences))


def _sync_text(r: SyncStatus) -> str:
    return (f"Sync of {r.data_dir}: {html.unescape(_strip_tags(sync_line(r)))}"
            + warnings_text(_sync_notes(r)))


def _sync_html(r: SyncStatus) -> str:
    colour = {SYNC_IN_SYNC: STATE_COLOURS["running"]}.get(r.state, "#ef6c00")
    return (f'<div><b style="color:{colour}">&#9679; {html.escape(r.state)}</b> &middot; '
            f"{sync_line(r)}{warnings_html(_sync_notes(r))}</div>")


def status_line(status: ServerStatus) -> str:
    """One line of HTML for a status (the control panel's header): the state in colour, then
    the facts that matter."""
    colour = STATE_COLOURS.get(status.state, STATE_COLOURS["stopped"])
    parts = [f'<b style="color:{colour}">&#9679; {html.escape(status.state)}</b>',
             f"data folder <code>{html.escape(status.data_dir)}</code>"]
    server = status.server
    if server is not None and status.state != "crashed":
        parts += [
            f"{code_html(server.url)} (pid {server.pid}, up {human_duration(server.uptime)})",
            f"backend <code>{html.escape(str(server.backend_store_uri or 'none'))}</code>",
        ]
    if status.sync is not None:
        parts.append(f"team sync: {sync_line(status.sync)}")
    return " &middot; ".join(parts) + warnings_html(_status_notes(status))


def _list_text(r: ServerList) -> str:
    if not r.servers:
        return "No MLflow servers are known to be running."
    lines = [f"{'STATE':<13}{'URL':<28}{'PID':>8}  {'UP':>9}  DATA FOLDER"]
    for st in r.servers:
        s = st.server
        lines.append(
            f"{st.state:<13}{(s.url if s else '-'):<28}{(s.pid if s else '-'):>8}  "
            f"{(human_duration(s.uptime) if s else '-'):>9}  {st.data_dir}"
        )
    return "\n".join(lines)


def _list_html(r: ServerList) -> str:
    if not r.servers:
        return f"<div>{html.escape(_list_text(r))}</div>"
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
        for st in r.servers
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


# --- connect, logs, push -----------------------------------------------------------------------


def _connected_text(r: Connected) -> str:
    extra = f", model registry at {r.registry_uri}" if r.registry_uri else ""
    return f"Connected to MLflow {r.version} at {r.url}{extra}"


def _connected_html(r: Connected) -> str:
    extra = (f", model registry at <code>{html.escape(r.registry_uri)}</code>"
             if r.registry_uri else "")
    return (f"<div>Connected to MLflow {html.escape(r.version)} at "
            f"{link_html(r.url)}{extra}</div>")


def _log_text(r: LogTail) -> str:
    return f"==> {r.path} <==\n{r.lines}" if r.lines else f"{r.path} is empty"


def push_lines(r: Pushed) -> list[str]:
    """A push's report: the headline, then what was created, merged, how fast, and what the
    comparison of both sides covered."""
    if r.dry_run:
        head = (f"Nothing to push: {r.target} already holds everything of {r.data_dir}."
                if r.nothing else
                f"A push of {r.data_dir} to {r.target} would copy {r.copied}.")
    elif r.nothing:
        head = f"Nothing to copy: {r.target} already holds everything of {r.data_dir}."
    else:
        head = (f"Pushed {r.data_dir} to {r.target} in {human_duration(r.seconds)}: "
                f"{r.copied}.")
    out = [head]
    if r.created:
        verb = "would be created" if r.dry_run else "created"
        out.append(f"Experiments {verb} there: {', '.join(map(repr, r.created))}.")
    for name, others in r.merged:
        out.append(f"Experiment {name!r} already exists there with {others} other "
                   f"run{'s' if others != 1 else ''}: "
                   + ("this folder's runs would join them." if r.dry_run else
                      "this folder's runs were merged into it."))
    if r.rates is not None:
        runs, points, size = r.rates
        out.append(f"Rate: {runs:.1f} runs/s, {points:,.0f} points/s, {size / 1e6:.1f} MB/s.")
    if r.checked is not None:
        c = r.checked
        out.append(f"Verified: {c.runs:,} runs, {c.params:,} params, {c.tags:,} tags, "
                   f"{c.points:,} metric points and {c.artifacts:,} artifact checksums equal; "
                   f"{c.models:,} logged models, {c.versions:,} model versions and their "
                   f"aliases, {c.traces:,} traces there.")
    return out


def _pushed_html(r: Pushed) -> str:
    first, *rest = push_lines(r)
    items = "".join(f"<li>{html.escape(line)}</li>" for line in rest)
    return (f"<div><b>{html.escape(first)}</b>"
            + (f"<ul style='margin:4px 0'>{items}</ul>" if items else "") + "</div>")


# --- dispatch -----------------------------------------------------------------------------------


_TEXT: dict[type, Callable[[Any], str]] = {
    Launched: _launched_text, Reused: _reused_text, Starting: _starting_text,
    Stopped: _stopped_text, StoppedAll: _stopped_all_text, ServerStatus: _status_text,
    ServerList: _list_text, Connected: _connected_text, LogTail: _log_text,
    Pushed: lambda r: "\n".join(push_lines(r)), SyncStatus: _sync_text,
}
_HTML: dict[type, Callable[[Any], str]] = {
    Launched: _launched_html, Reused: _reused_html, Starting: _starting_html,
    ServerStatus: _status_html, ServerList: _list_html, Connected: _connected_html,
    Pushed: _pushed_html, SyncStatus: _sync_html,
}


def text(result: Result) -> str:
    """What a terminal prints for ``result`` (and a notebook's text form)."""
    return _TEXT[type(result)](result)


def html_of(result: Result) -> str:
    """What a notebook shows for ``result``; plain text in a ``<pre>`` where a result has
    nothing richer to show."""
    render = _HTML.get(type(result))
    return render(result) if render else f"<pre>{html.escape(text(result))}</pre>"


def install() -> None:
    """Make these the renderings of every result (idempotent)."""
    install_renderer(Renderer(text, html_of))


# --- what a cell keeps --------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """What an output ends as: HTML for notebooks and viewers, text for the rest."""

    html_body: str
    text_body: str

    def _repr_html_(self) -> str:
        return self.html_body

    def __repr__(self) -> str:
        return self.text_body

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self.text_body)


def failed(error: BaseException | str, elapsed: float | None = None) -> Shown:
    """A failed start, as its cell keeps it: the message (with the log's tail) in red."""
    after = f"MLflow: failed after {elapsed:.1f} s\n" if elapsed else ""
    return Shown(f'<pre style="white-space:pre-wrap;color:#c62828">{html.escape(after)}'
                 f"{html.escape(str(error))}</pre>", f"{after}{error}")


def shown_with(shown: object, view: object | None = None) -> Shown:
    """A result (or any displayable, as the UI view) and, below it, the inline UI: one
    output, HTML and text."""
    def html_part(obj: object) -> str:
        return html_of(obj) if isinstance(obj, Result) else obj._repr_html_()  # type: ignore[attr-defined]

    body = html_part(shown) + (html_part(view) if view is not None else "")
    return Shown(body, str(shown) + (f"\n{view}" if view is not None else ""))
