"""One run at a time, incrementally: what its copy on the team server lacks, and the copy.

The team server's copy of a run is read once per sync process (params, tags, every metric
point, files), then kept in memory and updated with what this process sends. So a run that
logs a point a second costs one ``log_batch`` per cycle, not a read of both histories. Any
failure drops that memory: the next cycle reads the copy back, so a batch that may have
landed before the error is never sent twice. A process killed anywhere starts with no
memory at all, and reads back likewise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..contract import PUSH_SOURCE_TAG
from ..remote.transfer import checking, copying, reading
from ..remote.transfer.planning import ExperimentPlan, Plan, RunPlan
from ..state.syncstate import SyncState

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

NAME_TAG = "mlflow.runName"
DELETED_THERE = "its copy was deleted on the team server"


@dataclass
class Copy:
    """What the team server's copy of one run holds, as far as this process knows."""

    target_id: str
    artifact_uri: str  # the copy's, where its files are listed
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    points: dict[str, Counter] = field(default_factory=dict)
    files: dict[str, int] | None = None  # None: not read yet
    datasets: set[tuple] = field(default_factory=set)
    model_inputs: set[str] = field(default_factory=set)  # source logged model ids
    model_outputs: set[str] = field(default_factory=set)
    status: str = "RUNNING"
    end_time: int | None = None


class LeftAlone(Exception):
    """The team server's copy was deleted there: the sync does not bring it back."""


