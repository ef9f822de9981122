"""A real JupyterHub, reached under a public host name, with the UI and traces inline.

The hub (configurable-http-proxy from npm, the dummy authenticator, the simple
local spawner) runs the single-user JupyterLab of this virtualenv. Chromium
resolves ``hub.example.test`` to 127.0.0.1, so every request carries a public,
non-local ``Host`` and ``Origin``, as behind ``https://hub.example.org``.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from browser_helpers import (
    HUB_HOST,
    expect_mlflow_in,
    open_and_run_all,
    shot,
    write_notebook,
)
from conftest import as_host, free_port, rest, stop_group, wait_for, wait_until_answers

import mlflow_magic
from mlflow_magic.state import records

pytestmark = pytest.mark.browser

HOST = HUB_HOST
USER = "alice"
VENV_BIN = Path(sys.executable).parent
CHP = Path(sys.prefix) / "node_modules" / ".bin" / "configurable-http-proxy"

CONFIG = """\
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
# The address users open (an admin sets it on a public hub); servers see it as
# $JUPYTERHUB_PUBLIC_URL.
c.JupyterHub.public_url = "http://{host}:{port}/"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = {proxy_pid!r}
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = {cookie_secret!r}
c.JupyterHub.pid_file = {hub_pid!r}
# On SIGTERM the hub stops the single-user servers and the proxy it started.
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {home!r}
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root", "--LabApp.expose_app_in_browser=True",
                  "--LabApp.news_url=",
                  "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
c.Spawner.notebook_dir = {notebooks!r}
c.Spawner.default_url = "/lab"
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
"""


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """A running JupyterHub on a free port; everything it started is stopped afterwards."""
    if not CHP.exists():
        pytest.fail(f"{CHP} is missing (npm install configurable-http-proxy); .ci/setup "
                    "installs it.")
    root = tmp_path_factory.mktemp("hub")
    data_dir, notebooks = root / "mlflow_data", root / "notebooks"
    notebooks.mkdir()
    port = free_port()
    environment = {
        "MLFLOW_PATH": str(data_dir),
        "MLFLOW_MAGIC_STATE_DIR": os.environ["MLFLOW_MAGIC_STATE_DIR"],
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]),
    }
    (root / "jupyterhub_config.py").write_text(CONFIG.format(
        port=port, host=HOST, hub_port=free_port(), api_port=free_port(), chp=str(CHP),
        proxy_pid=str(root / "proxy.pid"), hub_pid=str(root / "hub.pid"),
        db_url=f"sqlite:///{root / 'jupyterhub.sqlite'}",
        cookie_secret=str(root / "cookie_secret"), home=str(root / "home" / "{username}"),
        singleuser=str(VENV_BIN / "jupyterhub-singleuser"), notebooks=str(notebooks),
        environment=environment))
    log = open(root / "jupyterhub.log", "wb")  # noqa: SIM115 - closed in the finalizer
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(root / "jupyterhub_config.py")],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PATH": environment["PATH"]})

    try:
        wait_until_answers(proc, f"http://127.0.0.1:{port}/hub/api/", root / "jupyterhub.log")
        yield {"url": f"http://{HOST}:{port}/", "root": root, "data_dir": data_dir,
               "notebooks": notebooks, "log": root / "jupyterhub.log"}
    finally:
        # The proxy and the single-user servers run in sessions of their own: the hub
        # stops them on SIGTERM; whatever survives it is ended here.
        with contextlib.suppress(psutil.Error):
            started = psutil.Process(proc.pid).children(recursive=True)
        mlflow_magic.stop(data_dir)
        stop_group(proc)
        for child in started:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _, alive = psutil.wait_procs(started, timeout=10)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        log.close()
        mlflow_magic.stop(data_dir)  # in case a kernel started it again while the hub shut down


def log_in(page, hub) -> str:
    """Log in through the dummy authenticator's form; the single-user server's URL."""
    page.goto(f"{hub['url']}hub/login")
    page.fill("input[name='username']", USER)
    page.fill("input[name='password']", "any password")
    page.click("#login_submit, [type='submit']")
    page.wait_for_url(f"**/user/{USER}/lab**", timeout=240_000)
    page.wait_for_selector(".jp-Launcher, .jp-LabShell", timeout=120_000)
    return f"{hub['url']}user/{USER}/"


def open_launcher_tile(page, screenshot: str):
    """Open the launcher's MLflow tile; the frame of its tab, once it shows MLflow."""
    page.locator("[data-command='launcher:create']").first.click()
    card = page.locator(".jp-LauncherCard", has_text="MLflow").first
    card.wait_for(timeout=30_000)
    card.click()
    tile = f"iframe[src$='/user/{USER}/mlflow-magic/tile/']"
    expect_mlflow_in(page, tile, screenshot)
    assert page.frame_locator(tile).get_by_text("Invalid Host header").count() == 0
    return page.locator(tile).element_handle().content_frame()


