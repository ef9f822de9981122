"""The app uvicorn (or gunicorn) serves: MLflow's own, with its trace renderer made relative.

``mlflow server`` names its app by import string (``mlflow.server.fastapi_app:app``,
``mlflow.server.auth:create_app`` with ``--factory``, ``mlflow.server:app`` for
gunicorn), and every worker process imports it afresh. :mod:`mlflow_magic.serve`
puts this module in its place and the original string in :data:`APP_ENV`, so
each worker, however it was started (in-process, ``--workers N``, MLflow's own
launcher), serves the renderer under any path prefix (see
:func:`mlflow_magic.serve.relative_renderer_page`).
"""

from __future__ import annotations

import importlib
import os

APP_ENV = "MLFLOW_MAGIC_APP"


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr or "app")


app = _load(os.environ.get(APP_ENV, "mlflow.server.fastapi_app:app"))

import mlflow.server  # noqa: E402 - imported by the app above; the Flask app lives here

from .serve import serve_relative_trace_renderer  # noqa: E402

serve_relative_trace_renderer(mlflow.server.app)
