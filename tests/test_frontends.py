"""The UI and the trace view where the front end frames a kernel's outputs from another site:
VS Code and Colab (front/context.py, front/ui.py, the gate's kernel passes).

Each page is built from the exact HTML outputs a real kernel produced in that context, and
served by Playwright's routing under the front end's origin, in Debian's Chromium:

- VS Code: a kernel with no Jupyter server, started with the environment VS Code gives its
  kernels. Its webview is a page of ``https://<id>.vscode-cdn.net`` (VS Code for the Web's
  origin; the desktop's is ``vscode-webview://``); its iframes to 127.0.0.1 are real
  cross-site frames. Chromium's Local Network Access guard is off in the tests' browser:
  VS Code's webview lets a notebook frame the machine's own servers (as TensorBoard's inline
  view does).
- Colab, a stand-in, since there is no Colab here: a ``google.colab`` module in the kernel
  answers ``google.colab.kernel.proxyPort(port)`` with an https address, and Playwright's
  routing forwards that address to the kernel's port with the browser's own headers and no
  credential, as Colab's proxy does.

Third-party cookies and storage are blocked in these frames (Chromium's default here,
checked in each test), so what gets the frames in is the pass in their URL.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from pathlib import Path

import pytest
import requests
from browser_helpers import shot
from conftest import BROWSER_MARKS, Kernel, rest, wait_for

import mlflow_magic
from mlflow_magic import contract
from mlflow_magic.server.gate import PASS_RECHECK
from mlflow_magic.state import records

pytestmark = pytest.mark.integration

#: What VS Code's Jupyter extension gives the Python kernels it starts (no Jupyter server).
VSCODE_KERNEL_ENV = {"PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING": "1", "VSCODE_PID": "4242",
                     "VSCODE_CWD": "/tmp", "ELECTRON_RUN_AS_NODE": "1"}
COLAB_PAGE = "https://colab.research.google.com/drive/notebook"
COLAB_PROXY = re.compile(r"https://(\d+)-m-s-kernel\.colab\.googleusercontent\.com/(.*)")
#: The stand-in for Colab's ``google.colab`` package: its front end's ``proxyPort`` answer.
COLAB_OUTPUT = '''
import re

def eval_js(script):
    port = re.search(r"proxyPort\\((\\d+)", script).group(1)
    return f"https://{port}-m-s-kernel.colab.googleusercontent.com/"
'''


def notebook_outputs(kernel: Kernel, folder: Path, setup: str = "") -> tuple[list[str], str]:
    """The HTML outputs of a notebook that starts the folder's server, logs a run, traces
    a call and shows the UI, as this kernel drew them; and the run's link MLflow printed."""
    cells = [setup, "%load_ext mlflow_magic", f"%mlflow_server start --no-ui --path {folder}",
             textwrap.dedent("""
                 import mlflow
                 mlflow.set_experiment("framed")
                 with mlflow.start_run(run_name="from-the-notebook") as run:
                     mlflow.log_metric("loss", 0.5)
             """),
             f"%mlflow_server ui --path {folder} --experiment framed",
             textwrap.dedent("""
                 @mlflow.trace(name="outer_span")
                 def outer(x):
                     return inner(x) + 1

                 @mlflow.trace(name="inner_span")
                 def inner(x):
                     return x * 2

                 outer(3)
             """)]
    printed = ""
    for cell in filter(None, cells):
        text, errors = kernel.run(cell)
        assert errors == [], errors
        printed += text
    link = re.search(r"View run from-the-notebook at: (\S+)", printed)
    assert link, printed
    return [html for html in kernel.shown if "<iframe" in html], link.group(1)


def page_of(outputs: list[str]) -> str:
    return "<!doctype html><title>notebook</title><body>" + "".join(outputs) + "</body>"


def frames(page, outputs: list[str]):
    """The UI's frame and the trace view's, once both have loaded."""
    ui_src = re.search(r'class="mlflow-magic-ui" src="([^"]+)"', "".join(outputs)).group(1)
    wait_for(lambda: len(page.frames) >= 3, timeout=60)
    trace = next(f for f in page.frames if "notebook-trace-renderer" in f.url)
    ui = next(f for f in page.frames if f.url.startswith(ui_src.split("#")[0].replace(
        "&amp;", "&")) and f is not trace)
    return ui, trace


def check_the_frames(page, outputs: list[str], folder: Path, link: str) -> None:
    """What a user sees: the runs table, the trace's spans, a rename made in the UI, the run
    behind MLflow's printed link; and that no cookie carried any of it."""
    assert link.startswith(a_pass_in(outputs)), link  # the UI's address, not the server's
    opened = page.context.new_page()
    try:
        opened.goto(link)
        opened.get_by_text("loss").first.wait_for(timeout=120_000)  # the run's metric
        opened.get_by_text("from-the-notebook").first.wait_for(timeout=30_000)
    finally:
        opened.close()
    ui, trace = frames(page, outputs)
    ui.get_by_text("from-the-notebook").first.wait_for(timeout=120_000)
    trace.get_by_text("inner_span").first.wait_for(timeout=120_000)
    assert ui.evaluate("document.cookie = 'probe=1'; document.cookie") == ""  # blocked here
    # Rename the run in the UI, as a user does: its page, the header's menu, Rename, Save.
    ui_frame = page.frame_locator("iframe.mlflow-magic-ui")
    ui_frame.get_by_role("link", name="from-the-notebook").first.click()
    ui_frame.get_by_test_id("overflow-menu-trigger").first.click()
    ui_frame.get_by_role("menuitem", name="Rename").click()
    ui_frame.locator("[role=dialog] input[value='from-the-notebook']").fill(
        "renamed-in-the-frame")
    ui_frame.get_by_role("button", name="Save").click()
    server = records.read_record(folder)
    runs = {"experiment_ids": [_experiment(server.url)]}
    wait_for(lambda: rest(server.url, "/api/2.0/mlflow/runs/search", runs)["runs"][0]["info"][
        "run_name"] == "renamed-in-the-frame", timeout=60)


