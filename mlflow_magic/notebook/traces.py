"""MLflow's own inline trace view, in the cell that made the trace.

MLflow shows a trace view in a cell's output from a ``post_run_cell`` hook,
for the traces exported by then. With MLflow's default asynchronous trace
logging, a trace is exported seconds later, so no view appears. Here a
``post_execute`` hook, which IPython and ipykernel fire just before every
``post_run_cell`` hook (so registration order does not matter), flushes the
trace queue, but only when the cell ended a new trace: a cell that traced
nothing pays a few dictionary look-ups and no network call.

Lists of traces (``mlflow.search_traces(return_type="list")``) get MLflow's
paged view too, through a display formatter that leaves every other list alone;
so does the DataFrame ``mlflow.search_traces()`` returns by default, below its
table (only frames with MLflow's trace columns).

Free of MLflow imports: everything is looked up in ``sys.modules``, so it costs
nothing until the user's code imports MLflow, and works on every MLflow version
that has these pieces (it does nothing where one is missing).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from .. import internals


def display_enabled() -> bool:
    """MLflow's trace display is on (not ``disable_notebook_display()``) and can show."""
    handler = internals.trace_display_handler_class()
    if handler is None or getattr(handler, "disabled", False):
        return False
    return internals.trace_display_available()


class TraceFlusher:
    """The ``post_execute`` hook: flush the trace queue after a cell that ended a trace."""

    def __init__(self) -> None:
        self._seen: str | None = internals.last_trace_id()

    def __call__(self) -> None:
        last = internals.last_trace_id()
        if last is None or last == self._seen:
            return  # no trace ended in this cell: no flush, no network
        self._seen = last
        if not internals.trace_display_handler_made():
            return  # MLflow made no display handler: nothing would show the trace
        if not display_enabled():
            return
        flush = getattr(sys.modules.get("mlflow"), "flush_trace_async_logging", None)
        if flush is not None:
            flush()


def trace_list_mimebundle(obj: list) -> dict[str, str] | None:
    """MLflow's (paged) trace view for a non-empty list of traces; None for other lists."""
    trace_module = sys.modules.get("mlflow.entities.trace")
    trace_class = getattr(trace_module, "Trace", None)
    if not obj or trace_class is None or not all(isinstance(t, trace_class) for t in obj):
        return None
    if not display_enabled():
        return None
    get_handler = getattr(sys.modules.get("mlflow.tracing.display"), "get_display_handler",
                          None)
    if get_handler is None:
        return None
    bundle = get_handler().get_mimebundle(obj)
    bundle.setdefault("text/plain", repr(obj))
    return bundle


#: Columns of MLflow's trace DataFrame (``Trace.to_pandas_dataframe_row``) that mark one.
TRACE_FRAME_COLUMNS = frozenset({"trace_id", "trace", "spans"})
#: The names pandas has given its DataFrame (``__module__`` is "pandas" in pandas 2):
#: formatters registered by name import nothing.
DATAFRAMES = (("pandas", "DataFrame"), ("pandas.core.frame", "DataFrame"))


def trace_frame_mimebundle(frame: Any) -> dict[str, str] | None:
    """``mlflow.search_traces()``'s DataFrame: its table, then MLflow's paged view of its
    first traces (as many as MLflow shows after a cell); None for every other frame."""
    columns = getattr(frame, "columns", None)
    if columns is None or not TRACE_FRAME_COLUMNS.issubset(set(columns)) or len(frame) == 0:
        return None
    trace_class = getattr(sys.modules.get("mlflow.entities.trace"), "Trace", None)
    if trace_class is None or not display_enabled():
        return None
    limit = getattr(sys.modules.get("mlflow.environment_variables"),
                    "MLFLOW_MAX_TRACES_TO_DISPLAY_IN_NOTEBOOK", None)
    try:
        traces = [trace_class.from_json(text)
                  for text in frame["trace"].head(limit.get() if limit else 10)]
    except Exception:  # not MLflow's JSON after all: show the frame as it always was
        return None
    bundle = trace_list_mimebundle(traces)
    if not bundle or "text/html" not in bundle:
        return None
    return {"text/plain": repr(frame), "text/html": frame._repr_html_() + bundle["text/html"]}


class TraceDisplay:
    """What the extension registers in a shell, so unloading removes exactly that."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.flusher = TraceFlusher()
        self._formatter = shell.display_formatter.mimebundle_formatter
        self._previous = None
        self._previous_frames: dict[tuple[str, str], Any] = {}

    def register(self) -> None:
        self.shell.events.register("post_execute", self.flusher)
        self._previous = self._formatter.for_type(list, self._list_bundle)
        self._previous_frames = {name: self._formatter.for_type_by_name(*name, self._frame_bundle)
                                 for name in DATAFRAMES}

    def unregister(self) -> None:
        with contextlib.suppress(ValueError):  # already gone
            self.shell.events.unregister("post_execute", self.flusher)
        self._formatter.type_printers.pop(list, None)
        if self._previous is not None:
            self._formatter.for_type(list, self._previous)
        for name, previous in self._previous_frames.items():
            with contextlib.suppress(KeyError):
                self._formatter.pop(".".join(name))
            if previous is not None:
                self._formatter.for_type_by_name(*name, previous)

    def _frame_bundle(self, frame: Any) -> Any:
        bundle = trace_frame_mimebundle(frame)
        previous = self._previous_frames.get((type(frame).__module__, type(frame).__name__))
        if bundle is None and previous is not None:
            return previous(frame)
        return bundle

    def _list_bundle(self, obj: list) -> Any:
        bundle = trace_list_mimebundle(obj)
        if bundle is None and self._previous is not None:
            return self._previous(obj)
        return bundle
