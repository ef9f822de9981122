"""The control panel, driven through its buttons against real servers."""

from __future__ import annotations

import threading

import pytest
from conftest import stubs_running

from mlflow_magic import api
from mlflow_magic.errors import MlflowMagicError
from mlflow_magic.notebook.panel import ServerPanel
from mlflow_magic.settings.options import ServerOptions
from mlflow_magic.state import records


@pytest.fixture(autouse=True)
def shell(ipython_shell):
    """An IPython shell exists, as in a notebook (it changes how Output widgets behave)."""
    return ipython_shell


@pytest.mark.integration
def test_panel_start_open_ui_stop(folder):
    panel = ServerPanel(ServerOptions(path=folder), refresh_seconds=3600)
    try:
        assert "stopped" in panel.header.value
        assert not panel.buttons["start"].disabled and panel.buttons["stop"].disabled

        panel.buttons["start"].click()  # returns at once: the kernel stays free
        assert "starting" in panel.header.value
        assert all(b.disabled for b in panel.buttons.values())
        assert api.status(folder).state == "starting"
        panel.starting.result(timeout=120)
        assert panel.message.value == ""
        assert panel.progress.children[0].children[1].value.startswith("ready in")
        record = records.read_record(folder)
        assert record is not None
        assert "running" in panel.header.value and record.url in panel.header.value
        assert panel.buttons["start"].disabled and not panel.buttons["stop"].disabled
        assert "Uvicorn running" in panel.log.value

        panel.buttons["ui"].click()
        assert panel.message.value == ""
        assert panel.shown_view is not None  # the UI view, in the panel
        assert panel.shown_view.location.direct_url == record.url + "/"

        served_before = records.serving_pid(record)
        assert served_before is not None
        panel.buttons["restart"].click()
        panel.starting.result(timeout=120)
        assert panel.message.value == ""
        assert records.serving_pid(records.read_record(folder)) != served_before

        panel.buttons["stop"].click()
        assert records.read_record(folder) is None
        assert "stopped" in panel.header.value
        assert panel.buttons["ui"].disabled
        panel._act(panel.open_ui)  # as if clicked anyway: explained, not raised
        assert "press Start first" in panel.message.value
    finally:
        panel.close()


@pytest.mark.integration
def test_panel_reflects_what_others_did_and_shows_errors(folder):
    panel = ServerPanel(ServerOptions(path=folder, port=99999), refresh_seconds=3600)
    try:
        panel.buttons["start"].click()  # a bad option: the error shows in the panel
        assert "Port 99999" in panel.message.value
        api.start(folder, use=False)  # another kernel starts it
        assert panel.refresh().running
        assert "running" in panel.header.value
    finally:
        panel.close()


def test_a_start_that_fails_in_the_background_shows_its_error_in_the_panel(
        folder, stub, clean_tracking_env):
    stub("exit:2:Error: No such option: --bogus\nUsage: mlflow server [OPTIONS]")
    panel = ServerPanel(ServerOptions(path=folder), refresh_seconds=3600)
    try:
        panel.buttons["start"].click()
        with pytest.raises(MlflowMagicError):
            panel.starting.result(timeout=60)
        assert "refused its arguments" in panel.message.value
        assert "stopped" in panel.header.value and not panel.buttons["start"].disabled
        assert records.read_record(folder) is None and stubs_running() == []
    finally:
        panel.close()


@pytest.mark.integration
def test_panel_restart_keeps_the_servers_own_settings(folder, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    first = api.start(folder, use=False, artifacts_destination=str(elsewhere), workers=2).server
    panel = ServerPanel(ServerOptions(path=folder), refresh_seconds=3600)
    try:
        served_before = records.serving_pid(first)
        assert served_before is not None
        panel.buttons["restart"].click()
        panel.starting.result(timeout=120)
        assert panel.message.value == ""
        again = records.read_record(folder)
        assert records.serving_pid(again) != served_before and again.port == first.port
        assert again.settings["artifacts_destination"] == str(elsewhere)
        assert again.workers == 2
    finally:
        panel.close()


def test_panel_timer_leaves_buttons_alone_during_an_action_and_ends_on_close(folder):
    panel = ServerPanel(ServerOptions(path=folder), refresh_seconds=0.05)
    seen = []

    def slow_action():
        import time

        time.sleep(0.5)  # several timer ticks happen meanwhile
        seen.append([b.disabled for b in panel.buttons.values()])

    panel._ipython_display_()
    panel._ipython_display_()  # shown twice: still one timer
    timers = [t for t in threading.enumerate() if t.name == "mlflow-magic-panel"]
    assert len(timers) == 1 and panel.timer_running
    panel._act(slow_action)
    assert seen == [[True, True, True, True]]
    panel.close()
    assert not panel.timer_running
