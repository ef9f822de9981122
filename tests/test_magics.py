"""The %mlflow_server magic in a real IPython shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from mlflow_magic.state import records


def ipython(*lines: str, **env: str) -> subprocess.CompletedProcess:
    """Run lines in a fresh IPython process, as a user would type them."""
    code = "\n".join(lines)
    return subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor",
                           "-c", code], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **env})


@pytest.mark.integration
def test_load_ext_registers_the_magic_without_importing_mlflow():
    done = ipython("%load_ext mlflow_magic",
                   "import sys; print('mlflow' in sys.modules, 'mlflow_server' in "
                   "get_ipython().magics_manager.magics['line'])")
    assert done.stdout.strip().splitlines()[-1] == "False True", done.stderr


def test_help_lists_every_subcommand_and_flag(ip):
    doc = ip.find_line_magic("mlflow_server").__doc__
    for word in ("start", "stop", "restart", "status", "list", "logs", "connect", "--path",
                 "MLFLOW_PATH"):
        assert word in doc


@pytest.mark.parametrize(("line", "words"), [
    ("strat", ["invalid choice", "strat", "%mlflow_server?"]),
    ("start --no-such-flag", ["unrecognized arguments", "--no-such-flag"]),
    ("start --port abc", ["invalid int value", "abc"]),
    ("start --port 0", ["Port 0", "65535"]),
    ("start --sqlite --file-store", ["--sqlite", "--file-store"]),
    ("start --backend-store-uri mongodb://h/db", ["mongodb"]),
    ("status -- --workers 2", ["after `--`", "start"]),
    ("logs -n -3", ["-n/--lines"]),
    ("connect ftp://example.org", ["http(s) URL"]),
])
def test_bad_input_is_a_usage_error(ip, line, words):
    default_folder = Path(os.environ["MLFLOW_PATH"])
    existed = default_folder.exists()
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("mlflow_server", f"{line}")
    for word in words:
        assert word in str(info.value)
    assert default_folder.exists() == existed  # nothing created for the folder the line names
    assert records.read_record(default_folder) is None


@pytest.mark.integration
def test_errors_print_one_paragraph_and_no_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = ipython("%load_ext mlflow_magic", f"%mlflow_server start --path {blocker}/data")
    out = done.stdout + done.stderr
    assert "UsageError: The data folder" in out and "--path" in out
    assert "Traceback" not in out


@pytest.mark.integration
def test_start_status_stop_through_the_magic(tmp_path):
    data = tmp_path / "data"
    done = ipython(
        "%load_ext mlflow_magic",
        f"%mlflow_server start --path {data}",
        "import os; print('URI', os.environ['MLFLOW_TRACKING_URI'])",
        "import mlflow; mlflow.set_experiment('from-magic'); print('EXP', "
        "mlflow.get_experiment_by_name('from-magic').experiment_id)",
        f"%mlflow_server status --path {data}",
        f"%mlflow_server logs --path {data} -n 5",
        f"%mlflow_server stop --path {data}",
    )
    out = done.stdout
    assert "Traceback" not in out + done.stderr, out + done.stderr
    assert "Started MLflow server at http://127.0.0.1:" in out
    assert "URI http://127.0.0.1:" in out and "EXP 1" in out
    assert "MLflow server is running" in out
    assert "Stopped MLflow server" in out
    assert records.read_record(data) is None


@pytest.fixture
def on_shared_server(shared_server, clean_tracking_env, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_server.url)
    import mlflow

    mlflow.set_tracking_uri(shared_server.url)
    return shared_server


def last_card(ip, line: str, cell: str, fails: bool = False):
    """Run %%mlflow_run and return the RunCard it displayed (``fails``: the cell's error
    fails the magic's cell too, as a plain ``with mlflow.start_run()`` cell would)."""
    from IPython.core.error import UsageError

    from mlflow_magic.notebook import runs

    shown = []
    ip.display_pub.publish = lambda data, **kw: shown.append(data)  # capture display()
    try:
        if fails:
            with pytest.raises(UsageError, match=r"The cell failed with ZeroDivisionError: "
                                                 r"division by zero .* marked FAILED"):
                ip.run_cell_magic("mlflow_run", line, cell)
        else:
            ip.run_cell_magic("mlflow_run", line, cell)
    finally:
        del ip.display_pub.publish
    texts = [d.get("text/plain", "") for d in shown]
    cards = [t for t in texts if t.startswith("MLflow run")]
    assert cards, texts
    return cards[-1], runs


def test_mlflow_run_logs_a_finished_run_with_a_card(ip, on_shared_server):
    import mlflow

    card, _ = last_card(ip, "--experiment cell-runs --name first --tags team=vision",
                        "import mlflow\nmlflow.log_param('alpha', 0.5)\n"
                        "mlflow.log_metric('rmse', 3.0)\nmlflow.log_metric('rmse', 2.0)\n"
                        "mlflow.log_text('x', 'a/b.txt')")
    assert "'first'" in card and "FINISHED" in card
    assert "param alpha" in card and "0.5" in card and "metric rmse" in card and " 2" in card
    assert "artifacts            1" in card
    run = mlflow.search_runs(experiment_names=["cell-runs"], output_format="list")[0]
    assert run.data.tags["team"] == "vision" and run.info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_mlflow_run_marks_a_failing_cell_failed(ip, on_shared_server):
    import mlflow

    card, _ = last_card(ip, "--experiment cell-runs --name broken", "1 / 0", fails=True)
    assert "FAILED" in card
    run = mlflow.search_runs(experiment_names=["cell-runs"], filter_string=
                             "tags.mlflow.runName = 'broken'", output_format="list")[0]
    assert run.info.status == "FAILED"
    assert mlflow.active_run() is None


def test_mlflow_run_nests_under_an_active_run(ip, on_shared_server):
    import mlflow

    with mlflow.start_run(run_name="parent") as parent:
        card, _ = last_card(ip, "--name child", "x = 1")
        assert mlflow.active_run().info.run_id == parent.info.run_id
    assert f"parent run           {parent.info.run_id}" in card
    child = mlflow.search_runs(filter_string="tags.mlflow.runName = 'child'",
                               search_all_experiments=True, output_format="list")[0]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_mlflow_run_bad_tags(ip, on_shared_server):
    with pytest.raises(UsageError, match="key=value"):
        ip.run_cell_magic("mlflow_run", "--tags nonsense", "x = 1")


def test_mlflow_run_autolog_leaves_the_users_autolog_as_it_was(ip, on_shared_server):
    import mlflow
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    def enabled() -> dict[str, bool]:
        return {name: config.get("disable") is False
                for name, config in AUTOLOGGING_INTEGRATIONS.items() if config}

    mlflow.autolog(disable=True)
    card, _ = last_card(ip, "--autolog --name autolog-for-one-cell", "x = 1")
    assert "FINISHED" in card and not any(enabled().values())  # off again after the cell
    mlflow.autolog(log_models=False, silent=True)  # the user's own autologging
    try:
        last_card(ip, "--autolog --name autolog-kept", "x = 2")
        assert enabled()["mlflow"]
        assert AUTOLOGGING_INTEGRATIONS["mlflow"]["log_models"] is False
    finally:
        mlflow.autolog(disable=True)
