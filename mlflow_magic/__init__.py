"""mlflow_magic: one shared MLflow tracking server per data folder, from Jupyter.

In a notebook::

    %load_ext mlflow_magic
    %mlflow_server start

From Python::

    import mlflow_magic
    mlflow_magic.start()

Importing this package is cheap: it never imports mlflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import connect, launch, list_servers, logs, restart, start, status, stop
    from .config import ServerConfig, ServerOptions
    from .errors import MlflowMagicError

__version__ = "0.1.0"

__all__ = [
    "MlflowMagicError",
    "ServerConfig",
    "ServerOptions",
    "connect",
    "launch",
    "list_servers",
    "load_ipython_extension",
    "logs",
    "restart",
    "start",
    "status",
    "stop",
]


_LAZY = {
    **dict.fromkeys(("connect", "launch", "list_servers", "logs", "restart", "start",
                     "status", "stop"), "api"),
    "ServerConfig": "config",
    "ServerOptions": "config",
    "MlflowMagicError": "errors",
}


def __getattr__(name: str):
    """Import the API on first use, so ``%load_ext`` stays fast (it needs only the magics)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """``%load_ext mlflow_magic``: register the magics (no mlflow import)."""
    from .magics import MlflowMagics

    ipython.register_magics(MlflowMagics)
