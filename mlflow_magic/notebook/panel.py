"""The control panel: ``%mlflow_server`` with no subcommand, in a notebook.

A thin shell over the API: it shows the folder's status, offers Start / Stop /
Restart / Open UI, and the log. Start and Restart go on in the background with
live progress, as ``%mlflow_server start`` does, so the kernel runs other cells
meanwhile. The panel refreshes after every action and on a light timer (one
status read every few seconds: a file read, a process lookup and one
``/health`` request), so it also shows what other kernels and terminals did.

It is two outputs: the status and the last message as plain HTML (replaced in
place as they change), which a saved notebook keeps readable anywhere, and the
widget with the buttons, the progress and the log, which needs a live kernel.
"""

from __future__ import annotations

import html
import logging
import re
import threading
from collections.abc import Callable

import ipywidgets as widgets
from IPython.display import display

from .. import api
from ..errors import MlflowMagicError
from ..front.commands import ui_view
from ..front.render import Shown, status_line
from ..front.ui import UiView
from ..lifecycle.pending import PendingStart
from ..results import ServerStatus, Starting
from ..settings.options import ServerOptions
from .progress import InPlace, WidgetProgress

_log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
_TAGS = re.compile(r"<[^>]+>")
LOG_LINES = 40


def _pending(result: object) -> PendingStart | None:
    """The start still under way behind a launch's result, if any."""
    return result.pending if isinstance(result, Starting) else None


class _Redrawn:
    """Text the panel's record output shows; setting it redraws that output."""

    def __init__(self, changed: Callable[[], None]) -> None:
        self._value = ""
        self._changed = changed

    @property
    def value(self) -> str:
        return self._value

    @value.setter
    def value(self, value: str) -> None:
        if value != self._value:
            self._value = value
            self._changed()


class _Controls:
    """The panel's widget, saved with a text that says what it was (not its repr)."""

    def __init__(self, widget) -> None:
        self.widget = widget

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = ("MLflow control panel: Start, Stop, Restart, Open UI and the "
                                "server log (live while the notebook's kernel runs)")
        return bundle


