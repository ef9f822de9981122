"""What the browser tests share: Debian's Chromium through Playwright, JupyterLab's Run All,
and screenshots in ``test-artifacts/`` at the top of the repository."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

#: The host name the hub tests open (the browser resolves it to this machine).
HUB_HOST = "hub.example.test"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


#: Chromium's own guard (Local Network Access) stops a public page's requests to 127.0.0.1
#: before they leave; Firefox and Safari have none, and VS Code's webview frames the
#: machine's own servers. Off in the tests, so that what holds (or lets in) is ours.
WITHOUT_LOCAL_NETWORK_GUARD = (
    "--disable-features=LocalNetworkAccessChecks,LocalNetworkAccessChecksWebSockets,"
    "PrivateNetworkAccessRespectPreflightResults,PrivateNetworkAccessSendPreflights,"
    "BlockInsecurePrivateNetworkRequests")


@contextlib.contextmanager
def chromium(*extra_flags: str):
    """A headless Chromium (Debian's, not a downloaded one), closed on exit."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing (apt-get install chromium); .ci/setup installs it.")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *extra_flags],
                                     headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def new_page(browser):
    """A page in a fresh browser context (no cookies), closed on exit."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def expect_mlflow_in(page, frame: str, screenshot: str) -> None:
    """The iframe ``frame`` shows MLflow's UI; a screenshot is kept either way."""
    try:
        page.wait_for_selector(frame, timeout=120_000)
        page.frame_locator(frame).get_by_text("Experiments").first.wait_for(timeout=150_000)
    finally:
        shot(page, screenshot)


def record_cells(path: Path | None = None) -> list[str]:
    """A training notebook as pipelines run it: start, a run of 50 steps, the panel, the
    status, a comparison (on the folder ``path``, else ``$MLFLOW_PATH``)."""
    folder = f" --path {path}" if path else ""
    return [
        "%load_ext mlflow_magic",
        f"%mlflow_server start{folder}",
        "%%mlflow_run --experiment record --name fifty-steps\n"
        "import mlflow\n"
        "mlflow.log_param('learning_rate', 0.01)\n"
        "for step in range(50):\n"
        "    mlflow.log_metrics({'loss': 1 / (step + 1), 'accuracy': step / 50}, step=step)",
        f"%mlflow_server panel{folder}" if path else "%mlflow_server",
        f"%mlflow_server status{folder}",
        "import mlflow_magic\nmlflow_magic.compare('record', metrics=['loss'])",
    ]


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code ``cells`` for the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def open_and_run_all(page, lab_url: str, name: str, query: str = "") -> None:
    """Open notebook ``name`` in the JupyterLab at ``lab_url`` and press Run All.

    ``lab_url`` is the Jupyter server's base URL (``http://host:port/``, or
    ``.../user/NAME/`` under a hub); ``query`` is added to the address (``&token=...``).
    The notebook gets a workspace of its own, reset, so only it is open. Returns when
    Run All has been pressed, not when the cells have run (see ``wait_until_all_ran``).
    """
    page.goto(f"{lab_url}lab/workspaces/{Path(name).stem}/tree/{name}?reset{query}")
    # Attached, not visible: a rendered Markdown cell's editor is hidden.
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", state="attached",
                           timeout=90_000)
    select = page.locator(".jp-Dialog button.jp-mod-accept", has_text="Select")
    try:  # JupyterLab may ask which kernel to start, even with the notebook's kernelspec
        select.wait_for(timeout=10_000)
        select.click()
    except PlaywrightTimeout:
        pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=90_000)
    # Not awaited: the command's promise ends only when every cell has run.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def run_all(page, jupyter, name: str, cells: list[str]) -> None:
    """Open a new notebook of ``cells`` in the ``jupyter`` fixture's JupyterLab; Run All."""
    write_notebook(jupyter["root"] / name, cells)
    open_and_run_all(page, jupyter["url"], name, f"&token={jupyter['token']}")


#: True once Run All has settled: some code cell has run, none is queued or running
#: (``[*]``), and the kernel is idle. A cell that fails stops Run All: the cells after it
#: are never run, and are no longer queued either.
_SETTLED = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = panel && panel.content && panel.content.model && panel.content.model.cells;
    if (!cells) return false;
    let ran = false;
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type === 'code' && cell.executionCount != null) ran = true;
    }
    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')];
    return ran && !prompts.some(p => p.textContent.includes('[*]')) && document.querySelector(
        ".jp-Notebook-ExecutionIndicator[data-status='idle']") !== null;
}"""

_NOT_RUN = """() => {
    const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
    const left = [];
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type === 'code' && cell.executionCount == null)
            left.push(`cell ${i}: ${cell.sharedModel.getSource().split('\\n')[0]}`);
    }
    return left;
}"""


def wait_until_all_ran(page, timeout: float = 300) -> None:
    """Wait until Run All has settled; fail if a code cell was left unrun (Run All stops
    at a failing cell), naming the errors shown."""
    page.wait_for_function(_SETTLED, timeout=timeout * 1000, polling=500)
    not_run = page.evaluate(_NOT_RUN)
    assert not not_run, f"cells never run: {not_run}; errors shown: {error_outputs(page)}"


def error_outputs(page) -> list[str]:
    """What the notebook shows that is an error: error outputs (tracebacks) and shell
    lines that failed. An intended one-paragraph message (a UsageError) is none of these."""
    found = page.evaluate("""() => {
        const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
        const found = [];
        for (let i = 0; i < cells.length; i++) {
            const outputs = cells.get(i).outputs;
            for (let j = 0; outputs && j < outputs.length; j++) {
                const out = outputs.get(j).toJSON();
                if (out.output_type === 'error') found.push(out.ename + ': ' + out.evalue);
                const text = [].concat(out.text || []).join('');
                if (text.includes('command not found') || text.includes('No module named'))
                    found.push(text);
            }
        }
        return found;
    }""")
    stderr = page.locator(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    return found + [t for t in stderr.all_inner_texts() if "Traceback" in t]
