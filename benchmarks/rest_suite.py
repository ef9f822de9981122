"""A pytest plugin: MLflow's own REST tests against a server outside the test process.

MLflow's ``tests/tracking/test_rest_tracking.py`` runs its server in a thread of the test
process (``ServerThread``). This plugin puts an external server in its place, on the same
backend store and artifact root the test prepared, so the same tests compare two servers:

    REST_SERVER=plain   `mlflow server` with those stores and the flags mlflow-magic gives it
                        (one worker, no job runner, proxied artifacts): the control
    REST_SERVER=magic   `mlflow-magic start` with the same stores (a private server)

Run from a checkout of MLflow's tests that matches the installed MLflow, with this folder
on ``PYTHONPATH``::

    REST_SERVER=magic python -m pytest -p rest_suite -q -rA tests/tracking/test_rest_tracking.py
    REST_SERVER=plain python -m pytest -p rest_suite -q -rA tests/tracking/test_rest_tracking.py

and compare the PASSED/FAILED lines of both runs. The test process itself has no key and
no setting: it gets in the way any program of the server's user does (README, "Security
model").
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import requests

BIN = os.path.dirname(sys.executable)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _plain(backend: str, root: str, folder: str,
           env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`mlflow server` with the flags mlflow-magic gives it, once it answers."""
    port = _free_port()
    proc = subprocess.Popen(
        [f"{BIN}/mlflow", "server", "--backend-store-uri", backend, "--default-artifact-root",
         root, "--serve-artifacts", "--artifacts-destination", f"{folder}/artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            requests.get(f"{url}/health", timeout=1)
            break
        time.sleep(0.2)
    return proc, url


def _magic(backend: str, root: str, folder: str, env: dict[str, str]) -> str:
    """`mlflow-magic start` on the same stores; its URL, from the line it prints."""
    done = subprocess.run(
        [f"{BIN}/mlflow-magic", "start", "--path", f"{folder}/data", "--backend-store-uri",
         backend, "--default-artifact-root", root, "--artifacts-destination",
         f"{folder}/artifacts", "--idle-timeout", "0"],
        env=env, capture_output=True, text=True, check=True)
    found = re.search(r"MLFLOW_TRACKING_URI=(\S+)", done.stdout)
    assert found, done.stdout
    return found.group(1)


@contextlib.contextmanager
def external(_app: object, _port: int) -> Iterator[str]:
    """In ``ServerThread``'s place: a server of ``REST_SERVER``'s kind on the stores the
    test's fixture initialised, stopped when the test ends."""
    from mlflow.server import handlers

    store: Any = handlers._tracking_store  # the SqlAlchemyStore the fixture made
    backend, root = store.db_uri, store.artifact_root_uri
    folder = tempfile.mkdtemp(prefix="rest-suite-")
    env = {**os.environ, "MLFLOW_MAGIC_STATE_DIR": f"{folder}/state"}
    proc = None
    try:
        if os.environ.get("REST_SERVER", "plain") == "plain":
            proc, url = _plain(backend, root, folder, env)
        else:
            url = _magic(backend, root, folder, env)
        yield url
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:  # stuck in a request (no internet here)
                proc.kill()
                proc.wait()
        else:
            subprocess.run([f"{BIN}/mlflow-magic", "stop", "--path", f"{folder}/data"],
                           env=env, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(session: object, config: object, items: list) -> None:
    """Every test module that serves through ``ServerThread`` serves through
    :func:`external` instead."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and hasattr(module, "ServerThread"):
            module.ServerThread = external
