"""A real JupyterLab in a real headless Chromium: the UI inline and in a launcher tab.

Screenshots go to ``test-artifacts/`` at the top of the repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from browser_helpers import (
    error_outputs,
    expect_mlflow_in,
    open_and_run_all,
    record_cells,
    run_all,
    shot,
    wait_until_all_ran,
    write_notebook,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeout

import mlflow_magic
from mlflow_magic.state import records

pytestmark = pytest.mark.browser

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def test_ui_inline_and_in_a_launcher_tab(jupyter, page):
    run_all(page, jupyter, "ui_check.ipynb", ["%load_ext mlflow_magic\n%mlflow_server start"])

    try:
        page.wait_for_selector("iframe.mlflow-magic-ui", timeout=120_000)
        inline = page.frame_locator("iframe.mlflow-magic-ui")
        inline.get_by_text("Experiments").first.wait_for(timeout=60_000)
    finally:
        shot(page, "inline-ui")
    record = records.read_record(jupyter["data_dir"])
    assert record is not None
    src = page.get_attribute("iframe.mlflow-magic-ui", "src")
    assert src.startswith(f"/mlflow-magic/proxy/{record.port}/")  # the extension's route

    # "open in a JupyterLab tab", from the cell's output: a JupyterLab tab, not a browser tab.
    page.locator("a[data-commandlinker-command='server-proxy:open']").first.click()
    expect_mlflow_in(page, f".jp-ServerProxy iframe[src='{src}']", "ui-in-a-lab-tab")
    assert len(page.context.pages) == 1

    # The launcher tile opens the same server's UI in a JupyterLab tab.
    page.locator("[data-command='launcher:create']").first.click()
    card = page.locator(".jp-LauncherCard", has_text="MLflow").first
    card.wait_for(timeout=30_000)
    card.click()
    expect_mlflow_in(page, f"iframe[src='{jupyter['url']}mlflow-magic/tile/']", "launcher-tab")
    assert records.read_record(jupyter["data_dir"]).pid == record.pid


def test_mlflows_printed_run_link_opens_the_run_through_the_route(jupyter, page):
    """MLflow prints "View run ... at: <link>" as a run ends; in JupyterLab that link leads
    through the Jupyter route (the server's own address does not let a browser in)."""
    run_all(page, jupyter, "printed_link.ipynb", [
        "%load_ext mlflow_magic\n%mlflow_server start --no-ui",
        "import mlflow\nmlflow.set_experiment('printed-link')\n"
        "with mlflow.start_run(run_name='run-behind-the-link'):\n"
        "    mlflow.log_metric('loss', 0.25)"])
    link = page.locator(".jp-OutputArea-output a", has_text="/runs/").first
    try:
        link.wait_for(timeout=120_000)
    finally:
        shot(page, "printed-run-link")
    record = records.read_record(jupyter["data_dir"])
    href = link.get_attribute("href")
    assert href.startswith(f"{jupyter['url']}mlflow-magic/proxy/{record.port}/#/experiments/")
    with page.context.expect_page(timeout=30_000) as opened:
        link.click()
    run_page = opened.value
    try:
        run_page.get_by_text("run-behind-the-link").first.wait_for(timeout=120_000)
        run_page.get_by_text("loss").first.wait_for(timeout=30_000)
    finally:
        shot(run_page, "printed-run-link-opened")
        run_page.close()


TRACE_CELLS = [
    "%load_ext mlflow_magic\n%mlflow_server start --no-ui",
    "import mlflow\n\nmlflow.set_experiment('browser-traces')\n\n"
    "@mlflow.trace(name='add_numbers')\ndef add(a, b):\n    return a + b\n\nadd(1, 2)",
    "@mlflow.trace(name='outer_call')\ndef outer():\n"
    "    with mlflow.start_span(name='inner_step') as span:\n"
    "        span.set_inputs({'question': 'why'})\n    return broken()\n\n"
    "@mlflow.trace(name='broken_call')\ndef broken():\n    raise ValueError('boom from a span')\n\n"
    "try:\n    outer()\nexcept ValueError:\n    pass",
    "mlflow.search_traces(return_type='list', max_results=3)",
    "mlflow.search_traces(max_results=3)",  # MLflow's default: a DataFrame
]


def test_trace_views_render_in_their_cells_through_the_proxy(jupyter, page):
    frames = "iframe[src*='notebook-trace-renderer']"
    try:
        run_all(page, jupyter, "traces.ipynb", TRACE_CELLS)
        page.wait_for_function(f"document.querySelectorAll(\"{frames}\").length >= 4",
                               timeout=180_000)
        cells = page.locator(".jp-Notebook .jp-Cell")
        for index, names in ((1, ["add_numbers"]), (2, ["outer_call", "inner_step"]),
                             (3, ["outer_call"]), (4, ["outer_call"])):  # paged: newest first
            frame = cells.nth(index).frame_locator(frames)
            for name in names:
                frame.get_by_text(name).first.wait_for(timeout=60_000)
        # The error span shows its exception.
        cells.nth(2).frame_locator(frames).get_by_text("broken_call").first.click()
        cells.nth(2).frame_locator(frames).get_by_text("boom from a span").first.wait_for(
            timeout=30_000)
    finally:
        shot(page, "trace-views")
    record = records.read_record(jupyter["data_dir"])
    srcs = [page.locator(frames).nth(i).get_attribute("src") for i in range(4)]
    assert all(src.startswith(f"/mlflow-magic/proxy/{record.port}/static-files/")
               for src in srcs)
    assert srcs[2].count("trace_id=") == 2  # both traces of the notebook, paged
    assert srcs[3].count("trace_id=") == 2  # the DataFrame's too, below its table
    assert cells.nth(4).locator("table.dataframe").count() == 1

    # "View in MLflow UI" inside the view opens the UI through the same route.
    with page.context.expect_page(timeout=30_000) as opened:
        page.locator(".jp-Notebook .jp-Cell").nth(1).frame_locator(frames).get_by_text(
            "View in MLflow UI").first.click()
    ui = opened.value
    try:
        ui.wait_for_load_state()
        assert ui.url.startswith(f"{jupyter['url']}mlflow-magic/proxy/{record.port}/#/"), ui.url
        ui.get_by_text("add_numbers").first.wait_for(timeout=60_000)
    finally:
        shot(ui, "trace-view-in-mlflow-ui")
        ui.close()


def test_notebook_7_shows_the_ui_and_trace_views(jupyter, page):
    """Notebook 7's notebook page: no JupyterLab tabs there, so the plain links must work."""
    cells = [TRACE_CELLS[0].replace(" --no-ui", ""), TRACE_CELLS[1]]
    write_notebook(jupyter["root"] / "nb7.ipynb", cells)
    page.goto(f"{jupyter['url']}notebooks/nb7.ipynb?token={jupyter['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90_000)
    try:
        page.wait_for_function("window.jupyterapp !== undefined", timeout=60_000)
        select = page.locator(".jp-Dialog button.jp-mod-accept", has_text="Select")
        try:
            select.wait_for(timeout=10_000)
            select.click()
        except PlaywrightTimeout:
            pass
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                               "#jp-NotebookKernelStatus, .jp-NotebookKernelStatus",
                               timeout=90_000)
        page.evaluate("() => { window.jupyterapp.commands.execute("
                      "'notebook:run-all-cells'); }")
        expect_mlflow_in(page, "iframe.mlflow-magic-ui", "notebook7-inline-ui")
        frames = "iframe[src*='notebook-trace-renderer']"
        page.wait_for_selector(frames, timeout=120_000)
        page.frame_locator(frames).get_by_text("add_numbers").first.wait_for(timeout=60_000)
    finally:
        shot(page, "notebook7")
    record = records.read_record(jupyter["data_dir"])
    plain = page.locator(f"a[href^='/mlflow-magic/proxy/{record.port}/'][target='_blank']")
    assert plain.count() >= 2  # "open in a new browser tab", and the tab link's own href


@pytest.mark.parametrize(("name", "inline_uis"), [
    ("getting_started.ipynb", 1),  # %mlflow_server start
    ("quickstart.ipynb", 1),  # %mlflow_server ui --experiment ...
    ("shared_server.ipynb", 0),  # --no-ui
])
def test_example_notebook_runs_all_in_jupyterlab(jupyter, page, name, inline_uis):
    """Each example notebook, as a user runs it: Run All, no error, every inline UI shows."""
    shutil.copy(NOTEBOOKS / name, jupyter["root"] / name)
    try:
        open_and_run_all(page, jupyter["url"], name, f"&token={jupyter['token']}")
        wait_until_all_ran(page)
        # getting_started's bad-input demo is a one-paragraph UsageError: none of these.
        assert error_outputs(page) == []
        frames = page.locator("iframe.mlflow-magic-ui")
        if inline_uis:  # a start's UI may show after its cell ended (a background start)
            page.wait_for_function("n => document.querySelectorAll("
                                   "'iframe.mlflow-magic-ui').length >= n", arg=inline_uis,
                                   timeout=60_000)
        assert frames.count() == inline_uis
        for i in range(inline_uis):
            frames.nth(i).scroll_into_view_if_needed()
            inside = frames.nth(i).content_frame
            inside.get_by_text("Experiments").first.wait_for(timeout=60_000)
            assert inside.get_by_text("Something went wrong").count() == 0
    finally:
        shot(page, f"notebook-{Path(name).stem}")


def test_a_saved_notebook_reopened_without_its_kernel_reads_as_a_record(jupyter, page):
    """Run, save (JupyterLab saves no widget state by default), shut the kernel down,
    reopen: every output still says what happened."""
    name, data = "record.ipynb", jupyter["root"] / "record_data"
    try:
        reopened = _run_save_and_reopen(page, jupyter, name, data)
    finally:
        mlflow_magic.stop(data)
    shown = "\n".join(reopened.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Started MLflow server at" in shown and "ready in" in shown
    assert "MLflow run fifty-steps" in shown and "learning_rate" in shown
    assert "MLflow server is running" in shown
    assert reopened.locator(".mlflow-magic-run svg").count() == 2  # loss and accuracy
    assert not [r for r in ("HBox(", "VBox(", "HTML(value=", "IntProgress(") if r in shown]


def _run_save_and_reopen(page, jupyter, name, data):
    import requests

    run_all(page, jupyter, name, record_cells(data))
    wait_until_all_ran(page)
    page.wait_for_function("() => document.body.innerText.includes('ready in')",
                           timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !document.title.startsWith('*') && "
                           "!document.querySelector('.jp-mod-dirty')", timeout=30_000)
    for session in requests.get(f"{jupyter['url']}api/sessions", headers=jupyter["auth"],
                                timeout=10).json():
        if session["path"].endswith(name):
            requests.delete(f"{jupyter['url']}api/kernels/{session['kernel']['id']}",
                            headers=jupyter["auth"], timeout=30).raise_for_status()
    page.goto("about:blank")
    try:
        page.goto(f"{jupyter['url']}lab/workspaces/reopened/tree/{name}?reset&token="
                  f"{jupyter['token']}")
        page.wait_for_selector(".jp-OutputArea-output svg", timeout=90_000)
    finally:
        shot(page, "record-reopened")
    return page
