"""A newcomer's first hour, in a real ipykernel (and papermill, nbclient, the CLI as another
user): every command acts where the user expects, and every mistake reads as one paragraph.

Each test checks what the user sees (the paragraph, no traceback) and what was left running.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
from conftest import Kernel
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import mlflow_magic

pytestmark = pytest.mark.integration


#: What an earlier test of this process may have left in its environment, which a kernel
#: started from it would inherit (``set_experiment`` sets MLFLOW_EXPERIMENT_ID).
CLIENT_CHOICES = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID",
                  "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Two data folders, A (``$MLFLOW_PATH``) and B, for a newcomer's kernel with none of
    MLflow's client choices set; both servers stopped afterwards."""
    for name in CLIENT_CHOICES:
        monkeypatch.delenv(name, raising=False)
    a, b = tmp_path / "A", tmp_path / "B"
    yield a, b
    for folder in (a, b):
        mlflow_magic.stop(folder)


@pytest.fixture
def kernel(folders):
    k = Kernel({"MLFLOW_PATH": str(folders[0])})
    try:
        k.run("%load_ext mlflow_magic")
        yield k
    finally:
        k.close()


def test_commands_without_path_act_on_the_folder_the_kernel_uses(kernel, folders):
    a, b = folders
    for line in ("%mlflow_server start --wait --no-ui",
                 f"%mlflow_server start --wait --no-ui --path {b}"):
        _, errors = kernel.run(line)
        assert errors == []
    shown, errors = kernel.run("%mlflow_server status")
    assert errors == [] and str(b) in shown and str(a) not in shown
    shown, errors = kernel.run("%mlflow_server logs -n 5")
    assert errors == [] and str(b / ".mlflow_magic") in shown
    shown, errors = kernel.run("%mlflow_server stop")
    assert errors == [] and f"the server of {b}" in shown
    assert mlflow_magic.status(a).state == "running"  # the other folder runs on
    assert mlflow_magic.status(b).state == "stopped"
    # After the stop, the kernel still means B (its tracking URI names B's last port).
    shown, _ = kernel.run("%mlflow_server status")
    assert str(b) in shown


NOTEBOOK_CELLS = [
    "%load_ext mlflow_magic",
    "%mlflow_server start --wait --no-ui",
    "%%mlflow_run --name boom\nimport mlflow\nmlflow.log_param('lr', 0.1)\n1/0",
    "print('the next cell ran')",
]


def _failing_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    nbformat.write(nb, path)
    return path


def _failed_cell_shows_card_and_error(nb: nbformat.NotebookNode) -> None:
    code = [c for c in nb.cells if c.cell_type == "code"]  # papermill adds a markdown cell
    cell = next(c for c in code if c.source.startswith("%%mlflow_run"))
    texts = [str(o.get("data", {}).get("text/html", "")) + str(o.get("data", {}).get(
        "text/plain", "")) + str(o.get("evalue", "")) + "".join(o.get("traceback", []))
        for o in cell.outputs]
    joined = "\n".join(texts)
    assert "FAILED" in joined and "boom" in joined  # the card
    assert "ZeroDivisionError" in joined  # the error
    assert code[-1].outputs == []  # Run All stopped there


@pytest.mark.parametrize("runner", ["nbclient", "papermill"])
def test_a_failing_mlflow_run_cell_fails_the_notebook(runner, folders, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_PATH", str(folders[0]))
    source = _failing_notebook(tmp_path / "train.ipynb")
    if runner == "nbclient":
        nb = nbformat.read(source, as_version=4)
        with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
            NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    else:
        saved = tmp_path / "out.ipynb"
        with pytest.raises(papermill.PapermillExecutionError, match="ZeroDivisionError"):
            papermill.execute_notebook(str(source), str(saved), kernel_name="python3",
                                       progress_bar=False)
        nb = nbformat.read(saved, as_version=4)
    _failed_cell_shows_card_and_error(nb)
    runs = mlflow_magic.status(folders[0])
    assert runs.state == "running"
    import mlflow

    client = mlflow.MlflowClient(runs.server.url)
    found = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               filter_string="attributes.run_name = 'boom'")
    assert [r.info.status for r in found] == ["FAILED"]
    assert found[0].data.params == {"lr": "0.1"}