class Runs:
    """The runs of one folder and their copies on one team server."""

    def __init__(self, source: MlflowClient, target: MlflowClient, state: SyncState) -> None:
        self.source, self.target, self.state = source, target, state
        self.copies: dict[str, Copy] = {}
        self.experiments: dict[str, Any] = {}  # this folder's, by id
        self.experiment_ids: dict[str, str] = {}  # name -> id there

    def maps(self) -> Plan:
        """A plan that holds only what the push's copy needs to map ids."""
        return Plan(run_ids=dict(self.state.runs), model_ids=dict(self.state.models))

    # --- which run is which ---------------------------------------------------------------

    def experiment(self, experiment_id: str) -> Any:
        """This folder's experiment (read once per process)."""
        if experiment_id not in self.experiments:
            self.experiments[experiment_id] = self.source.get_experiment(experiment_id)
        return self.experiments[experiment_id]

    def experiment_name(self, experiment_id: str) -> str:
        return self.experiment(experiment_id).name

    def target_experiment(self, experiment_id: str) -> str:
        """The experiment of the same name there, made if missing (with this one's tags)."""
        here = self.experiment(experiment_id)
        if here.name not in self.experiment_ids:
            there = self.target.get_experiment_by_name(here.name)
            if there is not None and there.lifecycle_stage == "deleted":
                raise LeftAlone(f"its experiment {here.name!r} was deleted on the team server")
            self.experiment_ids[here.name] = there.experiment_id if there is not None else \
                copying.apply_experiment(self.target, ExperimentPlan(
                    here.name, here.experiment_id, None, dict(here.tags)))
        return self.experiment_ids[here.name]

    def ensure(self, run: Run) -> str:
        """The run's copy there: known, found by its source tag (a sync killed right after
        making it), or made now."""
        run_id = run.info.run_id
        if run_id in self.state.left_alone:
            raise LeftAlone(self.state.left_alone[run_id])
        known = self.state.runs.get(run_id)
        if known is not None:
            return known
        experiment = self.target_experiment(run.info.experiment_id)
        found = self.target.search_runs(
            [experiment], f"tags.`{PUSH_SOURCE_TAG}` = '{run_id}'", max_results=1,
            run_view_type=3)  # ALL: a copy deleted there is found, and left alone
        if found:
            self.state.runs[run_id] = found[0].info.run_id
            return found[0].info.run_id
        made = self.target.create_run(experiment, start_time=run.info.start_time,
                                      run_name=run.info.run_name,
                                      tags={PUSH_SOURCE_TAG: run_id})
        self.state.runs[run_id] = made.info.run_id
        self.state.names[run_id] = run.info.run_name or ""
        self.copies[run_id] = Copy(made.info.run_id, made.info.artifact_uri,
                                   tags=dict(made.data.tags), files={})
        return made.info.run_id

    def read_copy(self, run: Run, target_id: str) -> Copy:
        """The copy as the team server has it now (after a restart, or a failure)."""
        from mlflow.exceptions import MlflowException

        try:
            there = self.target.get_run(target_id)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise LeftAlone(DELETED_THERE) from None
            raise
        if there.info.lifecycle_stage == "deleted":
            raise LeftAlone(DELETED_THERE)
        histories = reading.histories(self.target, [there])
        back = {t: s for s, t in self.state.models.items()}
        return Copy(
            target_id, there.info.artifact_uri, dict(there.data.params), dict(there.data.tags),
            {key: Counter(reading.point(m) for m in histories.get((target_id, key), []))
             for key in there.data.metrics},
            None,
            {reading.dataset_key(d) for d in (there.inputs.dataset_inputs
                                              if there.inputs else [])},
            {back.get(m.model_id, m.model_id) for m in reading.model_inputs(there)},
            {back.get(m.model_id, m.model_id) for m in reading.model_outputs(there)},
            there.info.status, there.info.end_time)

    # --- the copy -------------------------------------------------------------------------

    def sync(self, run: Run, artifacts: bool) -> int:
        """Copy what the run's copy lacks; the metric points sent."""
        from mlflow.exceptions import MlflowException

        run_id = run.info.run_id
        if run.info.lifecycle_stage == "deleted":
            return 0  # deleting here is not copied there (the sync never deletes)
        target_id = self.ensure(run)
        copy = self.copies.get(run_id)
        try:
            if copy is None:
                copy = self.read_copy(run, target_id)
            histories = reading.histories(self.source, [run])
            plan = self.plan(run, copy, histories, artifacts)
            self.rename(run, plan, copy)
            if not plan.empty:
                copying.apply_run(self.source, self.target, plan, self.maps())
            self.remember(copy, plan)
            self.copies[run_id] = copy
        except LeftAlone:
            self.copies.pop(run_id, None)
            raise
        except BaseException as exc:
            self.copies.pop(run_id, None)  # the next cycle reads the copy back
            if isinstance(exc, MlflowException) and "must be in the 'active' state" in str(exc):
                raise LeftAlone(DELETED_THERE) from None
            raise
        if plan.finish and run_id not in self.state.verified:
            self.verify(run, target_id, histories, plan.files)
        return len(plan.points)

    def plan(self, run: Run, copy: Copy, histories: dict, artifacts: bool) -> RunPlan:
        """What the copy lacks: the push's :class:`RunPlan`, from memory, not from a read."""
        plan = RunPlan(run, self.experiment_name(run.info.experiment_id), copy.target_id,
                       target_artifact_uri=copy.artifact_uri)
        plan.params = {k: v for k, v in run.data.params.items() if k not in copy.params}
        plan.tags = {k: v for k, v in run.data.tags.items()
                     if k not in (reading.PARENT_TAG, NAME_TAG) and copy.tags.get(k) != v}
        parent = run.data.tags.get(reading.PARENT_TAG)
        if parent and reading.PARENT_TAG not in copy.tags:
            plan.tags[reading.PARENT_TAG] = parent  # mapped by the copy
        for key in run.data.metrics:
            have = Counter(copy.points.get(key, Counter()))
            for metric in histories.get((run.info.run_id, key), []):
                if have[reading.point(metric)] > 0:
                    have[reading.point(metric)] -= 1
                else:
                    plan.points.append(metric)
        plan.datasets = [d for d in (run.inputs.dataset_inputs if run.inputs else [])
                         if reading.dataset_key(d) not in copy.datasets]
        mapped = self.state.models
        plan.model_inputs = [m.model_id for m in reading.model_inputs(run)
                             if m.model_id not in copy.model_inputs and m.model_id in mapped]
        plan.model_outputs = [(m.model_id, m.step) for m in reading.model_outputs(run)
                              if m.model_id not in copy.model_outputs
                              and m.model_id in mapped]
        if artifacts or copy.files is None or run.info.status != "RUNNING":
            if copy.files is None:
                copy.files = dict(reading.files_at(self.target, copy.artifact_uri))
            plan.files = reading.files_of(self.source, run)
            plan.artifacts = [(p, s) for p, s in plan.files if copy.files.get(p) != s]
        plan.finish = run.info.status != "RUNNING" and (
            copy.status != run.info.status or copy.end_time != run.info.end_time)
        return plan

    def rename(self, run: Run, plan: RunPlan, copy: Copy) -> None:
        """A new name here goes there, unless the run was renamed there: then it keeps the
        team's name, and the sync says so."""
        run_id, name = run.info.run_id, run.info.run_name or ""
        last = self.state.names.get(run_id)
        there = copy.tags.get(NAME_TAG)
        if last is None:
            self.state.names[run_id] = there or name
            last = self.state.names[run_id]
        if name == last:
            return
        if there not in (None, last):
            self.state.differences.append(
                f"run {name} ({run_id}) was renamed {there!r} on the team server: that "
                "name is kept there")
            self.state.names[run_id] = name  # said once
            return
        plan.tags[NAME_TAG] = name
        self.state.names[run_id] = name

    def remember(self, copy: Copy, plan: RunPlan) -> None:
        """The copy now holds what was just sent."""
        copy.params.update(plan.params)
        copy.tags.update(plan.tags)
        for metric in plan.points:
            copy.points.setdefault(metric.key, Counter())[reading.point(metric)] += 1
        copy.datasets.update(reading.dataset_key(d) for d in plan.datasets)
        copy.model_inputs.update(plan.model_inputs)
        copy.model_outputs.update(m for m, _ in plan.model_outputs)
        if copy.files is not None:
            copy.files.update(plan.artifacts)
        if plan.finish:
            copy.status, copy.end_time = plan.source.info.status, plan.source.info.end_time

    def verify(self, run: Run, target_id: str, histories: dict,
               files: list[tuple[str, int]]) -> None:
        """A finished run is compared with its copy once, as a push compares (points,
        params, tags, times, every file's sha256); a difference is said, not hidden."""
        there = self.target.get_run(target_id)
        found = self.maps()
        found.histories.update(histories)
        found.histories.update(reading.histories(self.target, [there]))
        plan = RunPlan(run, self.experiment_name(run.info.experiment_id), target_id, there)
        plan.files = files or reading.files_of(self.source, run)
        self.state.differences.extend(checking.compare_run(
            self.source, self.target, plan, found).differences)
        self.state.verified.append(run.info.run_id)


def ordered(runs: list[Any]) -> list[Any]:
    """Parents before the runs nested in them, oldest first."""
    return reading.parents_first(sorted(runs, key=lambda r: r.info.start_time or 0))
