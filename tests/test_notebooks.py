"""The example notebooks run headless (papermill) in a real kernel against a real server,
and read as a record: rendered by nbconvert as GitHub and nbviewer show them."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
from browser_helpers import record_cells, write_notebook
from nbconvert import HTMLExporter

import mlflow_magic

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
#: What a viewer without widget state would show of a widget: none may appear.
WIDGET_REPRS = ("HBox(", "VBox(", "HTML(value=", "IntProgress(", "Button(", "Output(")


def newcomer_env(data_dir: Path, monkeypatch) -> None:
    """``$MLFLOW_PATH`` on a throwaway folder, as a newcomer's kernel runs: the virtualenv's
    ``bin`` is not on ``PATH``."""
    monkeypatch.setenv("MLFLOW_PATH", str(data_dir))
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin))


def run_notebook(name: str, data_dir: Path, monkeypatch, tmp_path: Path) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>`` with papermill, as a pipeline would, and read what it
    saved (widget state is not saved: the outputs alone must tell what happened)."""
    newcomer_env(data_dir, monkeypatch)
    saved = tmp_path / name
    try:
        papermill.execute_notebook(str(NOTEBOOKS / name), str(saved), kernel_name="python3",
                                   cwd=str(NOTEBOOKS), progress_bar=False,
                                   request_save_on_cell_execute=False)
    finally:
        mlflow_magic.stop(data_dir)
    return nbformat.read(saved, as_version=4)


