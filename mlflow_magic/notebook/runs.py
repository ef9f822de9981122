"""``%%mlflow_run``: run code inside an MLflow run and show it as a card you look at.

The card has a small line chart of each metric's history (static SVG: it stays in
the saved notebook and reads on GitHub), the last value and the range, the
params, the status, and the runs nested under it as rows. While the cell runs,
the card is redrawn every second from the server (one ``runs/get`` a second, the
children every few), in the same output; it ends as the static final card, with
each metric's whole history cut down to a few kilobytes.

``compare(runs or experiment, metrics=[...])`` draws the same charts for several
runs, overlaid, with a legend.

Free of IPython: the cell magic hands in a callable that executes the cell and
says whether it succeeded, and one that shows (and later replaces) the card.
MLflow is imported here, on first use only.
"""

from __future__ import annotations

import contextlib
import difflib
import html
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import quote

from ..errors import ConfigError
from ..front.render import link_html, table_html
from ..front.ui import lab_tab_link
from ..remote import rest
from ..results import Result
from ..tracking import mlflow_tracking_uri
from . import charts

MAX_ARTIFACTS = 1000
#: How often the card of a running cell is redrawn, and its children looked up.
LIVE_EVERY = 1.0
CHILDREN_EVERY = 3
MAX_CHILDREN = 50
#: Runs overlaid in one ``compare`` chart at most (one colour each).
MAX_COMPARED = len(charts.PALETTE)
STATUS_COLOURS = {"FINISHED": "#2e7d32", "RUNNING": "#1565c0", "FAILED": "#c62828",
                  "KILLED": "#c62828", "SCHEDULED": "#616161"}
_log = logging.getLogger(__name__)

Point = charts.Point


def parse_tags(items: list[str] | None) -> dict[str, str]:
    """``["team=vision", "stage=dev"]`` -> a dict; anything else is explained."""
    tags = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tags takes key=value pairs, not {item!r}: e.g. "
                              "`%%mlflow_run --tags team=vision stage=dev`.")
        tags[key] = value
    return tags


@dataclass(frozen=True)
class ChildRun:
    """A run nested under the card's run: one row."""

    run_id: str
    run_name: str
    status: str
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, repr=False)
class RunCard(Result):
    """What a run did: status, params, metrics and their charts, nested runs, artifacts."""

    run_id: str
    run_name: str
    experiment_name: str
    status: str
    seconds: float
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    artifacts: int | None = 0
    link: str | None = None
    #: the run on the team server, once ``--sync-to`` copied it there
    team_link: str | None = None
    parent_run_id: str | None = None
    #: each metric's history, cut down for the chart
    histories: Mapping[str, Sequence[Point]] = field(default_factory=dict)
    children: Sequence[ChildRun] = ()

    def _rows(self) -> list[tuple[str, str]]:
        rows = [("status", html.escape(self.status)),
                ("experiment", html.escape(self.experiment_name)),
                ("duration", f"{self.seconds:.1f} s")]
        if self.parent_run_id:
            rows.append(("parent run", html.escape(self.parent_run_id)))
        rows += [(f"param {k}", html.escape(str(v))) for k, v in sorted(self.params.items())]
        rows += [(f"metric {k}", f"{v:.6g}") for k, v in sorted(self.metrics.items())]
        if self.artifacts is not None:
            rows.append(("artifacts", str(self.artifacts)))
        return rows

    def text(self) -> str:
        lines = [f"MLflow run {self.run_name!r} ({self.run_id}) {self.status}"]
        lines += [f"  {k:<20} {html.unescape(v)}" for k, v in self._rows()[1:]]
        lines += [f"  {'nested run':<20} {c.run_name} ({c.run_id}) {c.status}"
                  + "".join(f", {k} {v:.6g}" for k, v in sorted(c.metrics.items()))
                  for c in self.children]
        if self.link:
            lines.append(f"  {'UI':<20} {self.link}")
        if self.team_link:
            lines.append(f"  {'team server':<20} {self.team_link}")
        return "\n".join(lines)

    def html(self) -> str:
        colour = STATUS_COLOURS.get(self.status, "#c62828")
        link = ""
        if self.link:
            link = f" &middot; {link_html(self.link, 'open this run in the MLflow UI')}"
            if self.link.startswith("/"):  # through Jupyter's proxy: a JupyterLab tab works
                link += f" &middot; {lab_tab_link(self.link)}"
        if self.team_link:
            link += f" &middot; {link_html(self.team_link, 'on the team server')}"
        return (f'<div class="mlflow-magic-run"><b>MLflow run {html.escape(self.run_name)}</b> '
                f'<span style="color:{colour}">{html.escape(self.status)}</span>{link}'
                f"{table_html(self._rows())}{self._charts()}{self._children()}</div>")

    def _charts(self) -> str:
        shown = [charts.line_chart(key, [charts.Series(self.run_name, points)])
                 for key, points in sorted(self.histories.items())]
        return (f'<div style="display:flex;flex-wrap:wrap;gap:6px">{"".join(shown)}</div>'
                if shown else "")

    def _children(self) -> str:
        if not self.children:
            return ""
        keys = sorted({k for c in self.children for k in c.metrics})[:6]
        head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>"
                       for h in ("nested run", "status", *keys))
        rows = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{cell}</td>" for cell in (
                f"{html.escape(c.run_name)} <code>{html.escape(c.run_id[:8])}</code>",
                f'<span style="color:{STATUS_COLOURS.get(c.status, "#c62828")}">'
                f"{html.escape(c.status)}</span>",
                *(f"{c.metrics[k]:.6g}" if k in c.metrics else "" for k in keys))) + "</tr>"
            for c in self.children)
        return f'<table class="mlflow-magic-children"><tr>{head}</tr>{rows}</table>'


