"""Copy exactly what a plan lists (:func:`apply`), in an order that keeps every link valid;
its progress as a :class:`Tally`."""

from __future__ import annotations

import contextlib
import functools
import posixpath
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ... import internals
from ...contract import PUSH_SOURCE_TAG
from ...tracking import TRACKING_ENV, environment

if TYPE_CHECKING:
    from mlflow import MlflowClient
from . import reading
from .planning import ExperimentPlan, ModelPlan, Plan, RegisteredPlan, RunPlan


@dataclass
class Tally:
    """How far a push is: what progress shows (runs, metric points, bytes; rate, time left)."""

    runs: int
    points: int
    bytes: int
    runs_done: int = 0
    points_done: int = 0
    bytes_done: int = 0
    started: float = field(default_factory=time.monotonic)
    phase: str = "runs"

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def fraction(self) -> float:
        """Done, weighted: a run's own calls, a metric point, an artifact byte."""
        total = self.runs * 20 + self.points + self.bytes / 2_000
        done = self.runs_done * 20 + self.points_done + self.bytes_done / 2_000
        return done / total if total else 1.0

    def text(self) -> str:
        elapsed = max(self.elapsed, 1e-6)
        left = (elapsed / self.fraction - elapsed) if self.fraction > 0.01 else None
        return (f"{self.phase}: runs {self.runs_done}/{self.runs} · metric points "
                f"{self.points_done:,}/{self.points:,} · {reading.mb(self.bytes_done)}/"
                f"{reading.mb(self.bytes)} · {self.rates()} · "
                + (f"{left:.0f} s left" if left is not None else "time left: measuring"))

    def rate_values(self) -> tuple[float, float, float]:
        """Runs, metric points and artifact bytes per second so far."""
        elapsed = max(self.elapsed, 1e-6)
        return self.runs_done / elapsed, self.points_done / elapsed, self.bytes_done / elapsed

    def rates(self) -> str:
        """:meth:`rate_values`, as the progress line says them."""
        runs, points, size = self.rate_values()
        return f"{runs:.1f} runs/s, {points:,.0f} points/s, {size / 1e6:.1f} MB/s"


Progress = Callable[[Tally], None]


