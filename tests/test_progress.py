"""Start progress: the terminal line and the notebook widget (no server needed)."""

from __future__ import annotations

import io

from mlflow_magic.front.terminal import TextProgress
from mlflow_magic.lifecycle.diagnosis import PHASE_ORDER
from mlflow_magic.notebook.progress import WidgetProgress


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
