"""Where environments installed before 0.3.0 find the launcher's entry point
(``jupyter_serverproxy_servers``): it lives in :mod:`mlflow_magic.jupyter.launcher` now."""

from .jupyter.launcher import setup_mlflow

__all__ = ["setup_mlflow"]
