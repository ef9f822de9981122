"""Copy a data folder's MLflow data to another tracking server: ``push --to URL``.

MLflow has no server-to-server copy, and the export-import tools lose data on the way
(runs with model inputs, artifacts between local servers, creation dates) and double
runs when run twice (README, "Move a laptop folder to the team server"). This copy is
written on :class:`mlflow.MlflowClient` and makes the target *equal* to the source
rather than replaying a log:

1. :func:`plan` reads both sides and lists what the target lacks: experiments, runs
   and, per run, the params, tags, metric points, dataset and model links and artifact
   files missing there. Each copied object carries its source id in the tag
   :data:`~mlflow_magic.contract.PUSH_SOURCE_TAG`, so the target object of every
   source object is found again by a later push.
2. :func:`apply` copies exactly that list, in an order that keeps links valid
   (experiments, runs, logged models, then metric points, links, artifacts, the
   runs' end, registered models, traces).
3. :func:`verify` plans again, which must find nothing, and compares what a plan
   cannot: extra metric points, params of another value and every artifact's sha256.

So a second push plans nothing and says so, and a push stopped anywhere (kill -9,
network gone, Ctrl-C) resumes where it stopped: the next plan lists only what is still
missing, never a second copy. Nothing on the source is written.

Run times, statuses, metric timestamps and steps are kept. MLflow's API gives no way to
set a logged model's or a model version's creation time, or a registered model's
deprecated stage: those are the target's.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import internals
from .contract import PUSH_SOURCE_TAG
from .errors import PushError
from .tracking import TRACKING_ENV, environment

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Run

#: Entries (metric points, params, tags) per ``log_batch`` call: MLflow's limit.
BATCH = 1000
#: Params, and tags, per ``log_batch`` call (MLflow's limit: 100 each).
PARAM_BATCH = 100
PARENT_TAG = "mlflow.parentRunId"
#: What a run's trace metadata names its run and logged model with.
TRACE_RUN_KEY = "mlflow.sourceRun"
TRACE_MODEL_KEY = "mlflow.modelId"
PAGE = 1000
#: Requests in flight at once (runs copied, compared or planned side by side).
WORKERS = 4


# --- what the target lacks ---------------------------------------------------------------


@dataclass
class RunPlan:
    """One source run and what its target run lacks (everything, for a new one)."""

    source: Run
    experiment: str  # the source experiment's name
    target_id: str | None = None  # None: the run is new
    target: Run | None = None  # the copy as the plan found it
    files: list[tuple[str, int]] = field(default_factory=list)  # every artifact of the source
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    points: list[Metric] = field(default_factory=list)
    datasets: list[Any] = field(default_factory=list)  # DatasetInput
    model_inputs: list[str] = field(default_factory=list)  # source logged model ids
    model_outputs: list[tuple[str, int]] = field(default_factory=list)
    artifacts: list[tuple[str, int]] = field(default_factory=list)  # (path, size)
    finish: bool = False  # its status and end time are still to be set

    @property
    def source_id(self) -> str:
        return self.source.info.run_id

    @property
    def empty(self) -> bool:
        return self.target_id is not None and not (
            self.params or self.tags or self.points or self.datasets or self.model_inputs
            or self.model_outputs or self.artifacts or self.finish)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.artifacts)


@dataclass
class ModelPlan:
    """A logged model (MLflow 3) the target lacks, or one whose upload did not end."""

    source: Any  # LoggedModel
    experiment: str
    target_id: str | None = None
    artifacts: list[tuple[str, int]] = field(default_factory=list)
    finalize: bool = False  # the source's upload ended (READY or FAILED), the copy's not yet


@dataclass
class RegisteredPlan:
    """A registered model: created if missing, its versions, tags, description, aliases."""

    source: Any  # RegisteredModel
    exists: bool
    versions: list[Any] = field(default_factory=list)  # ModelVersions the target lacks
    tags: dict[str, str] = field(default_factory=dict)
    description: bool = False
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> source version

    @property
    def empty(self) -> bool:
        return self.exists and not (self.versions or self.tags or self.description
                                    or self.aliases)


@dataclass
class ExperimentPlan:
    name: str
    source_id: str
    target_id: str | None  # None: created by the push
    tags: dict[str, str] = field(default_factory=dict)  # description is mlflow.note.content
    others: int = 0  # runs already on the target that did not come from this folder


@dataclass
class Plan:
    """Everything the target lacks, and the map of source ids to target ids found."""

    experiments: list[ExperimentPlan] = field(default_factory=list)
    runs: list[RunPlan] = field(default_factory=list)
    models: list[ModelPlan] = field(default_factory=list)
    registered: list[RegisteredPlan] = field(default_factory=list)
    traces: list[tuple[str, Any]] = field(default_factory=list)  # (experiment, Trace)
    run_ids: dict[str, str] = field(default_factory=dict)  # source run -> target run
    model_ids: dict[str, str] = field(default_factory=dict)
    #: Every metric history read, by (run id, key): the source's and the target's.
    histories: dict[tuple[str, str], list[Metric]] = field(default_factory=dict)
    source_runs: int = 0
    source_points: int = 0

    @property
    def pending_runs(self) -> list[RunPlan]:
        return [run for run in self.runs if not run.empty]

    @property
    def points(self) -> int:
        return sum(len(run.points) for run in self.runs)

    @property
    def bytes(self) -> int:
        return (sum(run.bytes for run in self.runs)
                + sum(size for model in self.models for _, size in model.artifacts))

    @property
    def versions(self) -> int:
        return sum(len(model.versions) for model in self.registered)

    @property
    def empty(self) -> bool:
        return not (any(e.target_id is None or e.tags for e in self.experiments)
                    or self.pending_runs or self.models or self.traces
                    or any(not r.empty for r in self.registered))

    def summary(self) -> str:
        """One line of what the plan copies, naming only what there is (a verification
        that finds one model version missing says that, not "0 runs")."""
        new = sum(1 for run in self.runs if run.target_id is None)
        resumed = len(self.pending_runs) - new
        artifacts = sum(len(r.artifacts) for r in self.runs)
        parts = []
        if self.pending_runs:
            parts.append(f"{_n(len(self.pending_runs), 'run')} ({new} new"
                         + (f", {resumed} to finish" if resumed else "") + ")")
        if self.points:
            parts.append(f"{self.points:,} metric points")
        if artifacts:
            parts.append(f"{_n(artifacts, 'artifact')} ({_mb(self.bytes)})")
        if self.models:
            parts.append(_n(len(self.models), "logged model"))
        if self.registered:
            parts.append(f"{_n(self.versions, 'model version')} of "
                         f"{_n(len(self.registered), 'registered model')}")
        if self.traces:
            parts.append(_n(len(self.traces), "trace"))
        settled = [e for e in self.experiments if e.target_id is None or e.tags]
        if settled and not parts:  # an empty experiment, or only its tags
            parts.append(_n(len(settled), "experiment"))
        return ", ".join(parts) or "nothing"


def plan(source: MlflowClient, target: MlflowClient,
         experiments: Sequence[str] | None = None) -> Plan:
    """What ``target`` lacks of ``source`` (all experiments, or those named)."""
    found = Plan()
    for experiment in _source_experiments(source, experiments):
        _plan_experiment(source, target, experiment, found)
    _plan_registered(source, target, found)
    return found


def _source_experiments(source: MlflowClient, names: Sequence[str] | None) -> list[Any]:
    every = list(_pages(lambda token: source.search_experiments(
        max_results=PAGE, page_token=token)))
    if not names:
        return every
    by_name = {e.name: e for e in every}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise PushError(
            f"No experiment named {', '.join(map(repr, missing))} in this data folder: it has "
            f"{', '.join(repr(n) for n in sorted(by_name)) or 'none'}. Name one of those with "
            "--experiment, or leave it out to push every experiment.")
    return [by_name[name] for name in names]


def _plan_experiment(source: MlflowClient, target: MlflowClient, experiment: Any,
                     found: Plan) -> None:
    there = target.get_experiment_by_name(experiment.name)
    if there is not None and there.lifecycle_stage == "deleted":
        raise PushError(
            f"The target server has an experiment named {experiment.name!r} that was deleted "
            "there, so its runs cannot be merged into it. Restore it on the target "
            "(`mlflow experiments restore`), or rename this folder's experiment, then push "
            "again.")
    tags = {k: v for k, v in experiment.tags.items() if there is None or there.tags.get(k) != v}
    plan_ = ExperimentPlan(experiment.name, experiment.experiment_id,
                           there.experiment_id if there else None, tags)
    found.experiments.append(plan_)
    targets: dict[str, Run] = {}
    if there is not None:
        for run in _runs(target, there.experiment_id):
            origin = run.data.tags.get(PUSH_SOURCE_TAG)
            if origin:
                targets[origin] = run
            else:
                plan_.others += 1
    runs = _runs(source, experiment.experiment_id)
    found.histories.update(_histories(source, runs))
    found.histories.update(_histories(target, [targets[r.info.run_id] for r in runs
                                               if r.info.run_id in targets]))
    for run in runs:
        found.source_runs += 1
        found.source_points += sum(len(found.histories.get((run.info.run_id, key), []))
                                   for key in run.data.metrics)
        if run.info.run_id in targets:
            found.run_ids[run.info.run_id] = targets[run.info.run_id].info.run_id
    found.runs.extend(_parallel(lambda run: _plan_run(
        source, target, run, experiment.name, targets.get(run.info.run_id), found), runs))
    _plan_models(source, target, experiment, there, found)
    _plan_traces(source, target, experiment, there, found)


def _plan_run(source: MlflowClient, target: MlflowClient, run: Run, experiment: str,
              mine: Run | None, found: Plan) -> RunPlan:
    plan_ = RunPlan(run, experiment, mine.info.run_id if mine else None, mine)
    have_params = mine.data.params if mine else {}
    plan_.params = {k: v for k, v in run.data.params.items() if k not in have_params}
    have_tags = mine.data.tags if mine else {}
    plan_.tags = {k: v for k, v in run.data.tags.items()
                  if k != PARENT_TAG and have_tags.get(k) != v}
    for key in run.data.metrics:
        history = found.histories.get((run.info.run_id, key), [])
        have = Counter(_point(m) for m in found.histories.get((mine.info.run_id, key), [])
                       ) if mine else Counter()
        for metric in history:
            if have[_point(metric)] > 0:
                have[_point(metric)] -= 1
            else:
                plan_.points.append(metric)
    have_sets = ({_dataset_key(d) for d in mine.inputs.dataset_inputs}
                 if mine and mine.inputs else set())
    plan_.datasets = [d for d in (run.inputs.dataset_inputs if run.inputs else [])
                      if _dataset_key(d) not in have_sets]
    plan_.model_inputs = [m.model_id for m in _model_inputs(run)]
    plan_.model_outputs = [(m.model_id, m.step) for m in _model_outputs(run)]
    if mine is not None:  # only the links not there yet (mapped once models are known)
        plan_.model_inputs = [m for m in plan_.model_inputs if m not in _model_origin(
            found, [x.model_id for x in _model_inputs(mine)])]
        plan_.model_outputs = [(m, s) for m, s in plan_.model_outputs if m not in _model_origin(
            found, [x.model_id for x in _model_outputs(mine)])]
    have_files = dict(_files(target, mine)) if mine else {}
    plan_.files = _files(source, run)
    plan_.artifacts = [(path, size) for path, size in plan_.files
                       if have_files.get(path) != size]
    plan_.finish = run.info.status != "RUNNING" and (
        mine is None or mine.info.status != run.info.status
        or mine.info.end_time != run.info.end_time)
    parent = run.data.tags.get(PARENT_TAG)
    if parent and (mine is None or PARENT_TAG not in mine.data.tags):
        plan_.tags[PARENT_TAG] = parent  # the source id: mapped when applied
    return plan_


def _model_origin(found: Plan, target_ids: Iterable[str]) -> set[str]:
    """The source ids of target logged models (as far as the plan knows them yet)."""
    back = {t: s for s, t in found.model_ids.items()}
    return {back.get(t, t) for t in target_ids}


def _plan_models(source: MlflowClient, target: MlflowClient, experiment: Any,
                 there: Any, found: Plan) -> None:
    targets: dict[str, Any] = {}
    if there is not None:
        for model in _logged_models(target, there.experiment_id):
            origin = model.tags.get(PUSH_SOURCE_TAG)
            if origin:
                targets[origin] = model
    for model in _logged_models(source, experiment.experiment_id):
        mine = targets.get(model.model_id)
        if mine is not None:
            found.model_ids[model.model_id] = mine.model_id
        files = _model_files(source, model)
        have = dict(_model_files(target, mine)) if mine is not None else {}
        missing = [(path, size) for path, size in files if have.get(path) != size]
        finalize = _ended(model.status) and (mine is None or not _ended(mine.status))
        if mine is None or missing or finalize:
            found.models.append(ModelPlan(model, experiment.name,
                                          mine.model_id if mine else None, missing, finalize))
    # Runs planned before the models were known: drop links that are already there.
    for run in found.runs:
        mine_run = run.target
        if mine_run is None:
            continue
        linked_in = _model_origin(found, [m.model_id for m in _model_inputs(mine_run)])
        linked_out = _model_origin(found, [m.model_id for m in _model_outputs(mine_run)])
        run.model_inputs = [m for m in run.model_inputs if m not in linked_in]
        run.model_outputs = [(m, s) for m, s in run.model_outputs if m not in linked_out]


def _plan_traces(source: MlflowClient, target: MlflowClient, experiment: Any,
                 there: Any, found: Plan) -> None:
    have: set[str] = set()
    if there is not None:
        for trace in _traces(target, there.experiment_id, spans=False):
            origin = trace.info.tags.get(PUSH_SOURCE_TAG)
            if origin:
                have.add(origin)
    for trace in _traces(source, experiment.experiment_id, spans=True):
        if trace.info.trace_id not in have:
            found.traces.append((experiment.name, trace))


def _plan_registered(source: MlflowClient, target: MlflowClient, found: Plan) -> None:
    pushed_runs = {run.source_id for run in found.runs}
    for model in _pages(lambda token: source.search_registered_models(
            max_results=PAGE, page_token=token)):
        versions = sorted(_versions(source, model.name), key=lambda v: int(v.version))
        # Only the models whose versions come from the runs pushed (all, without
        # --experiment); a version without a run goes with its model.
        if not any(v.run_id in pushed_runs or not v.run_id for v in versions):
            continue
        there = _registered(target, model.name)
        mapped = _version_map(target, model.name) if there is not None else {}
        plan_ = RegisteredPlan(model, there is not None)
        plan_.versions = [v for v in versions if str(v.version) not in mapped]
        tags = there.tags if there is not None else {}
        plan_.tags = {k: v for k, v in (model.tags or {}).items() if tags.get(k) != v}
        plan_.description = bool(model.description) and (
            there is None or there.description != model.description)
        aliases = _aliases(there) if there is not None else {}
        plan_.aliases = {alias: version for alias, version in _aliases(model).items()
                         if version not in mapped or aliases.get(alias) != mapped[version]}
        if not plan_.empty:
            found.registered.append(plan_)


# --- copying it ----------------------------------------------------------------------------


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
                f"{self.points_done:,}/{self.points:,} · {_mb(self.bytes_done)}/"
                f"{_mb(self.bytes)} · {self.rates()} · "
                + (f"{left:.0f} s left" if left is not None else "time left: measuring"))

    def rates(self) -> str:
        """Runs, metric points and artifact bytes per second so far."""
        elapsed = max(self.elapsed, 1e-6)
        return (f"{self.runs_done / elapsed:.1f} runs/s, "
                f"{self.points_done / elapsed:,.0f} points/s, "
                f"{self.bytes_done / elapsed / 1e6:.1f} MB/s")


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
    experiment_ids = {e.name: _apply_experiment(target, e) for e in found.experiments}
    report(tally)
    # Every new run first: a nested run's link and a logged model need their run's new id.
    new = [run for run in pending if run.target_id is None]
    for run, made in zip(new, _parallel(lambda run: target.create_run(
            experiment_ids[run.experiment], start_time=run.source.info.start_time,
            run_name=run.source.info.run_name,
            tags={PUSH_SOURCE_TAG: run.source_id}), new), strict=True):
        run.target_id = made.info.run_id
        found.run_ids[run.source_id] = run.target_id
    tally.phase = "logged models"
    for model in found.models:
        _apply_model(source, target, model, experiment_ids[model.experiment], found)
        tally.bytes_done += sum(size for _, size in model.artifacts)
        report(tally)
    tally.phase = "runs"
    with ThreadPoolExecutor(WORKERS) as pool:
        copies = {pool.submit(_apply_run, source, target, run, found): run for run in pending}
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


def _apply_experiment(target: MlflowClient, experiment: ExperimentPlan) -> str:
    if experiment.target_id is None:
        experiment.target_id = target.create_experiment(experiment.name,
                                                        tags=experiment.tags or None)
    else:
        for key, value in experiment.tags.items():
            target.set_experiment_tag(experiment.target_id, key, value)
    return experiment.target_id


def _apply_run(source: MlflowClient, target: MlflowClient, run: RunPlan, found: Plan) -> None:
    """Everything a run lacks on the target (in a worker thread: it reports nothing)."""
    from mlflow.entities import Metric, Param, RunTag

    assert run.target_id is not None
    tags = dict(run.tags)
    if PARENT_TAG in tags:
        tags[PARENT_TAG] = found.run_ids.get(tags[PARENT_TAG], tags[PARENT_TAG])
    params = [Param(k, v) for k, v in run.params.items()]
    run_tags = [RunTag(k, v) for k, v in tags.items()]
    points = [Metric(m.key, m.value, m.timestamp, m.step,
                     model_id=_mapped(found.model_ids, getattr(m, "model_id", None)),
                     dataset_name=getattr(m, "dataset_name", None),
                     dataset_digest=getattr(m, "dataset_digest", None))
              for m in run.points]
    # As few calls as MLflow's limits allow (each costs a password hash on a server with a
    # login): 100 params, 100 tags and 1,000 entries in all per call.
    while params or run_tags or points:
        some_params, params = params[:PARAM_BATCH], params[PARAM_BATCH:]
        some_tags, run_tags = run_tags[:PARAM_BATCH], run_tags[PARAM_BATCH:]
        room = BATCH - len(some_params) - len(some_tags)
        some_points, points = points[:room], points[room:]
        target.log_batch(run.target_id, metrics=some_points, params=some_params,
                         tags=some_tags, synchronous=True)
    _apply_links(target, run, found)
    for path, _size in run.artifacts:
        _copy_file(functools.partial(source.download_artifacts, run.source_id, path),
                   functools.partial(target.log_artifact, run.target_id,
                                     artifact_path=posixpath.dirname(path) or None))
    if run.finish:
        target.set_terminated(run.target_id, run.source.info.status, run.source.info.end_time)


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
        _copy_file(functools.partial(_download_model_file, source, src, path),
                   functools.partial(_upload_model_file, target, target_id,
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
        model_id = _mapped(found.model_ids, getattr(version, "model_id", None)) or (
            source.removeprefix("models:/").split("/")[0]
            if source.startswith("models:/m-") else None)
        target.create_model_version(
            model.name, source, run_id=run_id,
            tags={**(version.tags or {}), PUSH_SOURCE_TAG: str(version.version)},
            description=version.description or None, model_id=model_id,
            await_creation_for=0)
    mapped = _version_map(target, model.name)
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
    if meta.get(TRACE_RUN_KEY) in found.run_ids:
        meta[TRACE_RUN_KEY] = found.run_ids[meta[TRACE_RUN_KEY]]
    if meta.get(TRACE_MODEL_KEY) in found.model_ids:
        meta[TRACE_MODEL_KEY] = found.model_ids[meta[TRACE_MODEL_KEY]]
    with environment(TRACKING_ENV):  # MLflow's copy leaves it pointing at the target
        internals.copy_trace(data, experiment_id, target.tracking_uri)


# --- checking it ---------------------------------------------------------------------------


@dataclass
class Verified:
    """What the comparison of source and target covered, and every difference found."""

    runs: int = 0
    params: int = 0
    tags: int = 0
    points: int = 0
    artifacts: int = 0
    models: int = 0
    versions: int = 0
    traces: int = 0
    differences: list[str] = field(default_factory=list)


def verify(source: MlflowClient, target: MlflowClient,
           experiments: Sequence[str] | None = None, already: Plan | None = None) -> Verified:
    """Compare source and target: a fresh plan must be empty, and nothing may differ that a
    plan does not copy (extra metric points, params of another value, file contents).
    ``already``: a plan read just now, with nothing copied since."""
    again = already if already is not None else plan(source, target, experiments)
    checked = Verified(runs=again.source_runs, points=again.source_points)
    if not again.empty:
        checked.differences.append(f"the target still lacks {again.summary()}")
    compared = [run for run in again.runs if run.target is not None]
    for found_here in _parallel(lambda run: _compare_run(source, target, run, again),
                                compared):
        checked.params += found_here.params
        checked.tags += found_here.tags
        checked.artifacts += found_here.artifacts
        checked.differences.extend(found_here.differences)
    checked.models = len(again.model_ids)
    for model in _pages(lambda token: source.search_registered_models(
            max_results=PAGE, page_token=token)):
        there = _registered(target, model.name)
        if there is None:
            continue
        mapped = _version_map(target, model.name)
        checked.versions += len(mapped)
        for alias, version in _aliases(model).items():
            if _aliases(there).get(alias) != mapped.get(version):
                checked.differences.append(
                    f"registered model {model.name!r}: alias {alias!r} points elsewhere")
    for experiment in again.experiments:
        if experiment.target_id is not None:
            checked.traces += sum(1 for t in _traces(target, experiment.target_id, spans=False)
                                  if PUSH_SOURCE_TAG in t.info.tags)
    return checked


def _compare_run(source: MlflowClient, target: MlflowClient, run: RunPlan, found: Plan
                 ) -> Verified:
    """What differs between a run and its copy (in a worker thread: its own tally)."""
    checked = Verified()
    src, dst = run.source, run.target
    assert dst is not None
    name = f"run {src.info.run_name or src.info.run_id} ({src.info.run_id})"
    differing = [k for k, v in src.data.params.items() if dst.data.params.get(k) != v]
    if differing:
        checked.differences.append(f"{name}: params differ: {', '.join(differing)}")
    checked.params += len(src.data.params)
    checked.tags += len(src.data.tags)
    parent = src.data.tags.get(PARENT_TAG)
    if parent and dst.data.tags.get(PARENT_TAG) != found.run_ids.get(parent):
        checked.differences.append(f"{name}: not nested under its parent")
    for key in set(src.data.metrics) | set(dst.data.metrics):
        ours = Counter(_point(m) for m in found.histories.get((src.info.run_id, key), []))
        theirs = Counter(_point(m) for m in found.histories.get((dst.info.run_id, key), []))
        if ours != theirs:
            extra = sum((theirs - ours).values())
            checked.differences.append(
                f"{name}: metric {key!r} has {sum(ours.values())} points here and "
                f"{sum(theirs.values())} there" + (f" ({extra} extra)" if extra else ""))
    if (src.info.status, src.info.start_time) != (dst.info.status, dst.info.start_time) or (
            src.info.status != "RUNNING" and src.info.end_time != dst.info.end_time):
        checked.differences.append(f"{name}: status or times differ")
    for path, _size in run.files:
        if _artifact_sha256(source, src, path) != _artifact_sha256(target, dst, path):
            checked.differences.append(f"{name}: artifact {path} differs (sha256)")
        checked.artifacts += 1
    return checked


def _artifact_sha256(client: MlflowClient, run: Run, path: str) -> str:
    """Streamed from the server where it proxies the artifacts (one request), else through a
    temporary download."""
    streamed = internals.artifact_sha256(client.tracking_uri, run.info.artifact_uri, path)
    if streamed is not None:
        return streamed
    with tempfile.TemporaryDirectory(prefix="mlflow-magic-verify-") as tmp:
        return _sha256(client.download_artifacts(run.info.run_id, path, tmp))


# --- reading both sides --------------------------------------------------------------------


def _histories(client: MlflowClient, runs: list[Run]) -> dict[tuple[str, str], list[Metric]]:
    """Every metric history of ``runs``: one request per key for each 100 runs (on a
    server with a login each request costs a password hash, ~0.4 s here)."""
    by_key: dict[str, list[str]] = {}
    for run in runs:
        for key in run.data.metrics:
            by_key.setdefault(key, []).append(run.info.run_id)
    found: dict[tuple[str, str], list[Metric]] = {}
    for key, run_ids in by_key.items():
        for batch in _chunks(run_ids, internals.HISTORY_BULK_RUNS):
            _fetch_histories(client, key, batch, found)
    return found


def _fetch_histories(client: MlflowClient, key: str, run_ids: list[str],
                     found: dict[tuple[str, str], list[Metric]]) -> None:
    from mlflow.entities import Metric

    bulk = internals.metric_histories(client.tracking_uri, run_ids, key)
    if bulk == {} and len(run_ids) > 1:  # more points than one answer holds: halves
        half = len(run_ids) // 2
        _fetch_histories(client, key, run_ids[:half], found)
        _fetch_histories(client, key, run_ids[half:], found)
        return
    if not bulk:  # no such route (or one run over its cap): one request per run
        for run_id in run_ids:
            found[(run_id, key)] = client.get_metric_history(run_id, key)
        return
    for run_id, metrics in bulk.items():
        found[(run_id, key)] = [
            Metric(m["key"], m["value"], m["timestamp"], m["step"],
                   model_id=m.get("model_id"), dataset_name=m.get("dataset_name"),
                   dataset_digest=m.get("dataset_digest"))
            for m in metrics]


def _parallel(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``fn`` over ``items`` in :data:`WORKERS` threads, results in order: each call waits
    on the network (on a server with a login, on a password hash there), not on us."""
    if len(items) < 2:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(fn, items))


