"""Other projects' private details that mlflow_magic relies on, in one place.

Each function here reads something a library does not promise to keep. Each
one degrades safely when the detail moves (returns None, or does nothing), and
a test on real MLflow fails loudly when it does (see CONTRIBUTING.md for the
list of what is used, why, and which versions were checked).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from urllib.parse import urlparse

#: MLflow's module that sends every REST request (tracking, registry, artifacts, traces).
_REST_MODULE = "mlflow.utils.rest_utils"
#: How far up from a request-header provider MLflow's ``http_request`` frame sits
#: (provider -> resolve_request_headers -> http_request), with room to spare.
_FRAMES_UP = 8


def mlflow_request_url() -> str | None:
    """The URL of the REST request MLflow is preparing, seen from a request-header provider.

    MLflow asks its header providers for headers without saying where the request
    goes (``resolve_request_headers()`` takes no URL). Its ``http_request`` has
    computed ``url`` before it asks (MLflow 3.13 to 3.17, checked), so the frame
    that called the providers knows. None if that frame cannot be found: then no
    credential is added anywhere, which fails closed.
    """
    frame = sys._getframe(1)
    for _ in range(_FRAMES_UP):
        frame = frame.f_back  # type: ignore[assignment]
        if frame is None:
            return None
        if frame.f_code.co_name == "http_request" \
                and frame.f_globals.get("__name__") == _REST_MODULE:
            url = frame.f_locals.get("url")
            return url if isinstance(url, str) else None
    return None


# --- MLflow's server launch (server/serve.py) ----------------------------------------------


def active_experiment_id() -> str | None:
    """The experiment MLflow's fluent API uses in this process (``set_experiment``), if
    MLflow is imported: ``mlflow.tracking.fluent._active_experiment_id`` (3.13 to 3.18)."""
    found = getattr(sys.modules.get("mlflow.tracking.fluent"), "_active_experiment_id", None)
    return str(found) if found else None


def forget_active_experiment() -> None:
    """MLflow's fluent API resolves its experiment again on its next call (from
    ``MLFLOW_EXPERIMENT_NAME``, else the default experiment)."""
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None and hasattr(fluent, "_active_experiment_id"):
        fluent._active_experiment_id = None  # type: ignore[attr-defined]


def mlflow_exec_cmd():
    """MLflow's ``mlflow.server._exec_cmd``, which ``_run_server`` launches its web server
    with (MLflow 3.13 to 3.17); None if it moved."""
    import mlflow.server

    return getattr(mlflow.server, "_exec_cmd", None)


def replace_mlflow_exec_cmd(exec_cmd) -> None:
    """Put ``exec_cmd`` where ``_run_server`` looks for MLflow's."""
    import mlflow.server

    mlflow.server._exec_cmd = exec_cmd


# --- MLflow's database schema (server/schema.py, server/newdb.py) --------------------------


def create_tables(url: str) -> bool:
    """Create every MLflow table at ``url`` with MLflow's own code (its migrations); True if
    they all exist afterwards. ImportError if MLflow's helpers moved."""
    from mlflow.store.db.utils import (
        _all_tables_exist,
        _initialize_tables,
        create_sqlalchemy_engine_with_retry,
    )

    engine = create_sqlalchemy_engine_with_retry(url)
    try:
        _initialize_tables(engine)
        return bool(_all_tables_exist(engine))
    finally:
        engine.dispose()


