"""MLflow's own inline trace view: in the cell that made the trace, through the proxy."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
import requests
from conftest import owner

import mlflow_magic
from mlflow_magic.notebook.traces import TraceFlusher
from mlflow_magic.server.renderer import TRACE_RENDERER

TRACED = """
import mlflow

@mlflow.trace(name="add_numbers")
def add(a, b):
    return a + b

add(1, 2)
"""


@pytest.fixture
def ip(ipython_shell, shared_server, clean_tracking_env, monkeypatch):
    """A shell with the extension loaded, MLflow pointed at a real server."""
    import mlflow
    from mlflow.tracing.display.display_handler import IPythonTraceDisplayHandler

    # MLflow makes its display handler once per process, and it hooks into IPython only if
    # a shell exists then. An earlier test of this worker that traced before the test shell
    # started left one that never shows anything; in a kernel the shell always comes first.
    made = IPythonTraceDisplayHandler._instance
    if made is not None and made._display_traces_post_run not in \
            ipython_shell.events.callbacks["post_run_cell"]:
        IPythonTraceDisplayHandler._instance = None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_server.url)
    mlflow.set_tracking_uri(shared_server.url)
    mlflow.set_experiment("traces")
    mlflow_magic.load_ipython_extension(ipython_shell)
    yield ipython_shell
    mlflow_magic.unload_ipython_extension(ipython_shell)
    mlflow.tracing.enable_notebook_display()


def run(ip, code: str) -> list[dict]:
    """Run a cell as a notebook does; return what it displayed (its outputs)."""
    shown: list[dict] = []
    ip.display_pub.publish = lambda data, **kw: shown.append(data)
    try:
        result = ip.run_cell(code, store_history=True)
    finally:
        del ip.display_pub.publish
    assert result.success, result.error_in_exec
    if result.result is not None:  # the cell's value, formatted as Jupyter would show it
        shown.append(ip.display_formatter.format(result.result)[0])
    return shown


def trace_frames(outputs: list[dict]) -> list[str]:
    return [d["text/html"] for d in outputs
            if "notebook-trace-renderer" in d.get("text/html", "")]


def test_a_traced_cell_shows_its_own_trace_view(ip):
    import mlflow

    frames = trace_frames(run(ip, TRACED))
    trace_id = mlflow.get_last_active_trace_id()
    assert len(frames) == 1 and f"trace_id={trace_id}" in frames[0]
    assert not trace_frames(run(ip, "x = 1"))  # the next cell shows nothing again


def test_without_the_extension_the_view_never_appears(ip):
    """What users saw: MLflow's asynchronous export ends after its own display hook."""
    mlflow_magic.unload_ipython_extension(ip)
    assert trace_frames(run(ip, TRACED)) == []


def test_a_cell_without_a_trace_pays_no_flush(ip, monkeypatch):
    import mlflow

    calls = []
    real = mlflow.flush_trace_async_logging
    monkeypatch.setattr(mlflow, "flush_trace_async_logging",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    run(ip, "x = 41 + 1")
    assert calls == []
    run(ip, TRACED)
    assert calls == [1]
    run(ip, "y = x")
    assert calls == [1]


def test_disable_notebook_display_is_respected(ip, monkeypatch):
    import mlflow

    mlflow.tracing.disable_notebook_display()
    calls = []
    monkeypatch.setattr(mlflow, "flush_trace_async_logging", lambda *a, **k: calls.append(1))
    assert trace_frames(run(ip, TRACED)) == [] and calls == []


def test_an_error_span_and_nested_spans_show_too(ip):
    code = TRACED + """
@mlflow.trace(name="outer")
def outer():
    with mlflow.start_span(name="inner") as span:
        span.set_inputs({"q": 1})
    return fails()

@mlflow.trace(name="fails")
def fails():
    raise ValueError("boom")

try:
    outer()
except ValueError:
    pass
"""
    frames = trace_frames(run(ip, code))
    assert len(frames) == 1 and frames[0].count("trace_id=") == 2  # both traces, paged


def test_a_list_of_traces_shows_the_paged_view(ip):
    for _ in range(3):
        run(ip, TRACED)
    frames = trace_frames(run(ip, 'mlflow.search_traces(return_type="list", max_results=3)'))
    assert len(frames) == 1 and frames[0].count("trace_id=") == 3
    plain = run(ip, "[1, 2, 3]")  # every other list is shown as it always was
    assert plain == [{"text/plain": "[1, 2, 3]"}]


def test_search_traces_dataframe_shows_its_table_and_the_paged_view(ip):
    for _ in range(2):
        run(ip, TRACED)
    (shown,) = run(ip, "mlflow.search_traces(max_results=2)")  # MLflow's default: a DataFrame
    html = shown["text/html"]
    assert html.index("<table") < html.index("notebook-trace-renderer")  # table, then view
    assert html.count("trace_id=") == 2 and "trace_id" in shown["text/plain"]
    other = run(ip, "import pandas as pd\npd.DataFrame({'a': [1, 2]})")
    assert not trace_frames(other) and "a" in other[0]["text/plain"]  # others as always


@pytest.mark.integration
def test_unload_removes_what_load_registered(ipython_shell):
    before = list(ipython_shell.events.callbacks["post_execute"])
    mlflow_magic.load_ipython_extension(ipython_shell)
    added = [c for c in ipython_shell.events.callbacks["post_execute"] if c not in before]
    assert len(added) == 1 and isinstance(added[0], TraceFlusher)
    assert list in ipython_shell.display_formatter.mimebundle_formatter.type_printers
    assert "mlflow_server" in ipython_shell.magics_manager.magics["line"]
    import pandas as pd

    formatter = ipython_shell.display_formatter.mimebundle_formatter
    assert formatter.lookup_by_type(pd.DataFrame) is not None
    mlflow_magic.unload_ipython_extension(ipython_shell)
    with pytest.raises(KeyError):
        formatter.lookup_by_type(pd.DataFrame)
    assert ipython_shell.events.callbacks["post_execute"] == before
    assert list not in ipython_shell.display_formatter.mimebundle_formatter.type_printers
    assert "mlflow_server" not in ipython_shell.magics_manager.magics["line"]
    assert "mlflow_run" not in ipython_shell.magics_manager.magics["cell"]


def test_the_renderer_page_works_under_any_prefix(shared_server, jupyter):
    """Its base and script are relative, so /proxy/<port>/ (or a hub's prefix) keeps them."""
    direct = requests.get(f"{shared_server.url}/static-files/{TRACE_RENDERER}", timeout=10,
                          headers=owner(shared_server.url))
    assert '<base href="../../../">' in direct.text and 'src="/static-files' not in direct.text
    route = f"{jupyter['url']}mlflow-magic/proxy/{shared_server.port}/"
    page_url = f"{route}static-files/{TRACE_RENDERER}"
    page = requests.get(page_url, headers=jupyter["auth"], timeout=30)
    assert page.status_code == 200
    base = urljoin(page_url, re.search(r'<base href="([^"]+)"', page.text).group(1))
    assert base == route
    script = re.search(r'<script defer="defer" src="([^"]+)"', page.text).group(1)
    js = requests.get(urljoin(base, script), headers=jupyter["auth"], timeout=30)
    assert js.status_code == 200 and len(js.content) > 1000
