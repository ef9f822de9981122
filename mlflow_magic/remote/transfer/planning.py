"""What the target lacks (:func:`plan`): experiments, runs and, per run, params, tags, metric
points, dataset and model links, artifact files; logged and registered models; traces."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...contract import PUSH_SOURCE_TAG
from ...errors import PushError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Run
from . import reading


@dataclass
class RunPlan:
    """One source run and what its target run lacks (everything, for a new one)."""

    source: Run
    experiment: str  # the source experiment's name
    target_id: str | None = None  # None: the run is new
    target: Run | None = None  # the copy as the plan found it
    target_artifact_uri: str = ""  # where the copy's artifacts go ("": ask MLflow's client)
    files: list[tuple[str, int]] = field(default_factory=list)  # every artifact of the source
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    points: list[Metric] = field(default_factory=list)
    datasets: list[Any] = field(default_factory=list)  # DatasetInput
    model_inputs: list[str] = field(default_factory=list)  # source logged model ids
    model_outputs: list[tuple[str, int]] = field(default_factory=list)
    artifacts: list[tuple[str, int]] = field(default_factory=list)  # (path, size)
    finish: bool = False  # its status and end time are still to be set
    #: nothing of it changed since a push found it equal there: not read there, not compared
    unchanged: bool = False
    digest: str = ""

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
    #: source run -> (its copy, its digest) that earlier pushes found equal on the target
    known: dict[str, tuple[str, str]] = field(default_factory=dict)

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
            parts.append(f"{reading.count_text(len(self.pending_runs), 'run')} ({new} new"
                         + (f", {resumed} to finish" if resumed else "") + ")")
        if self.points:
            parts.append(f"{self.points:,} metric points")
        if artifacts:
            parts.append(f"{reading.count_text(artifacts, 'artifact')} ({reading.mb(self.bytes)})")
        if self.models:
            parts.append(reading.count_text(len(self.models), "logged model"))
        if self.registered:
            parts.append(f"{reading.count_text(self.versions, 'model version')} of "
                         f"{reading.count_text(len(self.registered), 'registered model')}")
        if self.traces:
            parts.append(reading.count_text(len(self.traces), "trace"))
        settled = [e for e in self.experiments if e.target_id is None or e.tags]
        if settled and not parts:  # an empty experiment, or only its tags
            parts.append(reading.count_text(len(settled), "experiment"))
        return ", ".join(parts) or "nothing"


def plan(source: MlflowClient, target: MlflowClient,
         experiments: Sequence[str] | None = None,
         known: dict[str, tuple[str, str]] | None = None) -> Plan:
    """What ``target`` lacks of ``source`` (all experiments, or those named). ``known``: the
    runs earlier pushes found equal there, with their digests (see :func:`reading.digest`):
    those whose digest is the same are not read on the target at all."""
    found = Plan(known=dict(known or {}))
    for experiment in _source_experiments(source, experiments):
        _plan_experiment(source, target, experiment, found)
    plan_registered(source, target, found)
    return found


def _source_experiments(source: MlflowClient, names: Sequence[str] | None) -> list[Any]:
    every = list(reading.pages(lambda token: source.search_experiments(
        max_results=reading.PAGE, page_token=token)))
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
        for run in reading.runs_of(target, there.experiment_id):
            origin = run.data.tags.get(PUSH_SOURCE_TAG)
            if origin:
                targets[origin] = run
            else:
                plan_.others += 1
    runs = reading.runs_of(source, experiment.experiment_id)
    points, files, read = _source_summaries(source, experiment.experiment_id, runs, found)
    digests = {r.info.run_id: reading.digest(r, points[r.info.run_id], files[r.info.run_id])
               for r in runs}
    unchanged = {rid for rid, digest in digests.items() if rid in targets
                 and found.known.get(rid) == (targets[rid].info.run_id, digest)}
    changed = [run for run in runs if run.info.run_id not in unchanged]
    if not read:
        found.histories.update(reading.histories(source, changed))
    found.histories.update(reading.histories(target, [targets[r.info.run_id] for r in changed
                                                      if r.info.run_id in targets]))
    for run in runs:
        found.source_runs += 1
        found.source_points += sum(points[run.info.run_id].values())
        if run.info.run_id in targets:
            found.run_ids[run.info.run_id] = targets[run.info.run_id].info.run_id
    found.runs.extend(reading.parallel(lambda run: _plan_run(
        source, target, run, experiment.name, targets.get(run.info.run_id), found,
        files[run.info.run_id], digests[run.info.run_id], run.info.run_id in unchanged),
        runs))
    plan_models(source, target, experiment, there, found)
    plan_traces(source, target, experiment, there, found)


def _source_summaries(source: MlflowClient, experiment_id: str, runs: list[Run], found: Plan
                      ) -> tuple[dict[str, dict[str, int]], dict[str, list[tuple[str, int]]],
                                 bool]:
    """Per source run, its point count per key and its artifact files: from the folder's
    server in one request where it answers (:func:`reading.run_summaries`), else from every
    history (kept in ``found``: then True) and a listing per run.

    Read before any history the plan compares, so a digest never describes a later state
    than what was compared: a point logged in between changes the next digest, and is
    copied then."""
    told = reading.run_summaries(source, experiment_id)
    if told is None:
        found.histories.update(reading.histories(source, runs))
    points = {r.info.run_id: told[r.info.run_id][0] if told and r.info.run_id in told
              else reading.counts(r, found.histories) for r in runs}
    files = {rid: listed for rid, (_, listed) in (told or {}).items() if listed is not None}
    unlisted = [r for r in runs if r.info.run_id not in files]
    files.update(zip((r.info.run_id for r in unlisted), reading.parallel(
        lambda run: reading.files_of(source, run), unlisted), strict=True))
    return points, files, told is None


def _plan_run(source: MlflowClient, target: MlflowClient, run: Run, experiment: str,
              mine: Run | None, found: Plan, files: list[tuple[str, int]], digest: str,
              unchanged: bool) -> RunPlan:
    plan_ = RunPlan(run, experiment, mine.info.run_id if mine else None, mine,
                    mine.info.artifact_uri if mine else "", files=files, unchanged=unchanged,
                    digest=digest)
    if unchanged:  # equal there at an earlier push, and not changed here since
        return plan_
    have_params = mine.data.params if mine else {}
    plan_.params = {k: v for k, v in run.data.params.items() if k not in have_params}
    have_tags = mine.data.tags if mine else {}
    plan_.tags = {k: v for k, v in run.data.tags.items()
                  if k != reading.PARENT_TAG and have_tags.get(k) != v}
    for key in run.data.metrics:
        history = found.histories.get((run.info.run_id, key), [])
        have = Counter(reading.point(m) for m in found.histories.get((mine.info.run_id, key), [])
                       ) if mine else Counter()
        for metric in history:
            if have[reading.point(metric)] > 0:
                have[reading.point(metric)] -= 1
            else:
                plan_.points.append(metric)
    have_sets = ({reading.dataset_key(d) for d in mine.inputs.dataset_inputs}
                 if mine and mine.inputs else set())
    plan_.datasets = [d for d in (run.inputs.dataset_inputs if run.inputs else [])
                      if reading.dataset_key(d) not in have_sets]
    plan_.model_inputs = [m.model_id for m in reading.model_inputs(run)]
    plan_.model_outputs = [(m.model_id, m.step) for m in reading.model_outputs(run)]
    if mine is not None:  # only the links not there yet (mapped once models are known)
        _drop_linked_models(plan_, mine, found)
    have_files = dict(reading.files_of(target, mine)) if mine else {}
    plan_.artifacts = [(path, size) for path, size in plan_.files
                       if have_files.get(path) != size]
    plan_.finish = run.info.status != "RUNNING" and (
        mine is None or mine.info.status != run.info.status
        or mine.info.end_time != run.info.end_time)
    parent = run.data.tags.get(reading.PARENT_TAG)
    if parent and (mine is None or reading.PARENT_TAG not in mine.data.tags):
        plan_.tags[reading.PARENT_TAG] = parent  # the source id: mapped when applied
    return plan_


def _drop_linked_models(run: RunPlan, copy: Run, found: Plan) -> None:
    """Keep only the logged-model links (inputs, outputs) that the run's copy lacks."""
    linked_in = _model_origin(found, [m.model_id for m in reading.model_inputs(copy)])
    linked_out = _model_origin(found, [m.model_id for m in reading.model_outputs(copy)])
    run.model_inputs = [m for m in run.model_inputs if m not in linked_in]
    run.model_outputs = [(m, s) for m, s in run.model_outputs if m not in linked_out]


