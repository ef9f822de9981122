"""One sync cycle: the journal's new lines, copied to the team server, then the cursor moved.

The first cycle to a team server (or after the server ran without a journal) reads the whole
folder, as a push does, and copies what is missing; every later cycle reads only what the
journal names. A cycle with nothing new reads one file size and sends nothing anywhere. A
cycle that fails keeps its cursor: the next one does the same work again, and every copy
compares first, so nothing is doubled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..remote.transfer import checking, copying, planning, reading
from ..remote.transfer.planning import ExperimentPlan
from ..settings.masking import mask_text
from ..state import journal, pushstate, records
from ..state.syncstate import SyncState
from .runs import LeftAlone, Runs, ordered

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: What a team server answers for a run it will never take as it is (not a passing failure).
REFUSED = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST"})


@dataclass(frozen=True)
class Done:
    """What one cycle copied."""

    runs: int = 0
    points: int = 0
    other: bool = False
    full: bool = False

    @property
    def anything(self) -> bool:
        return bool(self.runs or self.points or self.other or self.full)


class Cycle:
    """The sync of one folder to one team server, a cycle at a time."""

    def __init__(self, data_dir: Path, source: MlflowClient, target: MlflowClient,
                 state: SyncState, save: Callable[[], None]) -> None:
        self.data_dir, self.source, self.target = data_dir, source, target
        self.state, self.save = state, save
        self.journal = records.journal_path(data_dir)
        self.runs = Runs(source, target, state)

    def pending(self) -> bool:
        """Something to copy (one ``stat``): the journal grew, or nothing was read yet."""
        return self.state.cursor is None or journal.size(self.journal) != self.state.cursor

    def run_once(self) -> Done:
        if self.state.cursor is None:
            return self.full()
        if journal.size(self.journal) < self.state.cursor:  # emptied by someone else
            self.state.cursor = None
            return self.full()
        entries, end = journal.read(self.journal, self.state.cursor)
        changes = journal.Changes.of(entries)
        done = self.copy(changes) if not changes.empty else Done()
        self.state.cursor = end
        if journal.truncate_if_read(self.journal, end):
            self.state.cursor = 0
        self.save()
        return done

    def full(self) -> Done:
        """Everything the team server lacks, as a push finds, copies and verifies it (what
        earlier pushes to that server found equal is not read there again). The journal from
        here on names what changes meanwhile: it is read next, and finds it copied."""
        start = journal.size(self.journal)
        url = self.target.tracking_uri
        earlier = pushstate.known(self.data_dir, url)
        with copying.quiet():
            found = planning.plan(self.source, self.target, known=earlier)
            if not found.empty:
                copying.apply(self.source, self.target, found)
            checked = checking.verify(self.source, self.target, known=earlier,
                                      already=found if found.empty else None)
        self.state.runs.update(found.run_ids)
        self.state.models.update(found.model_ids)
        finished = {r.source_id for r in found.runs if r.source.info.status != "RUNNING"}
        for run in found.runs:
            self.state.names.setdefault(run.source_id, run.source.info.run_name or "")
            if run.source_id in finished and run.source_id in checked.equal \
                    and run.source_id not in self.state.verified:
                self.state.verified.append(run.source_id)
        self.state.differences.extend(checked.differences)
        if not checked.differences:
            pushstate.remember(self.data_dir, url, {**earlier, **checked.equal})
        self.state.cursor = start
        self.save()
        return Done(runs=len(found.pending_runs), points=found.points, full=True)

    def copy(self, changes: journal.Changes) -> Done:
        """Runs first (made there, so models and versions can name them), then logged
        models, then each run's content, then the registry and traces."""
        with copying.quiet():
            runs = self._runs_named(changes)
            for run in runs:
                self._guarded(run.info.run_id, functools.partial(self.runs.ensure, run))
            kinds = changes.kinds
            other = bool(kinds)
            if kinds & {journal.MODEL, journal.EXPERIMENT, journal.OTHER}:
                self._others(changes, models=True, late=False)
            points = 0
            for run in runs:
                points += self._guarded(run.info.run_id, functools.partial(
                    self.runs.sync, run, run.info.run_id in changes.artifact_runs)) or 0
            if kinds & {journal.REGISTRY, journal.TRACE, journal.OTHER}:
                self._others(changes, models=False, late=True)
        return Done(len(runs), points, other)

    def _runs_named(self, changes: journal.Changes) -> list[Any]:
        """The runs the lines name (and the new runs of experiments whose lines could not
        name them), parents first."""
        wanted = set(changes.runs)
        for experiment in changes.new_in:
            for run in reading.runs_of(self.source, experiment):
                if run.info.run_id not in self.state.runs:
                    wanted.add(run.info.run_id)
        found = []
        for run_id in wanted:
            if run_id in self.state.left_alone:
                continue
            found.append(self.source.get_run(run_id))
        return ordered(found)

    def _guarded(self, run_id: str, work: Callable[[], Any]) -> Any:
        """A run whose copy was deleted there, or that the team server refuses (a value it
        does not take), is left alone and named, once: it must not hold up the others."""
        from mlflow.exceptions import MlflowException

        try:
            return work()
        except LeftAlone as why:
            self.state.left_alone[run_id] = str(why)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") not in REFUSED:
                raise
            self.state.left_alone[run_id] = "the team server refuses it: " + mask_text(
                str(exc).strip().splitlines()[0] if str(exc).strip() else exc.error_code)
        return None

    def _others(self, changes: journal.Changes, models: bool, late: bool) -> None:
        """Logged models (early), registered models and traces (late), with the push's own
        plan for them, of the experiments the lines name (all when they name none)."""
        found = self.runs.maps()
        named = changes.experiments
        for experiment in reading.pages(lambda token: self.source.search_experiments(
                max_results=reading.PAGE, page_token=token)):
            there = self.target.get_experiment_by_name(experiment.name)
            if there is not None and there.lifecycle_stage == "deleted":
                continue
            tags = {k: v for k, v in experiment.tags.items()
                    if there is None or there.tags.get(k) != v} if models else {}
            plan = ExperimentPlan(experiment.name, experiment.experiment_id,
                                  there.experiment_id if there else None, tags)
            found.experiments.append(plan)
            if named and experiment.experiment_id not in named \
                    and journal.OTHER not in changes.kinds:
                continue
            if models:
                planning.plan_models(self.source, self.target, experiment, there, found)
            elif journal.TRACE in changes.kinds or journal.OTHER in changes.kinds:
                planning.plan_traces(self.source, self.target, experiment, there, found)
        if late and changes.kinds & {journal.REGISTRY, journal.OTHER}:
            planning.plan_registered(self.source, self.target, found)
        if not found.empty:
            copying.apply(self.source, self.target, found)
        self.state.models.update(found.model_ids)
