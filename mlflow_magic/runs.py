"""``%%mlflow_run``: run code inside an MLflow run and summarise the run as a card.

Free of IPython: the cell magic hands in a callable that executes the cell
and says whether it succeeded. MLflow is imported here, on first use only.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .display import lab_tab_link
from .errors import ConfigError
from .results import Renders, link_html, table_html

MAX_ARTIFACTS = 1000


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


@dataclass(frozen=True, repr=False)
class RunCard(Renders):
    """What a run did: status, params, last metric values, artifacts, duration, link."""

    run_id: str
    run_name: str
    experiment_name: str
    status: str
    seconds: float
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: int = 0
    link: str | None = None
    parent_run_id: str | None = None

    def _rows(self) -> list[tuple[str, str]]:
        rows = [("status", html.escape(self.status)),
                ("experiment", html.escape(self.experiment_name)),
                ("duration", f"{self.seconds:.1f} s")]
        if self.parent_run_id:
            rows.append(("parent run", html.escape(self.parent_run_id)))
        rows += [(f"param {k}", html.escape(v)) for k, v in sorted(self.params.items())]
        rows += [(f"metric {k}", f"{v:.6g}") for k, v in sorted(self.metrics.items())]
        rows.append(("artifacts", str(self.artifacts)))
        return rows

    def text(self) -> str:
        lines = [f"MLflow run {self.run_name!r} ({self.run_id}) {self.status}"]
        lines += [f"  {k:<20} {html.unescape(v)}" for k, v in self._rows()[1:]]
        if self.link:
            lines.append(f"  {'UI':<20} {self.link}")
        return "\n".join(lines)

    def html(self) -> str:
        colour = "#2e7d32" if self.status == "FINISHED" else "#c62828"
        link = ""
        if self.link:
            link = f" &middot; {link_html(self.link, 'open this run in the MLflow UI')}"
            if self.link.startswith("/"):  # through Jupyter's proxy: a JupyterLab tab works
                link += f" &middot; {lab_tab_link(self.link)}"
        return (f'<div><b>MLflow run {html.escape(self.run_name)}</b> '
                f'<span style="color:{colour}">{html.escape(self.status)}</span>{link}'
                f"{table_html(self._rows())}</div>")


def run_cell(execute: Callable[[], bool], *, experiment: str | None = None,
             name: str | None = None, tags: Mapping[str, str] | None = None,
             autolog: bool = False, link_for: Callable[[str, str], str | None] | None = None,
             ) -> RunCard:
    """Run ``execute`` inside a new MLflow run; the run ends FAILED if it fails.

    Inside an active run (an enclosing ``with mlflow.start_run()`` or another
    ``%%mlflow_run``) the new run is nested under it.
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
    ok = False
    try:
        ok = execute()
    finally:
        mlflow.end_run(status="FINISHED" if ok else "FAILED")
        if autolog:
            mlflow.autolog(disable=True)
    return _card(client, run.info.run_id, time.monotonic() - started,
                 parent.info.run_id if parent else None, link_for)


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


def _card(client, run_id: str, seconds: float, parent_run_id: str | None,
          link_for: Callable[[str, str], str | None] | None) -> RunCard:
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    return RunCard(
        run_id=run_id,
        run_name=run.info.run_name or run_id,
        experiment_name=experiment.name,
        status=run.info.status,
        seconds=seconds,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        artifacts=_count_artifacts(client, run_id),
        link=link_for(run.info.experiment_id, run_id) if link_for else None,
        parent_run_id=parent_run_id,
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