# --- running a cell ----------------------------------------------------------------------


def run_cell(execute: Callable[[], bool], *, experiment: str | None = None,
             name: str | None = None, tags: Mapping[str, str] | None = None,
             autolog: bool = False, link_for: Callable[[str, str], str | None] | None = None,
             show: Callable[[RunCard], None] | None = None, server_url: str | None = None,
             live_every: float = LIVE_EVERY,
             team_for: Callable[[str], str | None] | None = None) -> RunCard:
    """Run ``execute`` inside a new MLflow run; the run ends FAILED if it fails.

    Inside an active run (an enclosing ``with mlflow.start_run()`` or another
    ``%%mlflow_run``) the new run is nested under it. With ``show`` and
    ``server_url``, ``show(card)`` is called at once and then every ``live_every``
    seconds while the cell runs; the final card is returned. ``team_for(run_id)``: the
    run's link on the team server (``--sync-to``), once it is there.
    """
    import mlflow

    client = mlflow.MlflowClient()
    experiment_id = _experiment_id(client, experiment)
    parent = mlflow.active_run()
    # Only turn autologging on (and off afterwards) if the user had none: a state they
    # set up themselves is left exactly as it was.
    autolog = autolog and not _autolog_enabled()
    if autolog:
        mlflow.autolog(silent=True)
    started = time.monotonic()
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=dict(tags or {}),
                           nested=parent is not None)
    parent_id = parent.info.run_id if parent else None
    live = None
    if show is not None and server_url:
        first = RunCard(run.info.run_id, run.info.run_name or run.info.run_id,
                        _experiment_name(client, run.info.experiment_id), "RUNNING", 0.0,
                        artifacts=None, parent_run_id=parent_id,
                        link=link_for(run.info.experiment_id, run.info.run_id)
                        if link_for else None)
        show(first)
        live = LiveCard(first, server_url, started, show, live_every, team_for).begin()
    ok = False
    try:
        ok = execute()
    finally:
        if live is not None:
            live.end()
        mlflow.end_run(status="FINISHED" if ok else "FAILED")
        if autolog:
            mlflow.autolog(disable=True)
    return card_of(client, run.info.run_id, time.monotonic() - started, parent_id, link_for,
                   team_for)