def rendered(nb: nbformat.NotebookNode) -> str:
    """The notebook as nbconvert renders it to HTML (as GitHub and nbviewer show it), with
    the cells' code left out: what a reader sees of the outputs."""
    nb = nbformat.from_dict(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.source = ""
    body, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    return body


def outputs(nb: nbformat.NotebookNode) -> str:
    """Every text and HTML output of the notebook, joined (no widget state: a start in the
    background leaves its final result in its cell's own output)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("evalue", ""))
            for mime in ("text/plain", "text/html"):
                parts.append(out.get("data", {}).get(mime, ""))
    return "\n".join(parts)


def reads_as_a_record(nb: nbformat.NotebookNode) -> str:
    """The rendered notebook, checked for widget reprs; its text for further checks."""
    page = rendered(nb)
    assert not [r for r in WIDGET_REPRS if r in page], [r for r in WIDGET_REPRS if r in page]
    return page


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


@pytest.mark.integration
def test_getting_started(tmp_path, monkeypatch):
    data = tmp_path / "data"
    nb = run_notebook("getting_started.ipynb", data, monkeypatch, tmp_path)
    text = outputs(nb)
    page = reads_as_a_record(nb)
    assert "Started MLflow server at" in page and "ready in" in page
    assert "Started MLflow server at" in text
    assert "MLflow server is running" in text
    assert "Port 99999 is not a valid TCP port" in text
    assert list(data.glob("artifacts/*/*/artifacts/notes.txt"))
    # The script, run with the kernel's own Python, prints the folder's server.
    assert "http://127.0.0.1:" in cell_output(nb, "import sys")
    assert errors(nb) == []  # the bad-input demo prints its one paragraph: Run All goes on
    assert "Traceback" not in text


@pytest.mark.integration
def test_quickstart(tmp_path, monkeypatch):
    data = tmp_path / "data"
    nb = run_notebook("quickstart.ipynb", data, monkeypatch, tmp_path)
    text = outputs(nb)
    page = reads_as_a_record(nb)
    assert "Started MLflow server at" in page and "MLflow run plain-linear" in page
    assert "Started MLflow server at" in text
    assert "MLflow run plain-linear" in text and "FINISHED" in text
    assert errors(nb) == []
    with sqlite3.connect(data / "mlflow.db") as db:
        runs = db.execute("SELECT COUNT(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0]
        models = db.execute("SELECT name FROM registered_models").fetchall()
    assert runs == 4
    assert models == [("diabetes-elasticnet",)]


@pytest.mark.integration
def test_shared_server(tmp_path, monkeypatch):
    data = tmp_path / "data"
    nb = run_notebook("shared_server.ipynb", data, monkeypatch, tmp_path)
    text = outputs(nb)
    reads_as_a_record(nb)
    assert "logged to http://127.0.0.1:" in text  # the script inherited the server
    assert "Reusing MLflow server" in text  # the other process did not start a second one
    assert "from-a-script" in text and "from-the-notebook" in text
    assert errors(nb) == []


def test_team_server_on_postgres_and_s3(tmp_path, monkeypatch, postgres, s3):
    for name, value in s3["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TEAM_BACKEND_STORE_URI", postgres)
    monkeypatch.setenv("TEAM_ARTIFACTS_DESTINATION", "s3://mlflow/team-notebook")
    nb = run_notebook("team_server.ipynb", tmp_path / "data", monkeypatch, tmp_path)
    text = outputs(nb)
    reads_as_a_record(nb)
    assert "Connected to MLflow" in text and "README.txt" in text
    assert "postgres:***@" in text and postgres.split(":")[2].split("@")[0] not in text
    assert "Stopped MLflow server" in text
    assert errors(nb) == []
    keys = [o["Key"] for o in s3["client"].list_objects_v2(
        Bucket="mlflow", Prefix="team-notebook/")["Contents"]]
    assert any(k.endswith("/artifacts/README.txt") for k in keys)


@pytest.mark.integration
def test_a_notebook_run_headless_reads_as_a_record(tmp_path, monkeypatch):
    """``jupyter nbconvert --execute``: the saved notebook, rendered without widget state,
    still says where the server is, that it was ready, and what the run did."""
    data = tmp_path / "data"
    newcomer_env(data, monkeypatch)
    write_notebook(tmp_path / "record.ipynb", record_cells())
    try:
        done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--execute",
                               "--to", "notebook", "--output", "executed.ipynb",
                               str(tmp_path / "record.ipynb")], capture_output=True, text=True,
                              timeout=300)
    finally:
        mlflow_magic.stop(data)
    assert done.returncode == 0, done.stderr
    nb = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    assert errors(nb) == []
    page = reads_as_a_record(nb)
    start, card, panel, status, comparison = (outputs(nbformat.v4.new_notebook(cells=[c]))
                                              for c in nb.cells[1:])
    assert re.search(r"Started MLflow server at .*http://127\.0\.0\.1:\d+", start)
    assert "ready in" in start and str(data) in start and "sqlite:///" in start
    assert "MLflow run fifty-steps" in card and "FINISHED" in card
    assert "param learning_rate" in card and "0.01" in card
    assert card.count("<svg") == 2 and "<title>loss</title>" in card  # a chart per metric
    assert "last 0.02" in card  # the last loss, 1/50
    assert "running" in panel and str(data) in panel and "MLflow control panel" in panel
    assert "MLflow server is running" in status
    assert "<svg" in comparison and "fifty-steps" in comparison
    assert "ready in" in page and "<svg" in page and "MLflow server is running" in page


@pytest.mark.integration
def test_a_start_whose_next_cells_need_no_server_still_saves_its_result(tmp_path, monkeypatch):
    """Headless runners read a cell's output only while they run that cell: the start's last
    update must come before the last cell ends, even if no cell waits for the server."""
    data = tmp_path / "data"
    newcomer_env(data, monkeypatch)
    write_notebook(tmp_path / "quick.ipynb", ["%load_ext mlflow_magic",
                                              "%mlflow_server start --no-ui", "x = 1"])
    try:
        papermill.execute_notebook(str(tmp_path / "quick.ipynb"), str(tmp_path / "out.ipynb"),
                                   kernel_name="python3", progress_bar=False)
    finally:
        mlflow_magic.stop(data)
    start = outputs(nbformat.v4.new_notebook(
        cells=[nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[1]]))
    assert "Started MLflow server at" in start and "ready in" in start, start


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
