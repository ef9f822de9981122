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
                     ) -> dict[str, list[dict]] | None:
    """The whole history of ``key`` for up to 100 runs in one request (the route MLflow's UI
    charts use: one request instead of one per run, which counts where each request costs a
    password hash); None when the route is not there, ``{}`` when the answer was cut at its
    cap (ask for fewer runs)."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    resp = http_request(get_default_host_creds(tracking_uri), _HISTORY_BULK, "GET",
                        params={"run_id": run_ids, "metric_key": key,
                                "max_results": _HISTORY_BULK_MAX},
                        raise_on_status=False)
    if resp.status_code != 200:
        return None
    metrics = resp.json().get("metrics", [])
    if len(metrics) >= _HISTORY_BULK_MAX:
        return {}  # cut: ask for fewer runs at a time
    found: dict[str, list[dict]] = {run_id: [] for run_id in run_ids}
    for metric in metrics:
        found.setdefault(metric["run_id"], []).append(metric)
    return found


def artifact_sha256(tracking_uri: str, artifact_uri: str, path: str) -> str | None:
    """The sha256 of a run's artifact read as a stream from the server that proxies it
    (``mlflow-artifacts:`` URIs): one request, no file on disk; None for other stores."""
    import hashlib
    from urllib.parse import quote

    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    if not artifact_uri.startswith("mlflow-artifacts:"):
        return None
    where = urlparse(artifact_uri).path.lstrip("/")
    endpoint = f"/api/2.0/mlflow-artifacts/artifacts/{quote(f'{where}/{path}')}"
    digest = hashlib.sha256()
    with http_request(get_default_host_creds(tracking_uri), endpoint, "GET",
                      stream=True) as resp:
        for block in resp.iter_content(1 << 20):
            digest.update(block)
    return digest.hexdigest()


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