class LiveCard:
    """The card of a running cell, redrawn from the server every ``every`` seconds.

    Cheap on purpose: one ``runs/get`` a second (the latest value of every metric,
    with its step: the live charts grow from those), and the nested runs every
    :data:`CHILDREN_EVERY` rounds; plain REST in a thread of its own, so a training
    loop that logs every step is not held up (``benchmarks/``).
    """

    def __init__(self, card: RunCard, server_url: str, started: float,
                 show: Callable[[RunCard], None], every: float = LIVE_EVERY,
                 team_for: Callable[[str], str | None] | None = None) -> None:
        self.card, self.url, self.started = card, server_url.rstrip("/"), started
        self.show, self.every, self.team_for = show, every, team_for
        self.points: dict[str, list[Point]] = {}
        self.children: Sequence[ChildRun] = ()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlflow-magic-run-card",
                                        daemon=True)

    def begin(self) -> LiveCard:
        self._thread.start()
        return self

    def end(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)

    def _loop(self) -> None:
        rounds = 0
        while not self._stop.wait(self.every):
            try:
                self.show(self.redraw(rounds % CHILDREN_EVERY == 0))
            except Exception:  # the server busy or gone for a moment: try again next round
                _log.debug("mlflow_magic: live run card not redrawn", exc_info=True)
            rounds += 1

    def redraw(self, with_children: bool = False) -> RunCard:
        """The card as the server has the run now."""
        from ..security.ports import headers_for_url

        headers = headers_for_url(self.url)
        data = rest.get_json(f"{self.url}/api/2.0/mlflow/runs/get?run_id="
                             f"{quote(self.card.run_id)}", headers=headers)["run"]
        latest = {m["key"]: (float(m.get("step", 0)), float(m["value"]))
                  for m in data.get("data", {}).get("metrics", [])}
        for key, point in latest.items():
            history = self.points.setdefault(key, [])
            if not history or history[-1] != point:
                history.append(point)
        if with_children:
            self.children = _children(self.url, headers, self.card.run_id)
        self.card = replace(
            self.card, status=data["info"].get("status", "RUNNING"),
            seconds=time.monotonic() - self.started,
            params={p["key"]: p["value"] for p in data.get("data", {}).get("params", [])},
            metrics={k: v for k, (_, v) in latest.items()},
            histories={k: charts.downsample(v) for k, v in self.points.items()},
            children=self.children,
            team_link=self.team_for(self.card.run_id) if self.team_for else None)
        return self.card


def _children(url: str, headers: Mapping[str, str], run_id: str) -> list[ChildRun]:
    """The runs nested under ``run_id``, in any experiment: a nested ``start_run`` goes to the
    active experiment, which need not be its parent's."""
    experiments = rest.get_json(f"{url}/api/2.0/mlflow/experiments/search?max_results=1000",
                                headers=headers).get("experiments", [])
    found = rest.post_json(f"{url}/api/2.0/mlflow/runs/search", {
        "experiment_ids": [e["experiment_id"] for e in experiments],
        "max_results": MAX_CHILDREN,
        "filter": f"tags.mlflow.parentRunId = '{run_id}'",
        "order_by": ["attributes.start_time ASC"]}, headers=headers)
    return [ChildRun(r["info"]["run_id"], r["info"].get("run_name") or r["info"]["run_id"],
                     r["info"].get("status", ""),
                     {m["key"]: float(m["value"]) for m in r.get("data", {}).get("metrics", [])})
            for r in found.get("runs", [])]


def _autolog_enabled() -> bool:
    """True if any autologging integration is on in this process."""
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    return any(config.get("disable") is False for config in AUTOLOGGING_INTEGRATIONS.values())


def _experiment_id(client, name: str | None) -> str | None:
    """The experiment named ``name`` (created if new); None keeps the active one."""
    if not name:
        return None
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def _experiment_name(client, experiment_id: str) -> str:
    with contextlib.suppress(Exception):
        return client.get_experiment(experiment_id).name
    return experiment_id


def history(client, run_id: str, key: str) -> list[Point]:
    """A metric's whole history, cut down for a chart."""
    return charts.downsample([(float(m.step), float(m.value))
                              for m in client.get_metric_history(run_id, key)])


def card_of(client, run_id: str, seconds: float, parent_run_id: str | None,
            link_for: Callable[[str, str], str | None] | None,
            team_for: Callable[[str], str | None] | None = None) -> RunCard:
    """The static final card of a run: every metric's history, the nested runs."""
    import mlflow

    run = client.get_run(run_id)
    children = mlflow.search_runs(  # in any experiment (see _children)
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'", search_all_experiments=True,
        max_results=MAX_CHILDREN, order_by=["attributes.start_time ASC"], output_format="list")
    return RunCard(
        run_id=run_id,
        run_name=run.info.run_name or run_id,
        experiment_name=_experiment_name(client, run.info.experiment_id),
        status=run.info.status,
        seconds=seconds,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        artifacts=_count_artifacts(client, run_id),
        link=link_for(run.info.experiment_id, run_id) if link_for else None,
        team_link=team_for(run_id) if team_for else None,
        parent_run_id=parent_run_id,
        histories={key: history(client, run_id, key) for key in run.data.metrics},
        children=[ChildRun(c.info.run_id, c.info.run_name or c.info.run_id, c.info.status,
                           dict(c.data.metrics)) for c in children],
    )


def _count_artifacts(client, run_id: str, path: str | None = None, seen: int = 0) -> int:
    """Files under the run's artifacts, counted up to MAX_ARTIFACTS."""
    count = 0
    for info in client.list_artifacts(run_id, path):
        if seen + count >= MAX_ARTIFACTS:
            break
        if info.is_dir:
            count += _count_artifacts(client, run_id, info.path, seen + count)
        else:
            count += 1
    return count


