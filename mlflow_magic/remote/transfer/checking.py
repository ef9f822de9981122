"""Compare source and target after a copy (:func:`verify`): a fresh plan finds nothing, and
nothing differs that a plan does not copy (extra points, params, artifact checksums)."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ... import internals
from ...contract import PUSH_SOURCE_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
from . import reading
from .planning import Plan, RunPlan, plan


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
    #: runs found equal: source run -> (its copy, its digest), for the next push
    equal: dict[str, tuple[str, str]] = field(default_factory=dict)


def verify(source: MlflowClient, target: MlflowClient,
           experiments: Sequence[str] | None = None, already: Plan | None = None,
           known: dict[str, tuple[str, str]] | None = None) -> Verified:
    """Compare source and target: a fresh plan must be empty, and nothing may differ that a
    plan does not copy (extra metric points, params of another value, file contents).
    ``already``: a plan read just now, with nothing copied since. ``known``: runs an earlier
    push found equal (unchanged since: not compared again, see :func:`plan`)."""
    again = already if already is not None else plan(source, target, experiments, known)
    checked = Verified(runs=again.source_runs, points=again.source_points)
    checked.equal = {run.source_id: (run.target_id, run.digest) for run in again.runs
                     if run.target_id is not None and run.empty}
    if not again.empty:
        checked.differences.append(f"the target still lacks {again.summary()}")
    compared = [run for run in again.runs if run.target is not None and not run.unchanged]
    for found_here in reading.parallel(lambda run: compare_run(source, target, run, again),
                                compared):
        checked.params += found_here.params
        checked.tags += found_here.tags
        checked.artifacts += found_here.artifacts
        checked.differences.extend(found_here.differences)
    checked.models = len(again.model_ids)
    for model in reading.pages(lambda token: source.search_registered_models(
            max_results=reading.PAGE, page_token=token)):
        there = reading.registered_model(target, model.name)
        if there is None:
            continue
        mapped = reading.version_map(target, model.name)
        checked.versions += len(mapped)
        for alias, version in reading.aliases(model).items():
            if reading.aliases(there).get(alias) != mapped.get(version):
                checked.differences.append(
                    f"registered model {model.name!r}: alias {alias!r} points elsewhere")
    for experiment in again.experiments:
        if experiment.target_id is not None:
            copied = reading.traces_of(target, experiment.target_id, spans=False)
            checked.traces += sum(1 for t in copied if PUSH_SOURCE_TAG in t.info.tags)
    return checked


def compare_run(source: MlflowClient, target: MlflowClient, run: RunPlan, found: Plan
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
    parent = src.data.tags.get(reading.PARENT_TAG)
    if parent and dst.data.tags.get(reading.PARENT_TAG) != found.run_ids.get(parent):
        checked.differences.append(f"{name}: not nested under its parent")
    for key in set(src.data.metrics) | set(dst.data.metrics):
        ours = Counter(reading.point(m) for m in found.histories.get((src.info.run_id, key), []))
        theirs = Counter(reading.point(m) for m in found.histories.get((dst.info.run_id, key), []))
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
        return reading.sha256(client.download_artifacts(run.info.run_id, path, tmp))

