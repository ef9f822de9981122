"""Where the UI is found and how it is shown (pure logic, no server)."""

from __future__ import annotations

import dataclasses
import html as htmllib
import json
import re
import sys
import types

from mlflow_magic.front import context
from mlflow_magic.front.ui import PROXY_URL_ENV as PROXY
from mlflow_magic.front.ui import UiLocation, UiView, deep_link, ui_location

DIRECT = "http://127.0.0.1:5007"


def test_explicit_template_with_port():
    loc = ui_location(DIRECT, "https://hub.example.org/user/ann/proxy/{port}", environ={})
    assert loc.url == "https://hub.example.org/user/ann/proxy/5007/" and loc.inline


def test_explicit_base_url_gets_proxy_path():
    loc = ui_location(DIRECT, environ={"MLFLOW_MAGIC_PROXY_URL": "/jupyter"})
    assert loc.url == "/jupyter/proxy/5007/"


def test_jupyterhub_prefix():
    loc = ui_location(DIRECT, environ={"JUPYTERHUB_SERVICE_PREFIX": "/user/ann/"})
    assert loc.url == "/user/ann/proxy/5007/"
    # The hub's server unreachable from here: jupyter-server-proxy's route, as a fallback.


def test_printed_links_go_to_a_full_address_where_one_is_known(tmp_path, monkeypatch):
    """MLflow's printed links are text: they need a full address (a hub's public URL), else
    the route is all there is (the notebook's page then says which cell shows the run)."""
    hub = {"JUPYTERHUB_SERVICE_PREFIX": "/user/ann/", "JUPYTERHUB_API_TOKEN": "t",
           "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:1/user/ann/"}
    # the hub's server answers on mlflow_magic's route (tests/test_hub.py asks a real one)
    monkeypatch.setattr("mlflow_magic.front.ui._proxy_route",
                        lambda url, token: "mlflow-magic/proxy/")
    public = ui_location(DIRECT, environ={
        **hub, "JUPYTERHUB_PUBLIC_URL": "https://hub.example.org/user/ann/"})
    assert public.url == "/user/ann/mlflow-magic/proxy/5007/"
    assert public.printed_url == "https://hub.example.org/user/ann/mlflow-magic/proxy/5007/"
    assert ui_location(DIRECT, environ={**hub, "JUPYTERHUB_PUBLIC_URL": ""}).printed_url == (
        "/user/ann/mlflow-magic/proxy/5007/")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    assert ui_location(DIRECT, environ={}).printed_url is None  # a terminal: as MLflow prints