def test_a_privileged_port_is_named_for_what_it_is(tmp_path):
    """Without the right to bind ports below 1024 (a user's shell: here root without
    CAP_NET_BIND_SERVICE, setpriv), ``--port 80`` is refused for what it is: nothing
    holds that port."""
    cli = str(Path(sys.executable).with_name("mlflow-magic"))
    data = tmp_path / "data"
    done = subprocess.run(["setpriv", "--bounding-set", "-net_bind_service", "--inh-caps",
                           "-net_bind_service", cli, "start", "--path", str(data), "--port",
                           "80"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done
    assert "ports below 1024 need root" in done.stderr and "1024 up" in done.stderr
    assert "held by" not in done.stderr and "Traceback" not in done.stderr
    assert not (data / ".mlflow_magic" / "server.json").exists()


def test_every_command_has_its_help_and_a_typo_gets_the_closest_flag(kernel):
    cli = str(Path(sys.executable).with_name("mlflow-magic"))
    printed = subprocess.run([cli, "start", "--help"], capture_output=True, text=True,
                             timeout=60).stdout
    for asked in ("%mlflow_server start --help", "%mlflow_server start -h"):
        shown, errors = kernel.run(asked)
        assert errors == []
        flags = {line.split()[0] for line in shown.splitlines() if line.strip().startswith("--")}
        assert {"--workers", "--idle-timeout", "--sync-to", "--path"} <= flags
        assert flags == {line.split()[0] for line in printed.splitlines()
                         if line.strip().startswith("--")}
    shown, errors = kernel.run("%mlflow_server start --wokers 2")
    # IPython shows a UsageError as one paragraph (no traceback), and the cell fails
    assert shown.startswith("UsageError: ") and "Traceback" not in shown
    assert "did you mean `--workers` for `--wokers`?" in shown
    shown, _ = kernel.run("print(get_ipython().find_line_magic('mlflow_server').__doc__)")
    for flag in ("--idle-timeout", "--lines", "--dry-run", "--view", "--registry-uri"):
        assert flag in shown, flag  # `%mlflow_server?` lists every command's flags


def test_an_unreachable_database_fails_at_once_with_one_paragraph(kernel, folders):
    """A start whose server cannot reach its database (an unknown host) does not wait out
    MLflow's retries: the next MLflow call raises the paragraph, with no stack, and nothing
    is left running."""
    uri = "postgresql://me:db-s3cret@nohost.invalid/runs"
    _, errors = kernel.run(f"%mlflow_server start --backend-store-uri {uri}")
    assert errors == []  # a background start: the cell returns at once
    shown, errors = kernel.run("import mlflow\nmlflow.search_experiments()")
    shown += str([e.get("traceback") for e in errors])
    assert "cannot reach its database, so it was stopped" in shown
    assert "The database host 'nohost.invalid'" in shown
    assert "db-s3cret" not in shown
    assert errors and all(len(e["traceback"]) == 1 for e in errors)  # the paragraph alone
    assert mlflow_magic.status(folders[0]).state == "stopped"


def test_a_restart_says_what_it_changed(kernel):
    _, errors = kernel.run("%mlflow_server start --wait --no-ui")
    assert errors == []
    before = len(kernel.shown)
    _, errors = kernel.run("%mlflow_server restart --workers 2 --wait --no-ui")
    shown = kernel.shown[-1]  # the cell's one output, replaced in place as the restart goes
    assert errors == [] and len(kernel.shown) > before
    assert "Restarted MLflow server at" in shown
    assert "workers 1 → 2" in shown and "Started MLflow" not in shown


def test_compare_with_a_misspelt_metric_names_the_ones_there(kernel):
    _, errors = kernel.run("%mlflow_server start --wait --no-ui")
    assert errors == []
    shown, errors = kernel.run(
        "import mlflow, mlflow_magic\nmlflow.set_experiment('tour')\n"
        "for lr in (0.1, 0.2):\n    with mlflow.start_run():\n"
        "        mlflow.log_metric('loss', lr)\n        mlflow.log_metric('accuracy', 1 - lr)\n"
        "mlflow_magic.compare('tour', metrics=['los'])")
    assert "has the metric 'los'. Did you mean 'loss'?" in shown + str(errors)
    assert "The runs have 'accuracy', 'loss'" in shown + str(errors)
    assert all(not e.get("traceback") or len(e["traceback"]) == 1 for e in errors)


def test_a_folder_switch_carries_the_active_experiment_by_name(kernel, folders):
    b = folders[1]
    _, errors = kernel.run("%mlflow_server start --wait --no-ui")
    assert errors == []
    _, errors = kernel.run("import mlflow\nmlflow.set_experiment('tour')")
    assert errors == []
    shown, errors = kernel.run(f"%mlflow_server start --wait --no-ui --path {b}")
    assert errors == [] and "MLflow's active experiment 'tour' is now the one of that name" \
        in shown
    _, errors = kernel.run("%%mlflow_run --name after-the-switch\nx = 1")
    assert errors == []
    shown, errors = kernel.run(
        "print([(r.info.run_name, mlflow.get_experiment(r.info.experiment_id).name)"
        " for r in mlflow.search_runs(search_all_experiments=True, output_format='list')])")
    assert "('after-the-switch', 'tour')" in shown, shown + str(errors)
    # The kernel's experiment variables mean nothing to a server: not inherited.
    assert "MLFLOW_EXPERIMENT" not in str(mlflow_magic.status(b))


def test_ui_on_a_stopped_server_says_so_with_the_cell_to_run(kernel, folders):
    _, errors = kernel.run("%mlflow_server start --wait --no-ui")
    assert errors == []
    port = mlflow_magic.status(folders[0]).server.port
    _, errors = kernel.run("%mlflow_server stop")
    assert errors == []
    for line in ("%mlflow_server ui", "%mlflow_server ui --experiment nb",
                 "%mlflow_server ui --run 0123456789abcdef"):
        shown, errors = kernel.run(line)
        assert shown.startswith("UsageError: No MLflow server is running for "), (line, shown)
        assert f"{folders[0]} (stopped)" in shown
        assert f"Start it again with `%mlflow_server start --port {port}`" in shown
        assert "MLflow UI:" not in shown and "has no" not in shown