def _model_origin(found: Plan, target_ids: Iterable[str]) -> set[str]:
    """The source ids of target logged models (as far as the plan knows them yet)."""
    back = {t: s for s, t in found.model_ids.items()}
    return {back.get(t, t) for t in target_ids}


def plan_models(source: MlflowClient, target: MlflowClient, experiment: Any,
                 there: Any, found: Plan) -> None:
    targets: dict[str, Any] = {}
    if there is not None:
        for model in reading.logged_models(target, there.experiment_id):
            origin = model.tags.get(PUSH_SOURCE_TAG)
            if origin:
                targets[origin] = model
    for model in reading.logged_models(source, experiment.experiment_id):
        mine = targets.get(model.model_id)
        if mine is not None:
            found.model_ids[model.model_id] = mine.model_id
        files = reading.model_files(source, model)
        have = dict(reading.model_files(target, mine)) if mine is not None else {}
        missing = [(path, size) for path, size in files if have.get(path) != size]
        finalize = reading.ended(model.status) and (mine is None or not reading.ended(mine.status))
        if mine is None or missing or finalize:
            found.models.append(ModelPlan(model, experiment.name,
                                          mine.model_id if mine else None, missing, finalize))
    # Runs planned before the models were known: drop links that are already there.
    for run in found.runs:
        mine_run = run.target
        if mine_run is None:
            continue
        _drop_linked_models(run, mine_run, found)


