"""The mlflow-magic console script, as a terminal user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_magic.state import records


def cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("mlflow-magic") or str(Path(sys.executable).parent / "mlflow-magic")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=180,
                          env=os.environ.copy())


@pytest.mark.integration
def test_start_reuse_status_stop(tmp_path):
    data = str(tmp_path / "d")
    try:
        first = cli("start", "--path", data)
        assert first.returncode == 0, first.stderr
        assert "Started MLflow server at" in first.stdout
        assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:" in first.stdout
        again = cli("start", "--path", data)
        assert "Reusing MLflow server" in again.stdout
        status = cli("status", "--path", data)
        assert "running" in status.stdout and data in status.stdout
        listed = cli("list")
        assert data in listed.stdout
    finally:
        stop = cli("stop", "--path", data)
    assert "Stopped MLflow server" in stop.stdout
    assert records.read_record(tmp_path / "d") is None


@pytest.mark.integration
def test_bad_input_exits_with_a_message(tmp_path):
    done = cli("start", "--path", str(tmp_path), "--port", "99999")
    assert done.returncode == 1
    assert done.stderr.startswith("mlflow-magic: Port 99999 is not a valid TCP port")
    assert "Traceback" not in done.stderr
    usage = cli("strat")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


@pytest.mark.integration
def test_help_lists_commands():
    done = cli("--help")
    for word in ("start", "stop", "status", "list", "logs", "connect"):
        assert word in done.stdout
