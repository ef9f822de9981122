"""The UI through a real Jupyter server with jupyter-server-proxy."""

from __future__ import annotations

from pathlib import Path

import requests
from conftest import serve_processes

import mlflow_magic
from mlflow_magic import access, manager, registry
from mlflow_magic.proxy import setup_mlflow


def test_entry_point_is_a_valid_server_process():
    """jupyter-server-proxy builds its ServerProcess from the entry point, as here."""
    import warnings

    from jupyter_server_proxy.config import ServerProcess

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecated or unknown setting fails the test
        server = ServerProcess(name="mlflow", **setup_mlflow())
    assert server.timeout >= 60 and not server.new_browser_tab
    assert server.launcher_entry.title == "MLflow"
    assert server.launcher_entry.path_info == "mlflow-magic/tile/"  # serverext.TileHandler
    assert Path(server.launcher_entry.icon_path).read_text().lstrip().startswith("<svg")
    assert server.command[-1] == "{unix_socket}" and "mlflow_magic.forwarder" in server.command
    assert server.unix_socket is True  # no port another user could take or reach


def test_servers_info_lists_mlflow(jupyter):
    info = requests.get(f"{jupyter['url']}server-proxy/servers-info", headers=jupyter["auth"],
                        timeout=10).json()
    names = [s["name"] for s in info["server_processes"]]
    assert "mlflow" in names


def test_launcher_route_and_magic_share_one_server(jupyter):
    base, auth, data = jupyter["url"], jupyter["auth"], jupyter["data_dir"]
    # The launcher tile first: /mlflow/ starts the folder's server, detached and shared.
    page = requests.get(f"{base}mlflow/", headers=auth, timeout=150)
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text
    record = registry.read_record(data)
    assert record is not None

    # Then the magic (any kernel): it reuses that server.
    result = mlflow_magic.start(data, use=False)
    assert type(result).__name__ == "Reused" and result.server.pid == record.pid

    # What one side writes, the other side sees.
    created = requests.post(f"{base}mlflow-magic/proxy/{record.port}/api/2.0/mlflow/"
                            "experiments/create", json={"name": "via-proxy"}, headers=auth,
                            timeout=30)
    assert created.status_code == 200, created.text
    via_named = requests.get(f"{base}mlflow/api/2.0/mlflow/experiments/get-by-name",
                             params={"experiment_name": "via-proxy"}, headers=auth, timeout=30)
    assert via_named.json()["experiment"]["experiment_id"] == created.json()["experiment_id"]
    assert len(serve_processes(str(data))) == 1

    # After a stop, the tile brings the folder's server back.
    manager.stop(data)
    again = requests.get(f"{base}mlflow/api/2.0/mlflow/experiments/get-by-name",
                         params={"experiment_name": "via-proxy"}, headers=auth, timeout=150)
    assert again.status_code == 200
    assert registry.read_record(data).pid != record.pid


def test_the_tile_opens_the_folders_server_on_the_loopback_route(jupyter):
    base, auth, data = jupyter["url"], jupyter["auth"], jupyter["data_dir"]
    anonymous = requests.get(f"{base}mlflow-magic/tile/", allow_redirects=False, timeout=30)
    assert anonymous.status_code in (302, 401, 403)
    page = requests.get(f"{base}mlflow-magic/tile/", headers=auth, timeout=150)
    record = registry.read_record(data)
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text
    assert page.url == f"{base}mlflow-magic/proxy/{record.port}/"
    again = requests.get(f"{base}mlflow-magic/tile/", headers=auth, timeout=30)
    assert again.url == page.url and registry.read_record(data).pid == record.pid  # reused


def test_proxy_serves_ui_and_rest_and_requires_the_token(jupyter, shared_server):
    base, auth = jupyter["url"], jupyter["auth"]
    for route in ("mlflow-magic/proxy/", "proxy/"):
        search = f"{base}{route}{shared_server.port}/api/2.0/mlflow/experiments/search"
        anonymous = requests.get(search, allow_redirects=False, timeout=30)
        assert anonymous.status_code in (302, 401, 403)
        assert "experiments" not in anonymous.text
    # Our route adds the folder's key: the UI and REST work with Jupyter's login alone.
    ours = f"{base}mlflow-magic/proxy/{shared_server.port}/"
    ui = requests.get(ours, headers=auth, timeout=30)
    assert ui.status_code == 200 and "<title>MLflow</title>" in ui.text
    rest = requests.get(f"{ours}api/2.0/mlflow/experiments/search", params={"max_results": 5},
                        headers=auth, timeout=30)
    assert rest.status_code == 200 and "experiments" in rest.json()
    # jupyter-server-proxy's generic route adds nothing: the owner's UI link carries a
    # one-time login, which sets a cookie for that route's path alone.
    generic = f"{base}proxy/{shared_server.port}/"
    assert requests.get(generic, headers=auth, timeout=30).status_code == 401
    browser = requests.Session()
    page = browser.get(generic + access.login_query(shared_server.url), headers=auth,
                       timeout=30)
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text
    assert page.url == generic  # the code is gone from the address
    assert [c.path for c in browser.cookies if c.name.startswith("mlflow-magic-")] == [
        f"/proxy/{shared_server.port}"]
    assert browser.get(f"{generic}api/2.0/mlflow/experiments/search", headers=auth,
                       params={"max_results": 5}, timeout=30).status_code == 200


def test_a_stopped_servers_ui_explains_itself_and_comes_back(jupyter, folder):
    """An inline UI or tab reopened after its server stopped: our page, not a proxy error;
    the cell it names brings the UI back at the same address."""
    server = mlflow_magic.start(folder, use=False).server
    route = f"{jupyter['url']}mlflow-magic/proxy/{server.port}/"
    assert requests.get(route, headers=jupyter["auth"], timeout=30).status_code == 200
    mlflow_magic.stop(folder)
    page = requests.get(route, headers=jupyter["auth"], timeout=30)
    assert page.status_code == 503 and "This MLflow server is not running" in page.text
    assert str(folder) in page.text and "Internal Server Error" not in page.text
    cell = f"%mlflow_server start --path {folder} --port {server.port}"
    assert cell in page.text and 'http-equiv="refresh"' in page.text
    mlflow_magic.start(folder, use=False, port=server.port)  # what the page says to run
    again = requests.get(route, headers=jupyter["auth"], timeout=30)
    assert again.status_code == 200 and "<title>MLflow</title>" in again.text