def _experiment(url: str) -> str:
    return rest(url, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=framed")[
        "experiment"]["experiment_id"]


def a_pass_in(outputs: list[str]) -> str:
    found = re.search(rf'(http[^"\s]*?/{contract.PASS_PATH}/[^/"]+/)', "".join(outputs))
    assert found, "no kernel pass in the outputs"
    return found.group(1)


def dead_after_the_kernel(outputs: list[str], folder: Path) -> None:
    """The saved outputs hold no credential that works once their kernel has ended."""
    server = records.read_record(folder)
    saved = "".join(outputs)
    assert contract.LOGIN_PARAM not in saved
    assert (records.record_dir(folder) / contract.KEY_FILE).read_text().strip() not in saved
    token = a_pass_in(outputs).rstrip("/").rsplit("/", 1)[1]
    direct = f"{server.url}/{contract.PASS_PATH}/{token}/ajax-api/2.0/mlflow/experiments/search"

    def refused() -> bool:
        found = requests.get(direct, params={"max_results": 5}, headers=BROWSER_MARKS,
                             timeout=30)
        return found.status_code == 401 and "kernel that has ended" in found.text

    wait_for(refused, timeout=PASS_RECHECK * 5)  # a pass found to hold is kept that long


@contextlib.contextmanager
def a_kernel(env: dict[str, str], folder: Path):
    """A real kernel in the front end's environment; after it, the folder's server stops."""
    kernel = Kernel(env)
    try:
        yield kernel
    finally:
        kernel.close()
        # once the kernel has ended (the server still runs): its outputs open nothing
        try:
            if records.read_record(folder) is not None and kernel.shown:
                dead_after_the_kernel([h for h in kernel.shown if "<iframe" in h], folder)
        finally:
            mlflow_magic.stop(folder)


def shown_at(page, address: str, outputs: list[str], folder: Path, link: str,
             screenshot: str) -> None:
    """The outputs as a page at ``address`` (the front end's origin), and what it shows."""
    page.route(address, lambda route: route.fulfill(content_type="text/html",
                                                    body=page_of(outputs)))
    page.goto(address)
    try:
        check_the_frames(page, outputs, folder, link)
    finally:
        shot(page, screenshot)


def test_vscode_shows_the_ui_and_the_trace_view_inline(folder, page):
    with a_kernel(VSCODE_KERNEL_ENV, folder) as kernel:
        outputs, link = notebook_outputs(kernel, folder)
        assert a_pass_in(outputs).startswith(records.read_record(folder).url + "/")
        shown_at(page, "https://0a1b2c3d.vscode-cdn.net/notebook-output.html", outputs,
                 folder, link, "vscode-webview")
        # Another site's page that frames the same link gets nothing (clickjacking):
        # the browser refuses to show the frame.
        evil = "https://evil.example/"
        page.route(evil, lambda route: route.fulfill(
            content_type="text/html", body=f'<iframe src="{a_pass_in(outputs)}"></iframe>'))
        page.goto(evil)
        wait_for(lambda: any(f.url.startswith("chrome-error") for f in page.frames),
                 timeout=30)
        assert all("from-the-notebook" not in f.content() for f in page.frames)


def test_colab_shows_the_ui_and_the_trace_view_through_its_proxy(folder, tmp_path, page):
    stand_in = tmp_path / "colab_stand_in"
    (stand_in / "google" / "colab").mkdir(parents=True)
    (stand_in / "google" / "colab" / "__init__.py").write_text("")
    (stand_in / "google" / "colab" / "output.py").write_text(COLAB_OUTPUT)
    with a_kernel({"PYTHONPATH": str(stand_in)}, folder) as kernel:
        outputs, link = notebook_outputs(kernel, folder, setup="import google.colab")
        port = records.read_record(folder).port
        assert a_pass_in(outputs).startswith(f"https://{port}-m-s-kernel.colab.")
        forwarded = []

        def colab_proxy(route):
            """Colab's proxy: to the kernel's port, the browser's headers, no key."""
            port, path = COLAB_PROXY.match(route.request.url).groups()
            forwarded.append(path)
            route.fulfill(response=route.fetch(
                url=f"http://127.0.0.1:{port}/{path}", max_redirects=0,
                headers={**route.request.headers,
                         "host": f"{port}-m-s-kernel.colab.googleusercontent.com"}))

        page.context.route(COLAB_PROXY, colab_proxy)  # also for links opened in a tab
        try:
            shown_at(page, COLAB_PAGE, outputs, folder, link, "colab-output")
        finally:  # the UI's polls still in flight end here, not in a later test
            page.context.unroute_all(behavior="ignoreErrors")
        assert forwarded and all(p.startswith(f"{contract.PASS_PATH}/") for p in forwarded)