def schema_revisions() -> tuple[str | None, set[str]]:
    """The installed MLflow's newest schema revision, and every revision it knows."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(db_url=""))
    return script.get_current_head(), {rev.revision for rev in script.walk_revisions()}


def upgrade_schema(url: str) -> None:
    """What ``mlflow db upgrade`` does to the database at ``url``."""
    from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine_with_retry

    engine = create_sqlalchemy_engine_with_retry(url)
    try:
        _upgrade_db(engine)
    finally:
        engine.dispose()


# --- MLflow's notebook trace display (notebook/traces.py) ----------------------------------
# Looked up in sys.modules, never imported: nothing of it costs a thing until the user's code
# imports MLflow, and a piece that is missing means "do nothing".

_HANDLER_MODULE = "mlflow.tracing.display.display_handler"


def trace_display_handler_class():
    """MLflow's ``IPythonTraceDisplayHandler``, if MLflow's display module is loaded."""
    return getattr(sys.modules.get(_HANDLER_MODULE), "IPythonTraceDisplayHandler", None)


def trace_display_available() -> bool:
    """MLflow says its trace UI can show here (``is_trace_ui_available``)."""
    available = getattr(sys.modules.get(_HANDLER_MODULE), "is_trace_ui_available", None)
    return bool(available and available())


def trace_display_handler_made() -> bool:
    """MLflow has made its display handler (its ``_instance``): it will show traces."""
    handler = trace_display_handler_class()
    return handler is not None and getattr(handler, "_instance", None) is not None


def last_trace_id() -> str | None:
    """The id of the last trace this process ended (``_LAST_ACTIVE_TRACE_ID_GLOBAL``)."""
    fluent = sys.modules.get("mlflow.tracing.fluent")
    return getattr(fluent, "_LAST_ACTIVE_TRACE_ID_GLOBAL", None) if fluent else None


# --- MLflow's printed run links (hook.py) ---------------------------------------------------

#: ``TrackingServiceClient._log_url`` writes "🏃 View run ... at: <URL>" to ``sys.stdout``
#: as a run ends, built from the tracking URI (MLflow 3.13 to 3.17, checked).
_CLIENT_MODULE = "mlflow.tracking._tracking_service.client"
_LOG_URL_LOCK = threading.Lock()


def rewrite_printed_links(rewrite) -> bool:
    """MLflow's printed run and experiment links pass through ``rewrite`` (text → text);
    False if MLflow's printer is not where it was (then they print as MLflow made them)."""
    client = getattr(sys.modules.get(_CLIENT_MODULE), "TrackingServiceClient", None)
    original = getattr(client, "_log_url", None)
    if client is None or original is None or getattr(original, "_mlflow_magic", False):
        return False

    def _log_url(self, run_id):
        # One at a time: ``redirect_stdout`` swaps the process's ``sys.stdout``, and two
        # threads ending runs at once (a push copies four runs at a time) would restore each
        # other's buffer, leaving the process's output in a StringIO for good.
        with _LOG_URL_LOCK:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                original(self, run_id)
        sys.stdout.write(rewrite(printed.getvalue()))

    _log_url._mlflow_magic = True  # type: ignore[attr-defined]
    _log_url.__wrapped__ = original  # type: ignore[attr-defined]
    client._log_url = _log_url
    return True


# --- the server's artifact folder (server/failures.py) ---------------------------------------

#: The variable ``mlflow server`` hands each worker its ``--artifacts-destination`` in
#: (``mlflow.server.ARTIFACTS_DESTINATION_ENV_VAR``, checked on 3.13 to 3.x).
_ARTIFACTS_DESTINATION_ENV = "_MLFLOW_SERVER_ARTIFACT_DESTINATION"


def served_artifacts_folder() -> str | None:
    """The local folder this ``mlflow server`` keeps proxied artifacts in, or None (not a
    local folder, or the variable moved)."""
    where = os.environ.get(_ARTIFACTS_DESTINATION_ENV)
    if not where:
        return None
    parsed = urlparse(where)
    if parsed.scheme == "file":
        return parsed.path
    return where if not parsed.scheme else None


# --- reading many runs at once (transfer.py) ------------------------------------------------

#: The UI's route for the metric histories of up to 100 runs in one request, and its cap.
_HISTORY_BULK = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
HISTORY_BULK_RUNS = 100
_HISTORY_BULK_MAX = 25_000


