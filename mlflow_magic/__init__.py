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
    from .api import connect, launch, list_servers, logs, push, restart, start, status, stop, sync
    from .errors import MlflowMagicError
    from .notebook.runs import compare
    from .notebook.traces import TraceDisplay
    from .settings.config import ServerConfig
    from .settings.options import ServerOptions

__version__ = "0.3.0"

__all__ = [
    "MlflowMagicError",
    "ServerConfig",
    "ServerOptions",
    "compare",
    "connect",
    "launch",
    "list_servers",
    "load_ipython_extension",
    "logs",
    "push",
    "restart",
    "start",
    "status",
    "stop",
    "sync",
    "unload_ipython_extension",
]


_LAZY = {
    **dict.fromkeys(("connect", "launch", "list_servers", "logs", "push", "restart",
                     "start", "status", "stop", "sync"), "api"),
    "ServerConfig": "settings.config",
    "ServerOptions": "settings.options",
    "MlflowMagicError": "errors",
    "compare": "notebook.runs",
}


def __getattr__(name: str):
    """Import the API on first use, so ``%load_ext`` stays fast (it needs only the magics)."""
    if name in _LAZY:
        import importlib

        from .front import render

        render.install()  # results read as text in a terminal, as HTML in a notebook
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: What each shell got from ``%load_ext``, so ``%unload_ext`` removes exactly that.
_LOADED: dict[int, TraceDisplay] = {}


def load_ipython_extension(ipython) -> None:
    """``%load_ext mlflow_magic``: the magics, the trace display hooks and the guard that lets
    a background start's output reach a saved notebook (no mlflow import)."""
    from .notebook.guard import GUARDS, PendingStartGuard
    from .notebook.magics import MlflowMagics
    from .notebook.traces import TraceDisplay

    ipython.register_magics(MlflowMagics)
    if id(ipython) not in _LOADED:
        traces = TraceDisplay(ipython)
        traces.register()
        _LOADED[id(ipython)] = traces
        GUARDS[id(ipython)] = PendingStartGuard(ipython)
        GUARDS[id(ipython)].register()


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server extension: the UI's route (jupyter/extension.py)."""
    return [{"module": "mlflow_magic.jupyter.extension"}]


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext mlflow_magic``: remove the magics and the hooks."""
    traces = _LOADED.pop(id(ipython), None)
    if traces is not None:
        traces.unregister()
    from .notebook.guard import GUARDS

    guard = GUARDS.pop(id(ipython), None)
    if guard is not None:
        guard.unregister()
    magics = ipython.magics_manager.magics
    magics["line"].pop("mlflow_server", None)
    magics["cell"].pop("mlflow_run", None)