# --- comparing runs ----------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Comparison(Result):
    """Several runs' metric histories, overlaid: one chart per metric, one colour per run."""

    title: str
    runs: Sequence[tuple[str, str]]  # (run id, label)
    #: metric -> one series per run that has it
    charts: Mapping[str, Sequence[charts.Series]]
    #: (run label, metric) -> last value
    last: Mapping[tuple[str, str], float]

    def text(self) -> str:
        keys = list(self.charts)
        lines = [self.title, "  " + "  ".join([f"{'run':<24}", *(f"{k:>12}" for k in keys)])]
        for _, label in self.runs:
            values = [f"{self.last[(label, k)]:>12.6g}" if (label, k) in self.last
                      else f"{'':>12}" for k in keys]
            lines.append("  " + "  ".join([f"{label[:24]:<24}", *values]))
        return "\n".join(lines)

    def html(self) -> str:
        drawn = "".join(charts.line_chart(key, series) for key, series in self.charts.items())
        everyone = [charts.Series(label, (), charts.PALETTE[i % len(charts.PALETTE)])
                    for i, (_, label) in enumerate(self.runs)]
        return (f'<div class="mlflow-magic-compare"><b>{html.escape(self.title)}</b>'
                f"<div>{charts.legend(everyone)}</div>"
                f'<div style="display:flex;flex-wrap:wrap;gap:6px">{drawn}</div></div>')


def compare(runs: str | Iterable[object], metrics: Sequence[str] | None = None, *,
            max_runs: int = MAX_COMPARED) -> Comparison:
    """Chart the metric histories of several runs, overlaid, with a legend.

    ``runs`` is an experiment (its name or id: its latest ``max_runs`` runs), or run
    ids, or MLflow ``Run`` objects. ``metrics`` picks the charts (default: every
    metric of those runs). Uses the tracking server MLflow points at.
    """
    import mlflow

    client = mlflow.MlflowClient()
    title, found = _runs_to_compare(client, runs, max_runs)
    if not found:
        raise ConfigError(f"{title} has no runs to compare. Log some runs first, or pass run "
                          "ids: `mlflow_magic.compare([run_id_1, run_id_2])`.")
    keys = list(metrics) if metrics else sorted({k for r in found for k in r.data.metrics})
    labels = [(r.info.run_id, _label(r, found)) for r in found]
    drawn: dict[str, list[charts.Series]] = {}
    last: dict[tuple[str, str], float] = {}
    for key in keys:
        for i, run in enumerate(found):
            if key not in run.data.metrics:
                continue
            label = labels[i][1]
            drawn.setdefault(key, []).append(charts.Series(
                label, history(client, run.info.run_id, key), charts.PALETTE[i]))
            last[(label, key)] = run.data.metrics[key]
    missing = [k for k in keys if k not in drawn]
    if missing:
        have = sorted({k for r in found for k in r.data.metrics})
        close = [m for k in missing for m in difflib.get_close_matches(k, have, n=1)]
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"No run compared ({title}) has the metric {', '.join(map(repr, missing))}.{hint} "
            f"The runs have {', '.join(map(repr, have)) or 'no metrics'}; name some of "
            "them, or leave metrics out to chart every one.")
    return Comparison(title, labels, drawn, last)


def _runs_to_compare(client, runs: str | Iterable[object],
                     max_runs: int) -> tuple[str, list]:
    max_runs = max(1, min(max_runs, MAX_COMPARED))
    if isinstance(runs, str):
        experiment = (client.get_experiment(runs) if runs.isdigit()
                      else client.get_experiment_by_name(runs))
        if experiment is None:
            raise ConfigError(f"There is no experiment {runs!r} on {mlflow_tracking_uri()}. "
                              "Check its name (the UI's experiment list shows them).")
        found = client.search_runs([experiment.experiment_id], max_results=max_runs,
                                   order_by=["attributes.start_time DESC"])
        return f"Runs of experiment {experiment.name}", list(found)
    found = [client.get_run(r) if isinstance(r, str) else r for r in runs]
    if len(found) > MAX_COMPARED:
        raise ConfigError(f"{len(found)} runs are too many for one chart: compare at most "
                          f"{MAX_COMPARED} (one colour each).")
    return f"{len(found)} runs", found


def _label(run, everyone: Sequence) -> str:
    """A run's name, with its id's start where two runs share a name."""
    name = run.info.run_name or run.info.run_id
    same = [r for r in everyone if (r.info.run_name or r.info.run_id) == name]
    return f"{name} ({run.info.run_id[:6]})" if len(same) > 1 else name