def experiment(url: str, name: str) -> dict | None:
    """The experiment ``name`` as MLflow's REST API at ``url`` has it, or None."""
    try:
        return rest(url, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


CELLS = [
    "%load_ext mlflow_magic\n%mlflow_server start",
    "import mlflow\nmlflow.set_experiment('hub-traces')\n@mlflow.trace(name='hub_add')\n"
    "def add(a, b):\n    return a + b\nadd(1, 2)",
    "with mlflow.start_run(run_name='hub-run'):\n    mlflow.log_metric('hub_loss', 0.5)",
]


def test_ui_traces_and_writes_behind_a_hub_under_a_public_host(hub, page):
    user_url = log_in(page, hub)
    write_notebook(hub["notebooks"] / "hub.ipynb", CELLS)
    open_and_run_all(page, user_url, "hub.ipynb")

    inline = "iframe.mlflow-magic-ui"
    expect_mlflow_in(page, inline, "hub-inline-ui")
    record = records.read_record(hub["data_dir"])
    assert record is not None
    prefix = f"/user/{USER}/mlflow-magic/proxy/{record.port}/"
    assert page.get_attribute(inline, "src").startswith(prefix)
    frame = page.frame_locator(inline)
    assert frame.get_by_text("Invalid Host header").count() == 0

    # A write from the UI: create an experiment with MLflow's own form.
    try:
        frame.get_by_text("Experiments", exact=True).first.click()
        frame.get_by_role("button", name="Create", exact=True).first.click()
        frame.locator("#experimentName").fill("from-hub-ui")
        frame.get_by_role("dialog").get_by_role("button", name="Create", exact=True).click()
        wait_for(lambda: experiment(record.url, "from-hub-ui"), timeout=30, interval=0.5)
    finally:
        shot(page, "hub-ui-write")

    # The trace view of the second cell, through the same route.
    traces = f"iframe[src*='notebook-trace-renderer'][src^='{prefix}']"
    try:
        page.wait_for_selector(traces, timeout=120_000)
        page.locator(traces).scroll_into_view_if_needed()
        page.frame_locator(traces).get_by_text("hub_add").first.wait_for(timeout=60_000)
    finally:
        shot(page, "hub-trace-view")

    # MLflow's printed run link: the hub's public address, through the route.
    link = page.locator(".jp-OutputArea-output a", has_text="/runs/").first
    link.wait_for(timeout=60_000)
    assert link.get_attribute("href").startswith(f"{hub['url']}user/{USER}/mlflow-magic/proxy/"
                                                 f"{record.port}/#/experiments/")
    with page.context.expect_page(timeout=30_000) as opened:
        link.click()
    try:
        opened.value.get_by_text("hub_loss").first.wait_for(timeout=120_000)
    finally:
        shot(opened.value, "hub-printed-run-link")
        opened.value.close()

    # MLflow's own port still refuses the public name.
    assert as_host(record.url, HOST)[0] == 403

    # The launcher's MLflow tile shows the same server in a JupyterLab tab.
    open_launcher_tile(page, "hub-launcher-tab")
    assert records.read_record(hub["data_dir"]).pid == record.pid


def test_a_write_from_the_launcher_tab_behind_a_hub(hub, page):
    log_in(page, hub)
    frame = open_launcher_tile(page, "hub-launcher-write")
    status = frame.evaluate(
        "fetch('ajax-api/2.0/mlflow/experiments/create', {method: 'POST', headers: "
        "{'Content-Type': 'application/json'}, body: JSON.stringify({name: 'from-hub-tile'})})"
        ".then(r => r.status)")
    assert status == 200
    assert experiment(records.read_record(hub["data_dir"]).url, "from-hub-tile")
