"""Live progress of a server start: one output of its cell in notebooks, replaced in place,
one updating line in terminals, a widget bar in the control panel.

All three are :data:`~mlflow_magic.lifecycle.launch.Progress` callbacks. Nothing is shown
until the first phase arrives, so reusing a running server shows no progress.

In a notebook the start's output is plain HTML with a text form, replaced in place
through IPython's ``display_id`` (``update_display_data``): a live front end
redraws it as the start goes on, and what the notebook saves, whether JupyterLab
saves it, papermill or nbconvert runs it headless, or GitHub renders it, is
always its latest form: the address, the data folder and "ready in 4.7 s", or
the error and its log tail. No widget state is needed to read it.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..front import context
from ..front.render import Shown, failed
from ..front.terminal import TextProgress
from ..lifecycle.diagnosis import PHASE_ORDER
from ..results import Result, Starting


def _step(phase: str) -> int:
    return PHASE_ORDER.index(phase) if phase in PHASE_ORDER else 0


class WidgetProgress:
    """An ipywidgets bar with the phase and the elapsed time; red on failure.

    ``show`` places the bar (default: display it in the cell's output); the
    control panel passes its own slot.
    """

    def __init__(self, show: Callable[[object], None] | None = None) -> None:
        self.show = show
        self.bar: Any = None  # the ipywidgets, made on the first phase
        self.label: Any = None
        self.elapsed = 0.0
        self._deferred = False
        self._latest: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def _show(self) -> None:
        import ipywidgets as widgets

        self.bar = widgets.IntProgress(value=0, min=0, max=len(PHASE_ORDER) - 1,
                                       description="MLflow", bar_style="info")
        self.label = widgets.Label(value="")
        box = widgets.HBox([self.bar, self.label])
        if self.show is not None:
            self.show(box)
        else:
            from IPython.display import display

            display(box)

    def defer(self) -> None:
        """Keep phases until :meth:`place`: for a start that may go on in the background.

        Its thread reports the phases, and a display made in a thread lands in no
        cell once the cell has returned; so the cell itself places the bar (only
        if the start is a launch: a reuse shows none and imports no ipywidgets).
        """
        self._deferred = True

    def place(self) -> None:
        """Show the bar now, at the latest phase reported so far."""
        with self._lock:
            self._deferred = False
            if self.bar is None:
                self._show()
            latest = self._latest
        if latest is not None:
            self._update(*latest)

    def __call__(self, phase: str, elapsed: float) -> None:
        with self._lock:
            self.elapsed = elapsed
            if self._deferred:
                self._latest = (phase, elapsed)
                return
            if self.bar is None:
                self._show()
        self._update(phase, elapsed)

    def _update(self, phase: str, elapsed: float) -> None:
        self.bar.value = _step(phase)
        if phase == "ready":
            self.bar.bar_style = "success"
            self.label.value = f"ready in {elapsed:.1f} s"
        else:
            self.label.value = f"{phase} … {elapsed:.1f} s"

    def fail(self) -> None:
        if self.bar is not None:
            self.bar.bar_style = "danger"
            self.label.value = f"failed after {self.elapsed:.1f} s (see the message below)"


@dataclass(frozen=True)
class StartProgress:
    """A start under way, as its cell shows it: a bar, the phase, the elapsed time."""

    phase: str
    elapsed: float
    #: what is known of the start (its address and folder), as HTML and as text
    html_head: str = ""
    text_head: str = ""

    def _repr_html_(self) -> str:
        step = _step(self.phase)
        return (f"{self.html_head}<div><progress value=\"{step}\" max=\"{len(PHASE_ORDER) - 1}\" "
                f'style="width:12em;vertical-align:middle"></progress> MLflow: '
                f"{html.escape(self.phase)} &#8230; {self.elapsed:.1f} s</div>")

    def __repr__(self) -> str:
        head = f"{self.text_head}\n" if self.text_head else ""
        return f"{head}MLflow: {self.phase} ... {self.elapsed:.1f} s"

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(repr(self))


class InPlace:
    """One output of a cell, replaced in place (IPython's ``display_id``): what a live front
    end redraws, and what a saved notebook keeps (its latest form). Redraws come at most
    every ``every`` seconds unless forced, so a fast loop does not flood the front end."""

    def __init__(self, display: Callable[..., Any] | None = None, every: float = 0.0) -> None:
        self._display = display
        self.every = every
        self.handle: Any = None
        self._last = 0.0

    @property
    def placed(self) -> bool:
        return self.handle is not None

    def due(self) -> bool:
        """A redraw now would respect the pace (the first showing always does)."""
        return self.handle is None or time.monotonic() - self._last >= self.every

    def show(self, obj: object, raw: bool = False) -> None:
        """Show ``obj`` now: as a new output the first time, in place of it afterwards."""
        self._last = time.monotonic()
        if self.handle is None:
            self.handle = self._show(obj, raw)
        else:
            self.handle.update(obj, raw=raw)

    def _show(self, obj: object, raw: bool) -> Any:
        if self._display is not None:
            return self._display(obj, raw=raw, display_id=True)
        from IPython.display import display

        return display(obj, raw=raw, display_id=True)


class CellProgress:
    """A start's progress as one output of its cell, replaced in place until the result.

    Updates from the start's thread are at most :attr:`every` seconds apart (and on
    every new phase): a live front end redraws smoothly, a saved notebook keeps the
    last one.
    """

    every = 0.25

    def __init__(self, display: Callable[..., object] | None = None) -> None:
        self.output = InPlace(display, self.every)
        self.elapsed = 0.0
        self.head: tuple[str, str] = ("", "")
        self._deferred = False
        self._latest: tuple[str, float] | None = None
        self._phase = ""
        self._lock = threading.Lock()

    @property
    def placed(self) -> bool:
        return self.output.placed

    def defer(self) -> None:
        """Keep phases until :meth:`place`: for a start that may go on in the background.

        Its thread reports the phases, and a display made in a thread lands in no
        cell once the cell has returned; so the cell itself places the output
        (only if the start is a launch: a reuse shows none).
        """
        self._deferred = True

    def place(self, html_head: str = "", text_head: str = "") -> None:
        """Show the output now, at the latest phase reported so far."""
        with self._lock:
            self._deferred = False
            self.head = (html_head, text_head)
            latest = self._latest or (PHASE_ORDER[0], 0.0)
            if not self.output.placed:
                self._phase = latest[0]
                self.output.show(StartProgress(*latest, *self.head))

    def __call__(self, phase: str, elapsed: float) -> None:
        with self._lock:
            self.elapsed, self._latest = elapsed, (phase, elapsed)
            if self._deferred or (phase == self._phase and not self.output.due()):
                return
            self._phase = phase
            self.output.show(StartProgress(phase, elapsed, *self.head))

    def show(self, final: object) -> None:
        """End as ``final`` (the result, the error): in place of the progress if shown."""
        with self._lock:
            self.output.show(final)

    def fail(self, error: BaseException | str | None = None) -> None:
        """The start failed: its output turns red (with ``error``, if given)."""
        if error is not None:
            self.show(failed(error, self.elapsed))
        elif self.output.placed:
            self.show(failed("see the message below", self.elapsed))


def for_this_shell() -> TextProgress | CellProgress:
    """A start's progress where this process shows it: a cell's output, or a line."""
    return CellProgress() if context.current().notebook else TextProgress()


def follow(starting: Starting, progress: CellProgress,
           when_ready: Callable[[Result], Shown]) -> None:
    """Show a background start in its cell: "starting" now, then (from the start's thread)
    ``when_ready(result)`` (e.g. the result and the inline UI) or the start's error."""
    progress.place(starting.html(), starting.text())

    def ended(result: Result | None, error: BaseException | None) -> None:
        if error is not None:
            progress.fail(error)
        elif result is not None:
            progress.show(when_ready(result))

    starting.pending.add_done_callback(ended)


class PushProgress:
    """A push's progress as one output of its cell: a bar and the line of numbers (runs,
    metric points, bytes, rates, time left), replaced in place at most every :attr:`every`
    seconds, then by the push's report. Plain HTML, no widget: a saved notebook keeps the
    last state readable."""

    every = 0.5

    def __init__(self, display: Callable[..., Any] | None = None) -> None:
        self.output = InPlace(display, self.every)

    def __call__(self, tally) -> None:
        if tally.phase != "done" and not self.output.due():
            return
        width = f"{100 * min(tally.fraction, 1.0):.0f}%"
        line = tally.text()
        self.output.show({
            "text/plain": line,
            "text/html": ("<div><div style='width:360px;height:8px;background:#e5e5e5;"
                          "border-radius:4px'><div style='height:8px;border-radius:4px;"
                          f"background:#0194e2;width:{width}'></div></div>"
                          f"<code>{html.escape(line)}</code></div>")}, raw=True)

    def show(self, result: Result) -> None:
        """The push's report, in place of the progress."""
        self.output.show({"text/plain": result.text(), "text/html": result.html()}, raw=True)