def _pages(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Every active run, oldest first (so parents come before the runs nested in them)."""
    runs = list(_pages(lambda token: client.search_runs(
        [experiment_id], max_results=PAGE, page_token=token,
        order_by=["attributes.start_time ASC"])))
    return _parents_first(runs)


def _parents_first(runs: list[Run]) -> list[Run]:
    ids = {run.info.run_id for run in runs}
    placed: set[str] = set()
    ordered: list[Run] = []
    waiting = list(runs)
    while waiting:
        rest = []
        for run in waiting:
            parent = run.data.tags.get(PARENT_TAG)
            if parent in ids and parent not in placed:
                rest.append(run)
            else:
                ordered.append(run)
                placed.add(run.info.run_id)
        if len(rest) == len(waiting):  # a cycle cannot happen; keep the rest as they are
            ordered.extend(rest)
            break
        waiting = rest
    return ordered


def _files(client: MlflowClient, run: Run) -> list[tuple[str, int]]:
    """Every artifact file of a run, with its size, recursively: one request per folder,
    from the run's artifact URI. (``MlflowClient.list_artifacts`` reads the run again for
    each folder and, below its root, searches the experiment's logged models too: three
    requests, each a password hash on a server with a login.)"""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(run.info.artifact_uri, tracking_uri=client.tracking_uri)

    def walk(path: str | None) -> Iterator[tuple[str, int]]:
        for item in repository.list_artifacts(path):
            if item.is_dir:
                yield from walk(item.path)
            else:
                yield item.path, int(item.file_size or 0)

    return list(walk(None))


def _logged_models(client: MlflowClient, experiment_id: str) -> list[Any]:
    if not hasattr(client, "search_logged_models"):
        return []
    return list(_pages(lambda token: client.search_logged_models(
        [experiment_id], max_results=100, page_token=token)))


def _model_files(client: MlflowClient, model: Any, path: str | None = None
                 ) -> list[tuple[str, int]]:
    """Every file of a logged model, with its size, recursively (paths from its root)."""
    found: list[tuple[str, int]] = []
    for item in client.list_logged_model_artifacts(model.model_id, path):
        if item.is_dir:
            found.extend(_model_files(client, model, item.path))
        else:
            found.append((item.path, int(item.file_size or 0)))
    return found


def _upload_model_file(target: MlflowClient, model_id: str, artifact_path: str | None,
                       local: str) -> None:
    """Upload the one file in ``local``'s folder (a fresh temporary one) to the model."""
    target.log_model_artifacts(model_id, os.path.dirname(local), artifact_path)


