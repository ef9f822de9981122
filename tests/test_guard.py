"""The guard that keeps a background start's output in a saved notebook
(notebook/guard.py), in a real kernel and in IPython's own shell."""

from __future__ import annotations

import pytest
from conftest import Kernel

import mlflow_magic
from mlflow_magic.notebook.guard import GUARDS
from mlflow_magic.results import Starting


@pytest.mark.integration
def test_the_start_cell_replies_while_the_server_starts_and_the_next_cell_waits(tmp_path):
    """In a real ipykernel, with the IPython and ipykernel that the install resolves: the
    start's own cell replies at once (its server still "starting"); the next cell replies
    only once the start is over, so a headless run saves the start's final output."""
    from importlib.metadata import version

    folder = tmp_path / "mlflow_data"  # (ipykernel is not imported here: this is no kernel)
    versions = f"IPython {version('ipython')}, ipykernel {version('ipykernel')}"
    kernel = Kernel({})
    try:
        kernel.run("%load_ext mlflow_magic")
        _, errors = kernel.run(f"%mlflow_server start --no-ui --path {folder}")
        assert errors == []
        assert mlflow_magic.status(folder).state == "starting", versions
        _, errors = kernel.run("after_the_start = 1")
        assert errors == []
        assert mlflow_magic.status(folder).state == "running", versions
        assert any("Started MLflow server at" in v and "ready in" in v for v in kernel.shown)
        _, errors = kernel.run("print('a third cell')")  # nothing left to wait for
        assert errors == []
    finally:
        kernel.close()
        mlflow_magic.stop(folder)


@pytest.mark.integration
def test_a_start_outside_any_cell_holds_up_the_next_cell(ip, tmp_path, clean_tracking_env):
    """A start watched outside a cell (a panel button's) has no cell of its own: the next
    cell waits for it."""
    folder = tmp_path / "mlflow_data"
    guard = GUARDS[id(ip)]
    try:
        starting = mlflow_magic.start(folder, wait=False)
        assert isinstance(starting, Starting)
        guard.watch(starting)
        ip.run_cell("after_the_start = 1", store_history=True)
        assert starting.pending.done and guard.started is None
    finally:
        mlflow_magic.stop(folder)
