"""The UI through a real Jupyter server with jupyter-server-proxy."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import psutil
import requests
from conftest import BROWSER_MARKS, serve_processes

import mlflow_magic
from mlflow_magic.jupyter.launcher import setup_mlflow
from mlflow_magic.security import ports
from mlflow_magic.state import records


def test_entry_point_is_a_valid_server_process():
    """jupyter-server-proxy builds its ServerProcess from the entry point, as here."""
    import warnings

    from jupyter_server_proxy.config import ServerProcess

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecated or unknown setting fails the test
        server = ServerProcess(name="mlflow", **setup_mlflow())
    assert server.timeout >= 60 and not server.new_browser_tab
    assert server.launcher_entry.title == "MLflow"
    assert server.launcher_entry.path_info == "mlflow-magic/tile/"  # extension.TileHandler
    assert Path(server.launcher_entry.icon_path).read_text().lstrip().startswith("<svg")
    command = server.command
    assert command[command.index("--unix-socket") + 1] == "{unix_socket}"
    assert "mlflow_magic.jupyter.forwarder" in command
    # Its settings are its arguments (here no Jupyter server runs: the defaults).
    assert command[command.index("--route") + 1] == "/mlflow-magic/proxy/"
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
    record = records.read_record(data)
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
    mlflow_magic.stop(data)
    again = requests.get(f"{base}mlflow/api/2.0/mlflow/experiments/get-by-name",
                         params={"experiment_name": "via-proxy"}, headers=auth, timeout=150)
    assert again.status_code == 200
    assert records.read_record(data).pid != record.pid


def test_the_tile_opens_the_folders_server_on_the_loopback_route(jupyter):
    base, auth, data = jupyter["url"], jupyter["auth"], jupyter["data_dir"]
    anonymous = requests.get(f"{base}mlflow-magic/tile/", allow_redirects=False, timeout=30)
    assert anonymous.status_code in (302, 401, 403)
    page = requests.get(f"{base}mlflow-magic/tile/", headers=auth, timeout=150)
    record = records.read_record(data)
    assert page.status_code == 200 and "<title>MLflow</title>" in page.text
    assert page.url == f"{base}mlflow-magic/proxy/{record.port}/"
    again = requests.get(f"{base}mlflow-magic/tile/", headers=auth, timeout=30)
    assert again.url == page.url and records.read_record(data).pid == record.pid  # reused


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
    # jupyter-server-proxy's generic route adds nothing: a browser there needs the owner's UI
    # link, whose one-time login sets a cookie for that route's path alone.
    generic = f"{base}proxy/{shared_server.port}/"
    assert requests.get(generic, headers={**auth, **BROWSER_MARKS},
                        timeout=30).status_code == 401
    browser = requests.Session()
    page = browser.get(generic + ports.login_query(shared_server.url), headers=auth,
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


class PeakMemory:
    """The highest RSS of a process while the block runs (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.before = self.proc.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 2**20


BIG = 300 * 2**20


def test_big_artifacts_stream_through_every_route_with_flat_memory(jupyter, tmp_path):
    """300 MB down and up through the Jupyter route, the tile's and /mlflow/: Jupyter's
    memory stays flat, and what arrives is what was sent."""
    server = mlflow_magic.start(jupyter["data_dir"], use=False).server  # the tile's folder
    stored = Path(server.settings["artifacts_destination"]) / "big" / "model.bin"
    stored.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(stored, "wb") as fh:
        for i in range(BIG // 2**20):
            block = hashlib.sha256(str(i).encode()).digest() * (2**20 // 32)
            fh.write(block)
            digest.update(block)
    base, auth = jupyter["url"], jupyter["auth"]
    artifact = "api/2.0/mlflow-artifacts/artifacts/big/model.bin"
    for route in (f"mlflow-magic/proxy/{server.port}/", "mlflow/"):
        got = hashlib.sha256()
        with PeakMemory(jupyter["pid"]) as memory, requests.get(
                f"{base}{route}{artifact}", headers=auth, stream=True, timeout=300) as resp:
            assert resp.status_code == 200
            assert f"mlflow-magic/proxy/{server.port}/{artifact}" in resp.url  # /mlflow/ too
            for chunk in resp.iter_content(2**20):
                got.update(chunk)
        assert got.hexdigest() == digest.hexdigest(), route
        assert memory.growth_mb <= 64, f"{route}: Jupyter grew {memory.growth_mb:.0f} MB"

    def body():
        with open(stored, "rb") as fh:
            while chunk := fh.read(2**20):
                yield chunk

    with PeakMemory(jupyter["pid"]) as memory:
        up = requests.put(f"{base}mlflow-magic/proxy/{server.port}/api/2.0/mlflow-artifacts/"
                          "artifacts/big/uploaded.bin", data=body(), timeout=300,
                          headers={**auth, "Content-Type": "application/octet-stream"})
    assert up.status_code == 200, up.text
    assert memory.growth_mb <= 64, f"upload: Jupyter grew {memory.growth_mb:.0f} MB"
    uploaded = stored.with_name("uploaded.bin")
    with open(uploaded, "rb") as fh:
        assert hashlib.file_digest(fh, "sha256").hexdigest() == digest.hexdigest()
    stored.unlink()
    uploaded.unlink()


def test_a_stuck_request_holds_up_nothing_else(jupyter, folder, stub):
    """One request MLflow never answers (30 s) does not block the others through Jupyter."""
    stub("serve")
    server = mlflow_magic.start(folder, use=False).server
    route = f"{jupyter['url']}mlflow-magic/proxy/{server.port}/"
    stuck = threading.Thread(target=lambda: requests.get(f"{route}slow", timeout=60,
                                                         headers=jupyter["auth"]))
    stuck.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    for _ in range(5):
        assert requests.get(f"{route}health", headers=jupyter["auth"], timeout=10).text == "OK"
    assert time.monotonic() - t0 < 5
    mlflow_magic.stop(folder)
    stuck.join(60)
