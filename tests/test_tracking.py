"""tracking.py: environment variables set for a while (pointing the process at a server is
checked wherever a kernel starts one: test_magics.py, test_start.py)."""

from __future__ import annotations

import os

import pytest

from mlflow_magic import tracking


def test_environment_sets_for_a_while_then_puts_each_variable_back(monkeypatch):
    monkeypatch.setenv("MM_TEST_SET", "before")
    monkeypatch.delenv("MM_TEST_UNSET", raising=False)
    monkeypatch.setenv("MM_TEST_KEPT", "kept")
    with pytest.raises(RuntimeError), tracking.environment(
            "MM_TEST_KEPT", MM_TEST_SET="during", MM_TEST_UNSET="during"):
        assert os.environ["MM_TEST_SET"] == os.environ["MM_TEST_UNSET"] == "during"
        os.environ["MM_TEST_KEPT"] = "changed by a library"
        raise RuntimeError("even when the block fails")
    assert os.environ["MM_TEST_SET"] == "before" and os.environ["MM_TEST_KEPT"] == "kept"
    assert "MM_TEST_UNSET" not in os.environ



PRINTED = ("🏃 View run calm-owl at: http://127.0.0.1:5003/#/experiments/1/runs/0a1b2c\n"
           "🧪 View experiment at: http://127.0.0.1:5003/#/experiments/1\n")


def test_mlflows_printed_links_lead_where_the_notebooks_browser_finds_the_ui(monkeypatch):
    monkeypatch.delenv(tracking.UI_LINKS_ENV, raising=False)
    assert tracking.browser_links(PRINTED) == PRINTED  # no notebook said where: as printed
    # VS Code or Colab: the UI's full address, with its pass
    ui = "https://5003-m-s-k.colab.googleusercontent.com/mlflow-magic-pass/abc/"
    tracking.set_ui_links("http://127.0.0.1:5003", ui)
    assert tracking.browser_links(PRINTED) == PRINTED.replace("http://127.0.0.1:5003/", ui)
    assert tracking.browser_links(PRINTED.replace("5003", "5004")) == PRINTED.replace(
        "5003", "5004")  # another server's links are left alone
    # a Jupyter route of the page's own origin: no full URL to print, the cell to run
    tracking.set_ui_links("http://127.0.0.1:5003", "/user/ann/mlflow-magic/proxy/5003/")
    assert tracking.browser_links(PRINTED) == (
        PRINTED.splitlines(keepends=True)[0]
        + "   (in the notebook: %mlflow_server ui --run 0a1b2c)\n"
        + PRINTED.splitlines(keepends=True)[1])
    tracking.set_ui_links("http://127.0.0.1:5003", None)
    assert tracking.UI_LINKS_ENV not in os.environ


@pytest.mark.integration  # importing MLflow runs `uname`
def test_mlflows_link_printer_is_where_mlflow_magic_looks_for_it():
    """``internals.rewrite_printed_links`` wraps MLflow's printer once; it prints what the
    rewrite returns."""
    import contextlib
    import inspect
    import io

    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    from mlflow_magic import internals

    original = TrackingServiceClient._log_url  # (wrapped already if MLflow ran here)
    assert "View run" in inspect.getsource(inspect.unwrap(original))
    try:
        TrackingServiceClient._log_url = lambda self, run_id: print(f"View run at: {run_id}")
        assert internals.rewrite_printed_links(str.upper)
        assert not internals.rewrite_printed_links(str.upper)  # once
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            TrackingServiceClient._log_url(None, "r1")
        assert printed.getvalue() == "VIEW RUN AT: R1\n"
    finally:
        TrackingServiceClient._log_url = original


@pytest.mark.integration  # importing MLflow runs `uname`
def test_runs_ended_in_several_threads_at_once_leave_the_processs_output_alone():
    """A push ends four runs at a time: MLflow's printer, wrapped, must not leave
    ``sys.stdout`` pointing at one thread's buffer (every later print lost)."""
    import sys
    import threading
    import time

    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    from mlflow_magic import internals

    def slow_printer(self, run_id):
        time.sleep(0.001)  # as MLflow's: a request to the server between swap and write
        sys.stdout.write(f"View run at: {run_id}\n")

    original = TrackingServiceClient._log_url
    before = sys.stdout
    try:
        TrackingServiceClient._log_url = slow_printer
        assert internals.rewrite_printed_links(str.upper)

        def end_runs(n: int) -> None:
            for i in range(40):
                TrackingServiceClient._log_url(None, f"r{n}-{i}")

        threads = [threading.Thread(target=end_runs, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sys.stdout is before
    finally:
        TrackingServiceClient._log_url = original
        sys.stdout = before
