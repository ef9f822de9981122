"""Reading a tracking server for a push: pages, runs, histories, files, models, traces, and
the small helpers the plan, the copy and the check share."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ... import internals
from ...contract import PUSH_SOURCE_TAG, RUN_SUMMARIES_PATH

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


def histories(client: MlflowClient, runs: list[Run]) -> dict[tuple[str, str], list[Metric]]:
    """Every metric history of ``runs``: one request per key for each 100 runs (on a
    server with a login each request costs a password hash, ~0.4 s here)."""
    by_key: dict[str, list[str]] = {}
    for run in runs:
        for key in run.data.metrics:
            by_key.setdefault(key, []).append(run.info.run_id)
    found: dict[tuple[str, str], list[Metric]] = {}
    for key, run_ids in by_key.items():
        for batch in chunks(run_ids, internals.HISTORY_BULK_RUNS):
            fetch_histories(client, key, batch, found)
    return found


def fetch_histories(client: MlflowClient, key: str, run_ids: list[str],
                     found: dict[tuple[str, str], list[Metric]]) -> None:
    """The histories of ``key`` for ``run_ids`` into ``found``: as many runs per request as
    the answer's cap allows (see :func:`internals.metric_histories`)."""
    from mlflow.entities import Metric

    while run_ids:
        answer = internals.metric_histories(client.tracking_uri, run_ids, key)
        if answer is None:  # no such route: one request per run
            for run_id in run_ids:
                found[(run_id, key)] = client.get_metric_history(run_id, key)
            return
        whole, rest = answer
        for run_id, metrics in whole.items():
            found[(run_id, key)] = [
                Metric(m["key"], m["value"], m["timestamp"], m["step"],
                       model_id=m.get("model_id"), dataset_name=m.get("dataset_name"),
                       dataset_digest=m.get("dataset_digest"))
                for m in metrics]
        if rest and not whole:  # nothing answered whole: fewer runs, or one run by itself
            if len(rest) == 1:
                found[(rest[0], key)] = client.get_metric_history(rest[0], key)
                return
            half = len(rest) // 2
            fetch_histories(client, key, rest[:half], found)
            fetch_histories(client, key, rest[half:], found)
            return
        run_ids = rest


def run_summaries(client: MlflowClient, experiment_id: str
                  ) -> dict[str, tuple[dict[str, int], list[tuple[str, int]] | None]] | None:
    """Per run of the experiment: its metric point count per key, and its artifact files
    with sizes (None where the server does not see them on disk), in one request to the
    folder's own server (:mod:`mlflow_magic.server.summaries`). None from a server that does
    not serve it (another server, an older mlflow_magic, MLflow's auth app)."""
    answer = internals.get_json(client.tracking_uri, RUN_SUMMARIES_PATH,
                                {"experiment_id": experiment_id})
    if answer is None or not isinstance(answer.get("runs"), dict):
        return None
    return {run_id: ({str(k): int(v) for k, v in (told.get("points") or {}).items()},
                     None if told.get("files") is None
                     else [(str(path), int(size)) for path, size in told["files"]])
            for run_id, told in answer["runs"].items()}


def counts(run: Run, histories: dict[tuple[str, str], list[Metric]]) -> dict[str, int]:
    """A run's metric point count per key, from its histories."""
    return {key: len(histories.get((run.info.run_id, key), [])) for key in run.data.metrics}