def plan_traces(source: MlflowClient, target: MlflowClient, experiment: Any,
                 there: Any, found: Plan) -> None:
    have: set[str] = set()
    if there is not None:
        for trace in reading.traces_of(target, there.experiment_id, spans=False):
            origin = trace.info.tags.get(PUSH_SOURCE_TAG)
            if origin:
                have.add(origin)
    for trace in reading.traces_of(source, experiment.experiment_id, spans=True):
        if trace.info.trace_id not in have:
            found.traces.append((experiment.name, trace))


def plan_registered(source: MlflowClient, target: MlflowClient, found: Plan) -> None:
    # The runs planned, and those already mapped (a sync plans the registry alone).
    pushed_runs = {run.source_id for run in found.runs} | set(found.run_ids)
    for model in reading.pages(lambda token: source.search_registered_models(
            max_results=reading.PAGE, page_token=token)):
        versions = sorted(reading.versions_of(source, model.name), key=lambda v: int(v.version))
        # Only the models whose versions come from the runs pushed (all, without
        # --experiment); a version without a run goes with its model.
        if not any(v.run_id in pushed_runs or not v.run_id for v in versions):
            continue
        there = reading.registered_model(target, model.name)
        mapped = reading.version_map(target, model.name) if there is not None else {}
        plan_ = RegisteredPlan(model, there is not None)
        plan_.versions = [v for v in versions if str(v.version) not in mapped]
        tags = there.tags if there is not None else {}
        plan_.tags = {k: v for k, v in (model.tags or {}).items() if tags.get(k) != v}
        plan_.description = bool(model.description) and (
            there is None or there.description != model.description)
        aliases = reading.aliases(there) if there is not None else {}
        plan_.aliases = {alias: version for alias, version in reading.aliases(model).items()
                         if version not in mapped or aliases.get(alias) != mapped[version]}
        if not plan_.empty:
            found.registered.append(plan_)