def metric_histories(tracking_uri: str, run_ids: list[str], key: str
                     ) -> tuple[dict[str, list[dict]], list[str]] | None:
    """The whole history of ``key`` for up to 100 runs in one request (the route MLflow's UI
    charts use: one request instead of one per run, which counts where each request costs a
    password hash): the runs answered whole, and those still to ask for. None when the route
    is not there.

    An answer holds at most 25,000 points. MLflow fills it run by run in id order, so a cut
    answer still holds every run before the one it cut in: those are kept, and only the
    rest is asked again (asking for half as many runs would throw the whole answer away, and
    read up to 2.5 times the points). An answer in another order keeps nothing: all runs
    come back as still to ask for."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    resp = http_request(get_default_host_creds(tracking_uri), _HISTORY_BULK, "GET",
                        params={"run_id": run_ids, "metric_key": key,
                                "max_results": _HISTORY_BULK_MAX},
                        raise_on_status=False)
    if resp.status_code != 200:
        return None
    metrics = resp.json().get("metrics", [])
    asked = sorted(run_ids)
    cut = len(metrics) >= _HISTORY_BULK_MAX
    answered = list(dict.fromkeys(metric["run_id"] for metric in metrics))
    if cut and (answered != sorted(answered) or not set(answered) <= set(asked)):
        return {}, run_ids
    last = answered[-1] if cut else None
    whole = [run_id for run_id in asked if last is None or run_id < last]
    found: dict[str, list[dict]] = {run_id: [] for run_id in whole}
    for metric in metrics:
        if metric["run_id"] in found:
            found[metric["run_id"]].append(metric)
    return found, [run_id for run_id in asked if run_id not in found]


def get_json(tracking_uri: str, endpoint: str, params: dict) -> dict | None:
    """A GET to the tracking server with MLflow's own credentials and headers (the folder's
    key among them); its JSON, or None for any answer but 200."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    resp = http_request(get_default_host_creds(tracking_uri), endpoint, "GET", params=params,
                        raise_on_status=False)
    if resp.status_code != 200:
        return None
    try:
        found = resp.json()
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


#: A run's metric point counts per key, counted in the tracking store's own tables
#: (``metrics``, ``runs``: MLflow's schema since 1.x).
_POINT_COUNTS = ("SELECT m.run_uuid, m.key, COUNT(*) FROM metrics m JOIN runs r "
                 "ON r.run_uuid = m.run_uuid WHERE r.experiment_id = :experiment "
                 "GROUP BY m.run_uuid, m.key")
_RUN_ARTIFACTS = ("SELECT run_uuid, artifact_uri FROM runs WHERE experiment_id = :experiment "
                  "AND lifecycle_stage = 'active'")


def _store_rows(query: str, experiment_id: str) -> list[tuple] | None:
    """Rows of ``query`` in this server's tracking store; None for a store that is not SQL
    (or whose tables moved)."""
    if not experiment_id.isdigit():
        return None
    try:
        from mlflow.server.handlers import _get_tracking_store
        from sqlalchemy import text

        engine = getattr(_get_tracking_store(), "engine", None)
        if engine is None:
            return None
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                text(query), {"experiment": int(experiment_id)})]
    except Exception:  # any surprise in MLflow's store: the caller reads the API
        return None


def point_counts(experiment_id: str) -> dict[str, dict[str, int]] | None:
    """In the server: per run of the experiment, its number of metric points per key (one
    query; MLflow keeps every point it accepts and changes none, so a count that is the same
    means a history that is the same). None where the store is not SQL."""
    rows = _store_rows(_POINT_COUNTS, experiment_id)
    if rows is None:
        return None
    counts: dict[str, dict[str, int]] = {}
    for run_id, key, count in rows:
        counts.setdefault(str(run_id), {})[str(key)] = int(count)
    return counts


def run_artifact_files(experiment_id: str) -> dict[str, list[tuple[str, int]] | None] | None:
    """In the server: per active run of the experiment, every artifact file with its size,
    read from disk where its artifacts are in a local folder (None for a run whose artifacts
    are elsewhere: S3 and the like are listed through the API). None where the store is not
    SQL."""
    rows = _store_rows(_RUN_ARTIFACTS, experiment_id)
    if rows is None:
        return None
    return {str(run_id): _local_files(str(uri or "")) for run_id, uri in rows}


def _local_files(artifact_uri: str) -> list[tuple[str, int]] | None:
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "mlflow-artifacts":
        served = served_artifacts_folder()
        if served is None:
            return None
        root = os.path.join(served, parsed.path.lstrip("/"))
    elif parsed.scheme in ("", "file"):
        root = parsed.path
    else:
        return None
    files = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                files.append((os.path.relpath(path, root).replace(os.sep, "/"),
                              os.path.getsize(path)))
    return sorted(files)


_ARTIFACTS_ROUTE = "/api/2.0/mlflow-artifacts/artifacts/"