def parallel(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``fn`` over ``items`` in :data:`WORKERS` threads, results in order: each call waits
    on the network (on a server with a login, on a password hash there), not on us."""
    if len(items) < 2:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(fn, items))


def pages(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def runs_of(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Every active run, oldest first (so parents come before the runs nested in them)."""
    runs = list(pages(lambda token: client.search_runs(
        [experiment_id], max_results=PAGE, page_token=token,
        order_by=["attributes.start_time ASC"])))
    return parents_first(runs)


def parents_first(runs: list[Run]) -> list[Run]:
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


def files_of(client: MlflowClient, run: Run) -> list[tuple[str, int]]:
    """Every artifact file of a run, with its size, recursively: one request per folder,
    from the run's artifact URI. (``MlflowClient.list_artifacts`` reads the run again for
    each folder and, below its root, searches the experiment's logged models too: three
    requests, each a password hash on a server with a login.)"""
    return files_at(client, run.info.artifact_uri)


def files_at(client: MlflowClient, artifact_uri: str) -> list[tuple[str, int]]:
    """Every file under ``artifact_uri`` (a run's), with its size (see :func:`files_of`)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(artifact_uri, tracking_uri=client.tracking_uri)

    def walk(path: str | None) -> Iterator[tuple[str, int]]:
        for item in repository.list_artifacts(path):
            if item.is_dir:
                yield from walk(item.path)
            else:
                yield item.path, int(item.file_size or 0)

    return list(walk(None))


def logged_models(client: MlflowClient, experiment_id: str) -> list[Any]:
    if not hasattr(client, "search_logged_models"):
        return []
    return list(pages(lambda token: client.search_logged_models(
        [experiment_id], max_results=100, page_token=token)))


def model_files(client: MlflowClient, model: Any, path: str | None = None
                 ) -> list[tuple[str, int]]:
    """Every file of a logged model, with its size, recursively (paths from its root)."""
    found: list[tuple[str, int]] = []
    for item in client.list_logged_model_artifacts(model.model_id, path):
        if item.is_dir:
            found.extend(model_files(client, model, item.path))
        else:
            found.append((item.path, int(item.file_size or 0)))
    return found


def upload_model_file(target: MlflowClient, model_id: str, artifact_path: str | None,
                       local: str) -> None:
    """Upload the one file in ``local``'s folder (a fresh temporary one) to the model."""
    target.log_model_artifacts(model_id, os.path.dirname(local), artifact_path)


def download_model_file(client: MlflowClient, model: Any, path: str, dst: str) -> str:
    from mlflow.artifacts import download_artifacts

    return download_artifacts(artifact_uri=f"{model.artifact_location.rstrip('/')}/{path}",
                              dst_path=dst, tracking_uri=client.tracking_uri)


def traces_of(client: MlflowClient, experiment_id: str, spans: bool) -> list[Any]:
    return list(pages(lambda token: client.search_traces(
        locations=[experiment_id], max_results=100, page_token=token,
        include_spans=spans)))


def versions_of(client: MlflowClient, name: str) -> list[Any]:
    escaped = name.replace("'", "\\'")
    return list(pages(lambda token: client.search_model_versions(
        f"name='{escaped}'", max_results=PAGE, page_token=token)))


def registered_model(client: MlflowClient, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def version_map(target: MlflowClient, name: str) -> dict[str, str]:
    """Source version number -> target version number, by the tag each copy carries."""
    return {str(v.tags[PUSH_SOURCE_TAG]): str(v.version) for v in versions_of(target, name)
            if PUSH_SOURCE_TAG in (v.tags or {})}


def aliases(model: Any) -> dict[str, str]:
    aliases = model.aliases or {}
    if isinstance(aliases, dict):
        return {k: str(v) for k, v in aliases.items()}
    return {a.alias: str(a.version) for a in aliases}


def model_inputs(run: Run) -> list[Any]:
    return list(getattr(run.inputs, "model_inputs", None) or []) if run.inputs else []


def model_outputs(run: Run) -> list[Any]:
    outputs = getattr(run, "outputs", None)
    return list(getattr(outputs, "model_outputs", None) or []) if outputs else []


def dataset_key(dataset_input: Any) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    data = dataset_input.dataset
    return data.name, data.digest, tuple(sorted((t.key, t.value) for t in dataset_input.tags))


def point(metric: Metric) -> tuple[int, int, str]:
    """A metric point as compared: NaN equals NaN here, unlike in floats."""
    return int(metric.step), int(metric.timestamp), repr(float(metric.value))


def ended(status: Any) -> bool:
    """A logged model's status (an enum, or its name) says its upload ended."""
    return str(getattr(status, "name", status)).rsplit(".", 1)[-1] in ("READY", "FAILED")


def mapped(ids: dict[str, str], source_id: str | None) -> str | None:
    return ids.get(source_id) if source_id else None


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def copy_file(download: Callable[[str], str], upload: Callable[[str], None]) -> None:
    """One artifact through a temporary folder: never more than one file on local disk."""
    with tempfile.TemporaryDirectory(prefix="mlflow-magic-push-") as tmp:
        upload(download(tmp))


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Changes with what a digest covers, so digests of an older formula never match.
DIGEST_FORMAT = 2


def digest(run: Run, points: dict[str, int], files: list[tuple[str, int]]) -> str:
    """Everything a push copies of a run, as one hash: its params, tags, status and times,
    its metric point count per key (MLflow keeps every point it accepts and changes none,
    so the same count is the same history), dataset and model links, artifact files and
    sizes. Equal digests: nothing of the run changed since it was found equal on the
    target."""
    data = [DIGEST_FORMAT, sorted(run.data.params.items()), sorted(run.data.tags.items()),
            [run.info.status, run.info.start_time, run.info.end_time, run.info.run_name],
            [[key, points.get(key, 0)] for key in sorted(run.data.metrics)],
            sorted(repr(dataset_key(d)) for d in (run.inputs.dataset_inputs
                                                   if run.inputs else [])),
            sorted(m.model_id for m in model_inputs(run)),
            sorted(f"{m.model_id}@{m.step}" for m in model_outputs(run)),
            sorted(files)]
    return hashlib.sha256(repr(data).encode()).hexdigest()


def count_text(count: int, what: str) -> str:
    return f"{count:,} {what}" + ("" if count == 1 else "s")


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"

