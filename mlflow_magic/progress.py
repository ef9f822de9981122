"""Live progress of a server start: a widget bar in notebooks, one updating line in terminals.

Both are :data:`~mlflow_magic.manager.Progress` callbacks. Nothing is shown
until the first phase arrives, so reusing a running server shows no progress.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from .manager import PHASE_ORDER
from .results import Renders, Starting


def _step(phase: str) -> int:
    return PHASE_ORDER.index(phase) if phase in PHASE_ORDER else 0


class TextProgress:
    """``preparing database ... 2.3 s`` on one line, rewritten in place."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.shown = False
        self.elapsed = 0.0

    def __call__(self, phase: str, elapsed: float) -> None:
        self.shown, self.elapsed = True, elapsed
        if phase == "ready":
            self.stream.write(f"\r\033[Kready in {elapsed:.1f} s\n")
        else:
            self.stream.write(f"\r\033[K{phase} ... {elapsed:4.1f} s")
        self.stream.flush()

    def fail(self) -> None:
        if self.shown:
            self.stream.write(f"\r\033[Kfailed after {self.elapsed:.1f} s\n")
            self.stream.flush()


class WidgetProgress:
    """An ipywidgets bar with the phase and the elapsed time; red on failure.

    ``show`` places the bar (default: display it in the cell's output); the
    control panel passes its own slot.
    """

    def __init__(self, show: Callable[[object], None] | None = None) -> None:
        self.show = show
        self.bar = None
        self.label = None
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


def in_notebook() -> bool:
    """True in a Jupyter kernel whose front end can show widgets."""
    if "ipykernel" not in sys.modules:
        return False
    # find_spec, not import: ipywidgets costs ~100 ms, paid only when a widget is shown.
    return importlib.util.find_spec("ipywidgets") is not None


def for_this_shell() -> TextProgress | WidgetProgress:
    return WidgetProgress() if in_notebook() else TextProgress()


def follow(starting: Starting, progress: WidgetProgress, when_ready: str = "") -> None:
    """Show a background start in its cell: "starting" now, the result (and ``when_ready``,
    e.g. the inline UI) or the start's error when it ends."""
    import html

    import ipywidgets as widgets
    from IPython.display import display

    def show(fragment: str) -> None:
        # The front end's own class for rendered HTML: links look like links in the widget.
        shown.value = f'<div class="jp-RenderedHTMLCommon" style="padding:0">{fragment}</div>'

    shown = widgets.HTML()
    show(starting.html())
    display(shown)

    def ended(result: Renders | None, error: BaseException | None) -> None:
        if error is not None:
            progress.fail()
            show('<pre style="white-space:pre-wrap;color:#c62828">'
                 f"{html.escape(str(error))}</pre>")
        elif result is not None:
            show(result.html() + when_ready)

    starting.pending.add_done_callback(ended)
