"""The app uvicorn (or gunicorn, waitress) serves: MLflow's own, behind the folder's gate,
with its trace renderer made relative.

``mlflow server`` names its app by import string (``mlflow.server.fastapi_app:app``,
``mlflow.server.auth:create_app`` as a factory, ``mlflow.server:app`` for
gunicorn), and every worker process imports it afresh. :mod:`mlflow_magic.server.serve`
puts this module in its place and the original string in
:data:`~mlflow_magic.contract.APP_ENV`, so each worker, however it was started
(in-process, ``--workers N``, MLflow's own launcher), refuses requests without
the folder's key (:mod:`mlflow_magic.server.gate`), says a full disk clearly
(:mod:`mlflow_magic.server.failures`) and serves the renderer under any path
prefix (see :func:`mlflow_magic.server.renderer.relative_renderer_page`).
"""

from __future__ import annotations

import importlib
import os

from .. import contract
from . import activity, failures, gate, journal


def _load(target: str):
    """The app of ``module:attr``; ``module:factory()`` is called (gunicorn's syntax)."""
    module, _, attr = target.partition(":")
    factory = attr.endswith("()")
    found = getattr(importlib.import_module(module), attr.removesuffix("()") or "app")
    return found() if factory else found


_KIND = os.environ.get(contract.APP_KIND_ENV, "asgi")
_MLFLOW_APP = _load(os.environ.get(contract.APP_ENV, "mlflow.server.fastapi_app:app"))
#: The gate first (nothing gets in without the key), then the activity (the keeper's idle
#: clock: only requests the gate let in count, so another user's refused ones never keep the
#: server awake), then the journal of writes for ``--sync-to``, then clear words for a full
#: disk.
app = gate.from_environment(activity.from_environment(journal.from_environment(
    failures.asgi(_MLFLOW_APP) if _KIND == "asgi" else _MLFLOW_APP, _KIND), _KIND), _KIND)

import mlflow.server  # noqa: E402 - imported by the app above; the Flask app lives here

from .renderer import serve_relative_trace_renderer, serve_storage_safe_index  # noqa: E402
from .summaries import serve_run_summaries  # noqa: E402

serve_relative_trace_renderer(mlflow.server.app)
serve_storage_safe_index(mlflow.server.app)
serve_run_summaries(mlflow.server.app)