def _download_model_file(client: MlflowClient, model: Any, path: str, dst: str) -> str:
    from mlflow.artifacts import download_artifacts

    return download_artifacts(artifact_uri=f"{model.artifact_location.rstrip('/')}/{path}",
                              dst_path=dst, tracking_uri=client.tracking_uri)


def _traces(client: MlflowClient, experiment_id: str, spans: bool) -> list[Any]:
    return list(_pages(lambda token: client.search_traces(
        locations=[experiment_id], max_results=100, page_token=token,
        include_spans=spans)))


def _versions(client: MlflowClient, name: str) -> list[Any]:
    escaped = name.replace("'", "\\'")
    return list(_pages(lambda token: client.search_model_versions(
        f"name='{escaped}'", max_results=PAGE, page_token=token)))


def _registered(client: MlflowClient, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _version_map(target: MlflowClient, name: str) -> dict[str, str]:
    """Source version number -> target version number, by the tag each copy carries."""
    return {str(v.tags[PUSH_SOURCE_TAG]): str(v.version) for v in _versions(target, name)
            if PUSH_SOURCE_TAG in (v.tags or {})}


def _aliases(model: Any) -> dict[str, str]:
    aliases = model.aliases or {}
    if isinstance(aliases, dict):
        return {k: str(v) for k, v in aliases.items()}
    return {a.alias: str(a.version) for a in aliases}


def _model_inputs(run: Run) -> list[Any]:
    return list(getattr(run.inputs, "model_inputs", None) or []) if run.inputs else []


def _model_outputs(run: Run) -> list[Any]:
    outputs = getattr(run, "outputs", None)
    return list(getattr(outputs, "model_outputs", None) or []) if outputs else []


def _dataset_key(dataset_input: Any) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    data = dataset_input.dataset
    return data.name, data.digest, tuple(sorted((t.key, t.value) for t in dataset_input.tags))


def _point(metric: Metric) -> tuple[int, int, str]:
    """A metric point as compared: NaN equals NaN here, unlike in floats."""
    return int(metric.step), int(metric.timestamp), repr(float(metric.value))


# --- small helpers -------------------------------------------------------------------------


def _ended(status: Any) -> bool:
    """A logged model's status (an enum, or its name) says its upload ended."""
    return str(getattr(status, "name", status)).rsplit(".", 1)[-1] in ("READY", "FAILED")


def _mapped(ids: dict[str, str], source_id: str | None) -> str | None:
    return ids.get(source_id) if source_id else None


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _copy_file(download: Callable[[str], str], upload: Callable[[str], None]) -> None:
    """One artifact through a temporary folder: never more than one file on local disk."""
    with tempfile.TemporaryDirectory(prefix="mlflow-magic-push-") as tmp:
        upload(download(tmp))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _n(count: int, what: str) -> str:
    return f"{count:,} {what}" + ("" if count == 1 else "s")


def _mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"
