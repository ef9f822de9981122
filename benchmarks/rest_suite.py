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
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from bench import free_port, wait_health

import mlflow_magic
from mlflow_magic.state import processes


def _plain(backend: str, root: str, folder: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` with the flags mlflow-magic gives it, once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend,
         "--default-artifact-root", root, "--serve-artifacts", "--artifacts-destination",
         str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_health(url, proc)
    return proc, url


@contextlib.contextmanager
def external(_app: object, _port: int) -> Iterator[str]:
    """In ``ServerThread``'s place: a server of ``REST_SERVER``'s kind on the stores the
    test's fixture initialised, stopped (its whole process tree) when the test ends."""
    from mlflow.server import handlers

    store: Any = handlers._tracking_store  # the SqlAlchemyStore the fixture made
    backend, root = store.db_uri, store.artifact_root_uri
    with tempfile.TemporaryDirectory(prefix="rest-suite-") as tmp:
        folder = Path(tmp)
        if os.environ.get("REST_SERVER", "plain") == "plain":
            proc, url = _plain(backend, root, folder)
            try:
                yield url
            finally:  # one stuck in a request (no internet here) is killed after a grace
                top = psutil.Process(proc.pid)
                processes.stop_processes([top, *top.children(recursive=True)])
                proc.wait()
        else:
            data = folder / "data"
            server = mlflow_magic.start(
                data, use=False, backend_store_uri=backend, default_artifact_root=root,
                artifacts_destination=str(folder / "artifacts"), idle_timeout=0).server
            try:
                yield server.url
            finally:
                mlflow_magic.stop(data)


def pytest_collection_modifyitems(session: object, config: object, items: list) -> None:
    """Every test module that serves through ``ServerThread`` serves through
    :func:`external` instead."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and hasattr(module, "ServerThread"):
            module.ServerThread = external
