"""The one-process launcher keeps every feature of ``mlflow server``.

``mlflow_magic.server.serve`` relies on how MLflow launches uvicorn; the first test
fails loudly when an MLflow release changes that (the server still works, as
a slower two-process launch, but this test says the fast path is gone).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import as_host, fetch, owner, rest, serving, wait_for

import mlflow_magic
from mlflow_magic.contract import IN_PROCESS_MARKER, OWN_LAUNCHER_MARKER
from mlflow_magic.server.serve import _is_uvicorn_command


def test_default_server_is_one_process_serving_in_process(shared_server):
    proc = serving(shared_server)  # the MLflow server (its keeper only holds the port)
    assert proc.children(recursive=True) == [], "MLflow spawned a second process"
    log = Path(shared_server.log_path).read_text()
    assert IN_PROCESS_MARKER in log, (
        "mlflow_magic.server.serve could not run uvicorn in-process: the installed MLflow changed "
        "how `mlflow server` launches uvicorn; update mlflow_magic/serve.py (servers still "
        "start, through MLflow's slower launcher)")
    assert OWN_LAUNCHER_MARKER not in log


@pytest.mark.integration
def test_uvicorn_command_shape_is_recognised():
    import sys

    from mlflow.server import _build_uvicorn_command

    cmd = _build_uvicorn_command(None, "127.0.0.1", 5000, 1, "mlflow.server.fastapi_app:app")
    assert cmd[0] == sys.executable and _is_uvicorn_command(cmd)


def test_proxied_artifacts_and_model_registry(shared_server):
    url = shared_server.url
    name = "registry-check"
    rest(url, "/api/2.0/mlflow/registered-models/create", {"name": name})
    found = json.loads(fetch(f"{url}/api/2.0/mlflow/registered-models/get?name={name}"))
    assert found["registered_model"]["name"] == name
    req = urllib.request.Request(f"{url}/api/2.0/mlflow-artifacts/artifacts/check/file.txt",
                                 data=b"proxied", method="PUT", headers=owner(url))
    urllib.request.urlopen(req, timeout=10).close()
    assert fetch(f"{url}/api/2.0/mlflow-artifacts/artifacts/check/file.txt") == b"proxied"
    stored = f"{shared_server.settings['artifacts_destination']}/check/file.txt"
    assert Path(stored).read_bytes() == b"proxied"


@pytest.mark.integration
def test_workers_flag_starts_that_many_workers(folder):
    server = mlflow_magic.start(folder, use=False, workers=2).server

    def two_workers():  # uvicorn spawns workers (beside multiprocessing's resource tracker)
        kids = [p for p in serving(server).children()
                if "spawn_main" in " ".join(p.cmdline())]
        return kids if len(kids) >= 2 else None

    assert len(wait_for(two_workers)) == 2
    for _ in range(4):
        assert fetch(f"{server.url}/health") == b"OK"
        assert RELATIVE_BASE in fetch(f"{server.url}/{RENDERER}")  # from either worker


RENDERER = "static-files/lib/notebook-trace-renderer/index.html"
#: The trace renderer's page made relative (serve.relative_renderer_page): it works under
#: a proxy prefix (Jupyter, JupyterHub).
RELATIVE_BASE = b'<base href="../../../">'


@pytest.mark.integration
def test_passthrough_arguments_reach_mlflow_server(folder, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    server = mlflow_magic.start(folder, use=False,
                                extra_args=("--expose-prometheus", str(metrics_dir))).server
    fetch(f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1")
    assert b"# TYPE" in fetch(f"{server.url}/metrics")
    assert "--expose-prometheus" in " ".join(server.command)
    # Prometheus is set up when mlflow.server is imported: MLflow's own launcher runs it.
    assert f"{OWN_LAUNCHER_MARKER}: --expose-prometheus" in Path(server.log_path).read_text()
    assert RELATIVE_BASE in fetch(f"{server.url}/{RENDERER}")  # MLflow's launcher, our app


def test_security_middleware_is_on(shared_server, folder):
    """Host check and frame options, as in MLflow's own server; --allowed-hosts opens it."""
    status_for = as_host
    assert status_for(shared_server.url, "evil.example.com")[0] == 403
    code, frame = status_for(shared_server.url, "localhost:5000")
    assert code == 200 and frame == "SAMEORIGIN"
    opened = mlflow_magic.start(folder, use=False, allowed_hosts="hub.example.org").server
    assert status_for(opened.url, "hub.example.org")[0] == 200
    assert status_for(opened.url, "evil.example.com")[0] == 403


@pytest.mark.integration
def test_job_runner_only_on_request(folder):
    server = mlflow_magic.start(folder, use=False, jobs=True).server
    consumers = wait_for(lambda: [p for p in serving(server).children(recursive=True)
                                  if "huey" in " ".join(p.cmdline())], timeout=60)
    assert consumers
    assert fetch(f"{server.url}/health") == b"OK"
