"""Point this Python process (a kernel, a script) at a tracking server.

Environment variables reach every subprocess (``!python train.py``) and are
what MLflow reads when it is first imported; ``mlflow.set_tracking_uri`` is
called only if MLflow is already imported, so this never pays its import cost.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator

from .contract import UI_LINKS_ENV

TRACKING_ENV = "MLFLOW_TRACKING_URI"
REGISTRY_ENV = "MLFLOW_REGISTRY_URI"


def use_tracking_server(tracking_uri: str, registry_uri: str | None = None) -> None:
    """Make ``tracking_uri`` (and ``registry_uri``, if given) the process's MLflow target.

    Without a separate registry, a registry URI left over from an earlier
    ``connect`` is cleared so the registry follows the tracking server again.
    """
    os.environ[TRACKING_ENV] = tracking_uri
    if registry_uri:
        os.environ[REGISTRY_ENV] = registry_uri
    else:
        os.environ.pop(REGISTRY_ENV, None)
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or not hasattr(mlflow, "set_tracking_uri"):
        return
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or "")


def mlflow_tracking_uri() -> str:
    """The tracking URI MLflow uses in this process (imports MLflow: call it where MLflow is
    in use already, as inside one of its requests)."""
    import mlflow

    return mlflow.get_tracking_uri()


def http_tracking_uri() -> str | None:
    """The tracking server this process already uses, if MLflow points at one over HTTP."""
    uri = os.environ.get(TRACKING_ENV, "")
    return uri if uri.startswith(("http://", "https://")) else None


TRACE_BASE_ENV = "MLFLOW_NOTEBOOK_TRACE_RENDERER_BASE_URL"


def set_trace_renderer_base(url: str | None) -> None:
    """Route MLflow's own inline trace display through the same URL as our UI."""
    if url:
        os.environ[TRACE_BASE_ENV] = url
    else:
        os.environ.pop(TRACE_BASE_ENV, None)


def set_ui_links(server_url: str, ui_url: str | None) -> None:
    """MLflow's printed links to ``server_url``'s UI go to ``ui_url``, where this notebook's
    browser finds it (None: as MLflow prints them)."""
    if ui_url and ui_url.rstrip("/") != server_url.rstrip("/"):
        os.environ[UI_LINKS_ENV] = f"{server_url.rstrip('/')} {ui_url}"
    else:
        os.environ.pop(UI_LINKS_ENV, None)


def browser_links(text: str) -> str:
    """MLflow's "View run at" lines, with links the browser of this notebook can open: its
    UI's address where that is a full URL (VS Code, Colab, a hub's public address); where it
    is a Jupyter route of the page's own origin, the cell that shows the run here."""
    server, _, ui = os.environ.get(UI_LINKS_ENV, "").partition(" ")
    if not server or not ui or f"{server}/#/" not in text:
        return text
    if ui.startswith(("http://", "https://")):
        return text.replace(f"{server}/#/", f"{ui.rstrip('/')}/#/")
    lines = []
    for line in text.splitlines(keepends=True):
        lines.append(line)
        run = re.search(rf"{re.escape(server)}/#/experiments/[^/\s]+/runs/([0-9a-f]+)", line)
        if run:
            lines.append(f"   (in the notebook: %mlflow_server ui --run {run.group(1)})\n")
    return "".join(lines)


@contextlib.contextmanager
def environment(*kept: str, **values: str) -> Iterator[None]:
    """Set environment variables for a while (``values``), then put those and the ``kept``
    ones back as they were, unset if they were: MLflow reads some settings only from the
    environment, and some of its helpers set ``MLFLOW_TRACKING_URI`` there for good."""
    before = {name: os.environ.get(name) for name in (*kept, *values)}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