def _proxied_endpoint(artifact_uri: str, path: str) -> str | None:
    """The server route of a run's artifact where the server proxies it (``mlflow-artifacts:``
    URIs, MLflow's ``MlflowArtifactsRepository``); None for other stores."""
    from urllib.parse import quote

    if not artifact_uri.startswith("mlflow-artifacts:"):
        return None
    where = urlparse(artifact_uri).path.lstrip("/")
    return _ARTIFACTS_ROUTE + quote(f"{where}/{path}")


def artifact_sha256(tracking_uri: str, artifact_uri: str, path: str) -> str | None:
    """The sha256 of a run's artifact read as a stream from the server that proxies it: one
    request, no file on disk; None for other stores."""
    import hashlib

    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    endpoint = _proxied_endpoint(artifact_uri, path)
    if endpoint is None:
        return None
    digest = hashlib.sha256()
    with http_request(get_default_host_creds(tracking_uri), endpoint, "GET",
                      stream=True) as resp:
        for block in resp.iter_content(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _Body:
    """A download read as the body of an upload, block by block (``http.client`` reads its
    body with ``read(blocksize)``; ``requests`` sends ``Content-Length`` from ``len``)."""

    def __init__(self, blocks, length: int) -> None:
        self._blocks, self._length = blocks, length
        self._block, self._at, self.sent = b"", 0, 0

    def __len__(self) -> int:
        return self._length

    def __iter__(self):  # requests streams a body only if it is iterable
        return iter(lambda: self.read(1 << 16), b"")

    def read(self, size: int = -1) -> bytes:
        if self._at >= len(self._block):
            self._block, self._at = next(self._blocks, b""), 0
        end = len(self._block) if size is None or size < 0 else self._at + size
        out = self._block[self._at:end]
        self._at += len(out)
        self.sent += len(out)
        return out


def stream_artifact(source_uri: str, source_artifacts: str, target_uri: str,
                    target_artifacts: str, path: str) -> bool:
    """Copy one run artifact between two servers that proxy artifacts, as a stream: the
    download is the upload's body, nothing goes to disk, and one request each side (MLflow's
    client reads the run again and lists the path before each download). False, having sent
    nothing, where either side is another store, or the download's length is not known (a
    compressed answer): the caller copies through a file."""
    import mimetypes

    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import augmented_raise_for_status, http_request

    get = _proxied_endpoint(source_artifacts, path)
    put = _proxied_endpoint(target_artifacts, path)
    if get is None or put is None:
        return False
    with http_request(get_default_host_creds(source_uri), get, "GET", stream=True) as resp:
        augmented_raise_for_status(resp)
        length = resp.headers.get("Content-Length", "")
        if resp.headers.get("Content-Encoding") or not length.isdigit():
            return False
        body = _Body(resp.iter_content(1 << 20), int(length))
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        # No retry: a retried upload would send the rest of a body already read. An empty
        # file is an empty body (requests sends a body of length 0 as chunked).
        sent = http_request(get_default_host_creds(target_uri), put, "PUT",
                            data=body if len(body) else b"", max_retries=0,
                            extra_headers={"Content-Type": kind})
        augmented_raise_for_status(sent)
    if body.sent != int(length):
        raise OSError(f"artifact {path}: {body.sent} of {length} bytes read")
    return True


# --- copying traces (transfer.py) --------------------------------------------------------------


def copy_trace(trace_dict: dict, experiment_id: str, tracking_uri: str) -> str:
    """Copy a trace, spans and all, into ``experiment_id`` of the server at ``tracking_uri``
    (``mlflow.tracing.utils.copy.copy_trace_to_experiment``, which exports to the process's
    tracking URI: set to ``tracking_uri`` for the moment); its new id. MLflow puts its own
    tracking URI back afterwards but leaves ``MLFLOW_TRACKING_URI`` in the environment
    set to ``tracking_uri``: the caller restores it."""
    import mlflow
    from mlflow.tracing.utils.copy import copy_trace_to_experiment
    from mlflow.tracking._tracking_service import utils

    with utils._use_tracking_uri(tracking_uri):  # also resets MLflow's trace exporter
        new_id = copy_trace_to_experiment(trace_dict, experiment_id=experiment_id)
        mlflow.flush_trace_async_logging()
    return new_id