def test_no_jupyter_gives_a_direct_link(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    loc = ui_location(DIRECT, environ={})
    assert loc == UiLocation(f"{DIRECT}/", f"{DIRECT}/", False)
    html = UiView(loc)._repr_html_()
    assert "<iframe" not in html and "MLFLOW_MAGIC_PROXY_URL" in html
    assert str(UiView(loc)) == f"MLflow UI: {DIRECT}/"


def test_proxied_view_embeds_an_iframe_with_deep_link():
    loc = UiLocation("/proxy/5007/", f"{DIRECT}/", True)
    view = UiView(loc, deep_link("3", "abc"), height=400)
    html = view._repr_html_()
    assert 'src="/proxy/5007/#/experiments/3/runs/abc"' in html
    assert 'height="400"' in html
    assert 'data-commandlinker-command="server-proxy:open"' in html
    args = json.loads(htmllib.unescape(re.search(r'data-commandlinker-args="([^"]+)"',
                                                 html).group(1)))
    assert args == {"id": "mlflow-magic:/proxy/5007/#/experiments/3/runs/abc", "title": "MLflow",
                    "url": "/proxy/5007/#/experiments/3/runs/abc", "newBrowserTab": False}


def test_deep_links():
    assert deep_link() == ""
    assert deep_link("7") == "#/experiments/7/runs"
    assert deep_link("7", view="traces") == "#/experiments/7/traces"
    assert deep_link("7", view="overview") == "#/experiments/7"
    assert deep_link(view="models") == "#/models"


def test_a_tracking_uri_with_a_path_or_without_a_port_has_a_location():
    loc = ui_location("http://127.0.0.1:5000/prefix", environ={PROXY: "/base/"})
    assert loc.url == "/base/proxy/5000/"
    assert ui_location("http://localhost/", environ={PROXY: "/b/"}).url == "/b/proxy/80/"


KERNEL = context.Context("notebook", widgets=False)
TERMINAL = context.Context("terminal", widgets=False)

#: What VS Code's Jupyter extension gives the Python kernels it starts (no Jupyter server).
VSCODE_KERNEL_ENV = {"PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING": "1", "VSCODE_PID": "4242",
                     "VSCODE_CWD": "/home/ann", "ELECTRON_RUN_AS_NODE": "1",
                     "VSCODE_IPC_HOOK": "/run/user/1000/vscode-ipc.sock"}


def test_the_front_end_is_told_by_the_kernels_environment(monkeypatch):
    from mlflow_magic.front.context import COLAB, VSCODE, front_end

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert front_end(VSCODE_KERNEL_ENV, kernel=True) == VSCODE
    assert front_end({"VSCODE_PID": "1"}, kernel=True) == VSCODE  # an older extension
    # JupyterLab started from VS Code's terminal: its kernels are the Jupyter server's
    assert front_end({**VSCODE_KERNEL_ENV, "JPY_SESSION_NAME": "/home/ann/a.ipynb"},
                     kernel=True) is None
    # IPython or mlflow-magic in VS Code's terminal: no kernel, links that outlive it
    assert front_end(VSCODE_KERNEL_ENV, kernel=False) is None
    assert front_end({}, kernel=True) is None
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert front_end({}, kernel=True) == COLAB


def test_vscode_frames_the_server_itself_with_a_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(context, "current", lambda: KERNEL)
    loc = ui_location(DIRECT, environ=VSCODE_KERNEL_ENV)
    assert loc.url == f"{DIRECT}/" and loc.inline and loc.needs_pass and not loc.needs_login
    page = UiView(loc)._repr_html_()
    assert "<iframe" in page and "JupyterLab" not in page and "MLFLOW_MAGIC_PROXY_URL" not in page
    passed = UiView(dataclasses.replace(loc, url=f"{DIRECT}/mlflow-magic-pass/p/"), "#/models")
    assert str(passed) == f"MLflow UI: {DIRECT}/mlflow-magic-pass/p/#/models"
    monkeypatch.setattr(context, "current", lambda: TERMINAL)  # `mlflow-magic ui` there
    assert ui_location(DIRECT, environ=VSCODE_KERNEL_ENV).needs_login


def test_colab_frames_the_server_through_its_port_proxy(tmp_path, monkeypatch):
    """Colab's front end answers ``google.colab.kernel.proxyPort(port)`` with an https
    address (a stand-in here: there is no Colab on this machine)."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    asked = []
    output = types.ModuleType("google.colab.output")

    def eval_js(script):
        asked.append(script)
        return "https://5007-m-s-abc.colab.googleusercontent.com/"

    output.eval_js = eval_js
    colab = types.ModuleType("google.colab")
    colab.output = output
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(context, "current", lambda: KERNEL)
    monkeypatch.setitem(sys.modules, "google.colab.output", output)
    loc = ui_location(DIRECT, environ={})
    assert loc.url == "https://5007-m-s-abc.colab.googleusercontent.com/"
    assert loc.inline and loc.needs_pass and asked == [
        "google.colab.kernel.proxyPort(5007, {'cache': true})"]
    output.eval_js = lambda script: None  # Colab's front end did not answer
    assert ui_location(DIRECT, environ={}) == UiLocation(f"{DIRECT}/", f"{DIRECT}/", False)