def quiet() -> contextlib.AbstractContextManager[None]:
    """No "View run at" line per copied run and no download bar per file from MLflow's
    client: the push shows its own progress."""
    return environment(MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
                       MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")


def apply(source: MlflowClient, target: MlflowClient, found: Plan,
          on_progress: Progress | None = None) -> Tally:
    """Copy everything ``found`` lists, in an order that keeps every link valid."""
    pending = found.pending_runs
    tally = Tally(len(pending), found.points, found.bytes)
    report = on_progress or (lambda _tally: None)
    experiment_ids = {e.name: apply_experiment(target, e) for e in found.experiments}
    report(tally)
    # Every new run first: a nested run's link and a logged model need their run's new id.
    new = [run for run in pending if run.target_id is None]
    for run, made in zip(new, reading.parallel(lambda run: target.create_run(
            experiment_ids[run.experiment], start_time=run.source.info.start_time,
            run_name=run.source.info.run_name,
            tags={PUSH_SOURCE_TAG: run.source_id}), new), strict=True):
        run.target_id, run.target_artifact_uri = made.info.run_id, made.info.artifact_uri
        found.run_ids[run.source_id] = run.target_id
    tally.phase = "logged models"
    for model in found.models:
        _apply_model(source, target, model, experiment_ids[model.experiment], found)
        tally.bytes_done += sum(size for _, size in model.artifacts)
        report(tally)
    tally.phase = "runs"
    with ThreadPoolExecutor(reading.WORKERS) as pool:
        copies = {pool.submit(apply_run, source, target, run, found): run for run in pending}
        try:
            for copied in as_completed(copies):  # progress from this thread only (a cell's)
                copied.result()
                run = copies[copied]
                tally.runs_done += 1
                tally.points_done += len(run.points)
                tally.bytes_done += run.bytes
                report(tally)
        except BaseException:  # Ctrl-C or a failed run: the runs not begun are not begun
            for waiting in copies:
                waiting.cancel()
            raise
    tally.phase = "registered models"
    report(tally)
    for registered in found.registered:
        _apply_registered(target, registered, found)
    tally.phase = "traces"
    report(tally)
    for experiment, trace in found.traces:
        _apply_trace(target, trace, experiment_ids[experiment], found)
    tally.phase = "done"
    report(tally)
    return tally


def apply_experiment(target: MlflowClient, experiment: ExperimentPlan) -> str:
    if experiment.target_id is None:
        experiment.target_id = target.create_experiment(experiment.name,
                                                        tags=experiment.tags or None)
    else:
        for key, value in experiment.tags.items():
            target.set_experiment_tag(experiment.target_id, key, value)
    return experiment.target_id


def apply_run(source: MlflowClient, target: MlflowClient, run: RunPlan, found: Plan) -> None:
    """Everything a run lacks on the target (in a worker thread: it reports nothing)."""
    from mlflow.entities import Metric, Param, RunTag

    assert run.target_id is not None
    tags = dict(run.tags)
    if reading.PARENT_TAG in tags:
        parent = tags[reading.PARENT_TAG]
        tags[reading.PARENT_TAG] = found.run_ids.get(parent, parent)
    params = [Param(k, v) for k, v in run.params.items()]
    run_tags = [RunTag(k, v) for k, v in tags.items()]
    points = [Metric(m.key, m.value, m.timestamp, m.step,
                     model_id=reading.mapped(found.model_ids, getattr(m, "model_id", None)),
                     dataset_name=getattr(m, "dataset_name", None),
                     dataset_digest=getattr(m, "dataset_digest", None))
              for m in run.points]
    # As few calls as MLflow's limits allow (each costs a password hash on a server with a
    # login): 100 params, 100 tags and 1,000 entries in all per call.
    while params or run_tags or points:
        some_params, params = params[:reading.PARAM_BATCH], params[reading.PARAM_BATCH:]
        some_tags, run_tags = run_tags[:reading.PARAM_BATCH], run_tags[reading.PARAM_BATCH:]
        room = reading.BATCH - len(some_params) - len(some_tags)
        some_points, points = points[:room], points[room:]
        target.log_batch(run.target_id, metrics=some_points, params=some_params,
                         tags=some_tags, synchronous=True)
    _apply_links(target, run, found)
    reading.parallel(lambda item: _copy_artifact(source, target, run, item[0]), run.artifacts)
    if run.finish:
        target.set_terminated(run.target_id, run.source.info.status, run.source.info.end_time)


def _copy_artifact(source: MlflowClient, target: MlflowClient, run: RunPlan, path: str
                   ) -> None:
    """One artifact file: streamed from server to server where both proxy artifacts, else
    through a temporary file with MLflow's client (any store it knows)."""
    assert run.target_id is not None
    if run.target_artifact_uri and internals.stream_artifact(
            source.tracking_uri, run.source.info.artifact_uri, target.tracking_uri,
            run.target_artifact_uri, path):
        return
    reading.copy_file(functools.partial(source.download_artifacts, run.source_id, path),
                      functools.partial(target.log_artifact, run.target_id,
                                        artifact_path=posixpath.dirname(path) or None))


def _apply_links(target: MlflowClient, run: RunPlan, found: Plan) -> None:
    from mlflow.entities import LoggedModelInput, LoggedModelOutput

    assert run.target_id is not None
    models = [LoggedModelInput(found.model_ids[m]) for m in run.model_inputs
              if m in found.model_ids]
    if run.datasets or models:
        target.log_inputs(run.target_id, datasets=run.datasets or None, models=models or None)
    outputs = [LoggedModelOutput(found.model_ids[m], step) for m, step in run.model_outputs
               if m in found.model_ids]
    if outputs:
        target.log_outputs(run.target_id, outputs)


def _apply_model(source: MlflowClient, target: MlflowClient, model: ModelPlan,
                 experiment_id: str, found: Plan) -> None:
    src = model.source
    if model.target_id is None:
        model.target_id = target.create_logged_model(
            experiment_id, name=src.name,
            source_run_id=found.run_ids.get(src.source_run_id) if src.source_run_id else None,
            tags={**(src.tags or {}), PUSH_SOURCE_TAG: src.model_id},
            params=src.params or None, model_type=src.model_type).model_id
        found.model_ids[src.model_id] = model.target_id
    target_id = model.target_id
    for path, _size in model.artifacts:
        reading.copy_file(functools.partial(reading.download_model_file, source, src, path),
                   functools.partial(reading.upload_model_file, target, target_id,
                                     posixpath.dirname(path) or None))
    if model.finalize:
        target.finalize_logged_model(target_id, src.status)


def _apply_registered(target: MlflowClient, registered: RegisteredPlan, found: Plan) -> None:
    model = registered.source
    if not registered.exists:
        target.create_registered_model(model.name)
    for key, value in registered.tags.items():
        target.set_registered_model_tag(model.name, key, value)
    if registered.description:
        target.update_registered_model(model.name, description=model.description)
    for version in registered.versions:
        run_id = found.run_ids.get(version.run_id) if version.run_id else None
        source = _version_source(version, found, target)
        # A version of a logged model names it twice, in its source and its model_id
        # (which MLflow's search leaves out): both the copy's.
        model_id = reading.mapped(found.model_ids, getattr(version, "model_id", None)) or (
            source.removeprefix("models:/").split("/")[0]
            if source.startswith("models:/m-") else None)
        target.create_model_version(
            model.name, source, run_id=run_id,
            tags={**(version.tags or {}), PUSH_SOURCE_TAG: str(version.version)},
            description=version.description or None, model_id=model_id,
            await_creation_for=0)
    mapped = reading.version_map(target, model.name)
    for alias, version in registered.aliases.items():
        if version in mapped:
            target.set_registered_model_alias(model.name, alias, mapped[version])


def _version_source(version: Any, found: Plan, target: MlflowClient) -> str:
    """The version's ``source`` on the target: its logged model's or run's new id."""
    src = version.source or ""
    if src.startswith("models:/m-"):
        model_id, _, rest = src.removeprefix("models:/").partition("/")
        mapped = found.model_ids.get(model_id, model_id)
        return f"models:/{mapped}" + (f"/{rest}" if rest else "")
    if src.startswith("runs:/"):
        run_id, _, rest = src.removeprefix("runs:/").partition("/")
        return f"runs:/{found.run_ids.get(run_id, run_id)}/{rest}"
    if version.run_id and version.run_id in found.run_ids and f"/{version.run_id}/" in src:
        target_run = target.get_run(found.run_ids[version.run_id])
        rest = src.partition(f"/{version.run_id}/")[2]
        return target_run.info.artifact_uri.rsplit("/artifacts", 1)[0] + "/" + rest
    return src


def _apply_trace(target: MlflowClient, trace: Any, experiment_id: str, found: Plan) -> None:
    data = trace.to_dict()
    info = data.setdefault("info", {})
    info.setdefault("tags", {})[PUSH_SOURCE_TAG] = trace.info.trace_id
    meta = info.get("trace_metadata") or {}
    if meta.get(reading.TRACE_RUN_KEY) in found.run_ids:
        meta[reading.TRACE_RUN_KEY] = found.run_ids[meta[reading.TRACE_RUN_KEY]]
    if meta.get(reading.TRACE_MODEL_KEY) in found.model_ids:
        meta[reading.TRACE_MODEL_KEY] = found.model_ids[meta[reading.TRACE_MODEL_KEY]]
    with environment(TRACKING_ENV):  # MLflow's copy leaves it pointing at the target
        internals.copy_trace(data, experiment_id, target.tracking_uri)

