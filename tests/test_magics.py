"""The %mlflow_server magic in a real IPython shell."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import get_ipython

from mlflow_magic import registry


@pytest.fixture(scope="module")
def ip():
    shell = get_ipython()
    shell.run_line_magic("load_ext", "mlflow_magic")
    return shell


def ipython(*lines: str, **env: str) -> subprocess.CompletedProcess:
    """Run lines in a fresh IPython process, as a user would type them."""
    code = "\n".join(lines)
    return subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor",
                           "-c", code], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **env})


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
def test_bad_input_is_a_usage_error(ip, tmp_path, line, words):
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("mlflow_server", f"{line}")
    for word in words:
        assert word in str(info.value)
    assert not registry.read_record(tmp_path)


def test_errors_print_one_paragraph_and_no_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = ipython("%load_ext mlflow_magic", f"%mlflow_server start --path {blocker}/data")
    out = done.stdout + done.stderr
    assert "UsageError: The data folder" in out and "--path" in out
    assert "Traceback" not in out


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
    assert registry.read_record(data) is None
