"""The example notebooks run end to end in a real kernel against a real server."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from mlflow_magic import manager

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(name: str, data_dir: Path, monkeypatch) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>`` with ``$MLFLOW_PATH`` on a throwaway folder, as a
    newcomer's kernel runs it: the virtualenv's ``bin`` is not on ``PATH``."""
    monkeypatch.setenv("MLFLOW_PATH", str(data_dir))
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        manager.stop(data_dir)
    return nb


def outputs(nb: nbformat.NotebookNode) -> str:
    """Every text and HTML output of the notebook, joined, with the final text of its
    widgets (a start in the background shows its result in a widget when it ends)."""
    parts = widget_texts(nb)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("evalue", ""))
            for mime in ("text/plain", "text/html"):
                parts.append(out.get("data", {}).get(mime, ""))
    return "\n".join(parts)


def widget_texts(nb: nbformat.NotebookNode) -> list[str]:
    """The ``value`` of every widget, as nbclient saved their state at the end of the run."""
    state = nb.metadata.get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [m["state"]["value"] for m in state.values()
            if isinstance(m.get("state", {}).get("value"), str)]


def errors(nb: nbformat.NotebookNode) -> list[str]:
    """Every error a cell showed: tracebacks, and shell lines that failed."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"{out.get('ename')}: {out.get('evalue')}")
            text = out.get("text", "")
            if any(sign in text for sign in ("command not found", "No module named",
                                             "Connection refused", "Retrying (Retry(")):
                found.append(text)
    return found


def cell_output(nb: nbformat.NotebookNode, source_start: str) -> str:
    """The text output of the code cell whose source starts with ``source_start``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(source_start):
            return outputs(nbformat.v4.new_notebook(cells=[cell]))
    raise AssertionError(f"no cell starts with {source_start!r}")


def test_getting_started(tmp_path, monkeypatch):
    data = tmp_path / "data"
    nb = run_notebook("getting_started.ipynb", data, monkeypatch)
    text = outputs(nb)
    assert "Started MLflow server at" in text
    assert "MLflow server is running" in text
    assert "Port 99999 is not a valid TCP port" in text
    assert list(data.glob("artifacts/*/*/artifacts/notes.txt"))
    # The script, run with the kernel's own Python, prints the folder's server.
    assert "http://127.0.0.1:" in cell_output(nb, "import sys")
    assert errors(nb) == []  # the bad-input demo is a one-paragraph UsageError, not a traceback
    assert "Traceback" not in text


def test_quickstart(tmp_path, monkeypatch):
    data = tmp_path / "data"
    nb = run_notebook("quickstart.ipynb", data, monkeypatch)
    text = outputs(nb)
    assert "Started MLflow server at" in text
    assert "MLflow run plain-linear" in text and "FINISHED" in text
    assert errors(nb) == []
    with sqlite3.connect(data / "mlflow.db") as db:
        runs = db.execute("SELECT COUNT(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0]
        models = db.execute("SELECT name FROM registered_models").fetchall()
    assert runs == 4
    assert models == [("diabetes-elasticnet",)]


def test_shared_server(tmp_path, monkeypatch):
    data = tmp_path / "data"
    nb = run_notebook("shared_server.ipynb", data, monkeypatch)
    text = outputs(nb)
    assert "logged to http://127.0.0.1:" in text  # the script inherited the server
    assert "Reusing MLflow server" in text  # the other process did not start a second one
    assert "from-a-script" in text and "from-the-notebook" in text
    assert errors(nb) == []


def test_team_server_on_postgres_and_s3(tmp_path, monkeypatch, postgres, s3):
    for name, value in s3["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TEAM_BACKEND_STORE_URI", postgres)
    monkeypatch.setenv("TEAM_ARTIFACTS_DESTINATION", "s3://mlflow/team-notebook")
    nb = run_notebook("team_server.ipynb", tmp_path / "data", monkeypatch)
    text = outputs(nb)
    assert "Connected to MLflow" in text and "README.txt" in text
    assert "postgres:***@" in text and postgres.split(":")[2].split("@")[0] not in text
    assert "Stopped MLflow server" in text
    assert errors(nb) == []
    keys = [o["Key"] for o in s3["client"].list_objects_v2(
        Bucket="mlflow", Prefix="team-notebook/")["Contents"]]
    assert any(k.endswith("/artifacts/README.txt") for k in keys)


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