class ServerPanel:
    """Status, buttons and log of one data folder's server."""

    def __init__(self, options: ServerOptions, proxy_url: str | None = None,
                 refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.options = options
        self.proxy_url = proxy_url
        #: the record output: status and last message, plain HTML that a saved notebook keeps
        self._record = InPlace()
        self.status: ServerStatus | None = None
        self.header = _Redrawn(self._publish)
        self.message = _Redrawn(self._publish)
        self.buttons = {
            "start": widgets.Button(description="Start", icon="play", button_style="success"),
            "stop": widgets.Button(description="Stop", icon="stop", button_style="danger"),
            "restart": widgets.Button(description="Restart", icon="refresh"),
            "ui": widgets.Button(description="Open UI", icon="external-link"),
        }
        self.progress = widgets.Box()
        self.ui = widgets.Output()
        #: the UI view the panel shows (Open UI), if any
        self.shown_view: UiView | None = None
        self.log = widgets.HTML()
        log_box = widgets.Accordion(children=[self.log])
        log_box.set_title(0, "Server log")
        log_box.selected_index = None
        self.widget = widgets.VBox([
            widgets.HBox(list(self.buttons.values())),
            self.progress,
            self.ui,
            log_box,
        ])
        for name, handler in (("start", self.start), ("stop", self.stop),
                              ("restart", self.restart), ("ui", self.open_ui)):
            self.buttons[name].on_click(lambda _b, h=handler: self._act(h))
        self._stop_timer = threading.Event()
        self._refresh_seconds = refresh_seconds
        self._timer: threading.Thread | None = None
        #: an action runs: the timer must not re-enable the buttons meanwhile
        self._busy = False
        #: the last start or restart the panel began (it may still run)
        self.starting: PendingStart | None = None
        self.widget.on_msg(self._on_msg)
        self.refresh()

    # --- actions -----------------------------------------------------------------------

    def _act(self, action: Callable[[], PendingStart | None]) -> None:
        """Run a button's action; errors show in the panel, as one paragraph.

        A start or restart goes on in the background (the kernel stays free for other
        cells); the buttons stay disabled until it ends.
        """
        self.message.value = ""
        self._busy = True
        for button in self.buttons.values():
            button.disabled = True
        started = None
        try:
            started = action()
        except MlflowMagicError as exc:
            self._show_error(exc)
        finally:
            if started is None:
                self._action_ended()
        if started is not None:
            self.starting = started
            self.refresh()  # "starting"; then, from the start's thread, its end
            started.add_done_callback(self._start_ended)

    def _start_ended(self, _result: object, error: BaseException | None) -> None:
        if error is not None:
            self._show_error(error)
        self._action_ended()

    def _action_ended(self) -> None:
        self._busy = False
        self.refresh()

    def _show_error(self, error: BaseException) -> None:
        text = str(error) if isinstance(error, MlflowMagicError) else (
            f"{type(error).__name__}: {error}")
        self.message.value = (f'<pre style="color:#c62828;white-space:pre-wrap">'
                              f"{html.escape(text)}</pre>")

    # Actions never run inside ``with self.ui``: an Output widget shows a traceback for an
    # exception raised in it and swallows it, so _act could not turn it into a message.

    def _show_progress(self, box: object) -> None:
        self.progress.children = (box,)

    def start(self) -> PendingStart | None:
        self.progress.children = ()
        return _pending(api.launch(self.options, wait=False,
                                   on_progress=WidgetProgress(self._show_progress)))

    def stop(self) -> None:
        self.ui.clear_output()
        self.shown_view = None
        self.progress.children = ()
        api.stop(self.options.path)

    def restart(self) -> PendingStart | None:
        """Restart the same server: every setting it runs with is kept (see
        :func:`mlflow_magic.lifecycle.start.restart`)."""
        self.ui.clear_output()
        self.progress.children = ()
        return _pending(api.launch(self.options, restart=True, wait=False,
                                   on_progress=WidgetProgress(self._show_progress)))

    def open_ui(self) -> None:
        status = api.status(self.options.path)
        if not status.up or status.server is None:
            raise MlflowMagicError(f"No MLflow server is running for {status.data_dir}: "
                                   "press Start first.")
        view = ui_view(status.server.url, self.proxy_url)
        self.ui.clear_output()
        with self.ui:
            display(view)
        self.shown_view = view

    # --- state -------------------------------------------------------------------------

    def refresh(self) -> ServerStatus:
        """Read the folder's state and show it; buttons follow the state."""
        status = self.status = api.status(self.options.path)
        self.header.value = status_line(status)
        if not self._busy:
            running = status.up
            self.buttons["start"].disabled = running
            self.buttons["stop"].disabled = status.state == "stopped"
            self.buttons["restart"].disabled = not running
            self.buttons["ui"].disabled = not running
        lines = api.logs(self.options.path, LOG_LINES).lines
        self.log.value = (f'<pre style="max-height:20em;overflow:auto">{html.escape(lines)}'
                          "</pre>" if lines else "<i>no log yet</i>")
        return status

    def _tick(self) -> None:
        """Refresh on a timer while the panel is shown; end when it is closed."""
        while not self._stop_timer.wait(self._refresh_seconds):
            if self.widget.comm is None:  # closed, or the kernel is going away
                return
            try:
                self.refresh()
            except Exception:  # a transient read error must not kill the timer
                _log.debug("mlflow_magic: the panel was not refreshed", exc_info=True)

    @property
    def timer_running(self) -> bool:
        return self._timer is not None and self._timer.is_alive()

    def _publish(self) -> None:
        """Redraw the record output (status and message), if it is shown."""
        if self._record.placed:
            self._record.show(self._record_form())

    def _record_form(self) -> Shown:
        text = self.status.text() if self.status is not None else ""
        message = html.unescape(_TAGS.sub("", self.message.value))
        return Shown(f"<div>{self.header.value}{self.message.value}</div>",
                     text + (f"\n{message}" if message else ""))

    def _ipython_display_(self) -> None:
        """Show the panel; its one refresh timer starts with the first display."""
        self._record = InPlace()  # a new output for each display of the panel
        self._record.show(self._record_form())
        display(_Controls(self.widget))
        if not self.timer_running and not self._stop_timer.is_set():
            self._timer = threading.Thread(target=self._tick, name="mlflow-magic-panel",
                                           daemon=True)
            self._timer.start()

    def _on_msg(self, _widget: object, content: dict, _buffers: object) -> None:
        """The front end closed the panel's view for good: stop refreshing it."""
        if content.get("event") == "close":
            self.close()

    def close(self) -> None:
        """End the timer and the widget; safe to call twice."""
        self._stop_timer.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=self._refresh_seconds + 1)
        self.widget.close()
