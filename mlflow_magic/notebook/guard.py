"""The guard that keeps a background start's final output in a saved notebook.

Loaded by ``%load_ext`` (it hooks IPython's cell events), so it imports nothing heavy.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..results import Starting


class PendingStartGuard:
    """``post_run_cell``: a cell run after a background start's own cell ends only once that
    start has, so the start's final output is sent while a cell still runs.

    papermill, nbclient and ``nbconvert --execute`` read a cell's output only while
    they run that cell: an update sent after the last cell would be lost from the
    saved notebook. A cell with an MLflow call waits anyway (its first call waits for
    the server), so Run All loses nothing. The start's own cell never waits: that is
    the point of a background start.

    The start's cell is known by the :class:`~IPython.core.interactiveshell.ExecutionInfo`
    that ``pre_run_cell`` handed over for it, the very object ``post_run_cell`` gets back
    in its result: no execution count, which IPython 9 increments at the *start* of a
    cell (a count read during the cell is the next cell's).
    """

    def __init__(self, shell) -> None:
        self.shell = shell
        #: the ExecutionInfo of the cell running now (None between cells)
        self.running: object | None = None
        #: (the start, the ExecutionInfo of the cell that began it, or None outside a cell)
        self.started: tuple[object, object | None] | None = None

    def register(self) -> None:
        """Hook into the shell; a cell running now (``%load_ext`` in the start's own cell)
        is known by the result IPython's display hook fills for it."""
        current = getattr(getattr(self.shell, "displayhook", None), "exec_result", None)
        self.running = getattr(current, "info", None)
        self.shell.events.register("pre_run_cell", self.cell_begins)
        self.shell.events.register("post_run_cell", self)

    def unregister(self) -> None:
        for event, callback in (("pre_run_cell", self.cell_begins), ("post_run_cell", self)):
            with contextlib.suppress(ValueError):
                self.shell.events.unregister(event, callback)

    def cell_begins(self, info) -> None:
        self.running = info

    def watch(self, starting: Starting) -> None:
        self.started = (starting.pending, self.running)

    def __call__(self, result) -> None:
        self.running = None
        if self.started is None:
            return
        pending, cell = self.started
        if pending.done:  # type: ignore[attr-defined]
            self.started = None
            return
        if cell is not None and getattr(result, "info", None) is cell:
            return  # the start's own cell: it returns at once
        try:
            pending.wait_done()  # type: ignore[attr-defined]
        except KeyboardInterrupt:  # an interrupt ends the wait, not the start
            return
        self.started = None


#: The guard of each shell that loaded the extension, by ``id(shell)``.
GUARDS: dict[int, PendingStartGuard] = {}
