"""Start progress: the terminal line and the notebook widget (no server needed), and the
guard that keeps a background start's output in a saved notebook (real kernels)."""

from __future__ import annotations

import io

import pytest
from conftest import Kernel

import mlflow_magic
from mlflow_magic.front.terminal import TextProgress
from mlflow_magic.lifecycle.diagnosis import PHASE_ORDER
from mlflow_magic.notebook.progress import GUARDS, WidgetProgress
from mlflow_magic.results import Starting


def test_text_progress_rewrites_one_line():
    out = io.StringIO()
    progress = TextProgress(out)
    progress.fail()
    assert out.getvalue() == ""  # nothing shown before the first phase (e.g. on reuse)
    progress("preparing database", 1.25)
    progress("ready", 4.5)
    text = out.getvalue()
    assert "\rpreparing database" not in text  # each update clears the line first
    assert "\r\x1b[Kpreparing database ...  1.2 s" in text
    assert text.endswith("\r\x1b[Kready in 4.5 s\n")


def test_text_progress_failure():
    out = io.StringIO()
    progress = TextProgress(out)
    progress("starting web server", 3.0)
    progress.fail()
    assert out.getvalue().endswith("failed after 3.0 s\n")


def test_widget_progress_walks_the_phases_and_turns_red_on_failure():
    progress = WidgetProgress()
    assert progress.bar is None
    progress(PHASE_ORDER[1], 1.0)
    assert progress.bar.value == 1 and "preparing database" in progress.label.value
    progress("ready", 4.2)
    assert progress.bar.value == len(PHASE_ORDER) - 1
    assert progress.bar.bar_style == "success" and progress.label.value == "ready in 4.2 s"
    failing = WidgetProgress()
    failing("waiting for health", 9.0)
    failing.fail()
    assert failing.bar.bar_style == "danger" and "failed after 9.0 s" in failing.label.value


# --- the guard, in a real kernel ------------------------------------------------------------


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
