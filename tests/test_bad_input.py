"""Bad input, through the magic, the Python API and the console script alike.

Every case must give one paragraph that names the problem and the fix, with
no traceback; start nothing and create no folder; and leave the running
server exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import free_port, serve_processes
from IPython.core.error import UsageError

import mlflow_magic
from mlflow_magic import cli
from mlflow_magic.state import records


@dataclass(frozen=True)
class Case:
    line: str  #: as typed after `%mlflow_server` or `mlflow-magic`
    words: tuple[str, ...]  #: the message names these
    api: tuple[str, dict[str, Any]] | None = None  #: the same through the Python API
    needs: tuple[str, ...] = field(default_factory=tuple)


CASES = {
    "unknown command": Case("strat", ("invalid choice", "strat")),
    "unknown flag": Case("start --no-such-flag", ("unrecognized arguments", "--no-such-flag")),
    "port not a number": Case("start --port abc", ("invalid int value", "abc")),
    "port 0": Case("start --port 0", ("Port 0", "65535"), ("start", {"port": 0})),
    "port too high": Case("start --port 70000", ("Port 70000",), ("start", {"port": 70000})),
    "no workers": Case("start --workers 0", ("--workers",), ("start", {"workers": 0})),
    "negative timeout": Case("start --timeout -5", ("--timeout",), ("start", {"timeout": -5})),
    "idle timeout not a duration": Case("start --idle-timeout soon",
                                        ("--idle-timeout", "not a duration", "30m")),
    "negative idle timeout": Case("start --idle-timeout=-5m", ("--idle-timeout", "0"),
                                  ("start", {"idle_timeout": -300})),
    "two backends": Case("start --sqlite --file-store", ("--sqlite", "--file-store", "only one"),
                         ("start", {"sqlite": True, "file_store": True})),
    "backend twice": Case("start --sqlite --backend-store-uri sqlite:///x.db",
                          ("--backend-store-uri",),
                          ("start", {"sqlite": True, "backend_store_uri": "sqlite:///x.db"})),
    "not a database": Case("start --backend-store-uri mongodb://h/db", ("'mongodb'", "postgresql"),
                           ("start", {"backend_store_uri": "mongodb://h/db"})),
    "missing driver": Case("start --backend-store-uri postgresql+pg8000://root:pw1@h/m",
                           ("pip install pg8000", "root:***@h"),
                           ("start", {"backend_store_uri": "postgresql+pg8000://root:pw1@h/m"})),
    "bad artifact scheme": Case("start --artifacts-destination bogus://bucket", ("'bogus'", "s3"),
                                ("start", {"artifacts_destination": "bogus://bucket"})),
    "destination without proxying": Case(
        "start --no-serve-artifacts --artifacts-destination /x", ("--artifacts-destination",),
        ("start", {"serve_artifacts": False, "artifacts_destination": "/x"})),
    "artifacts-only without proxying": Case(
        "start --artifacts-only --no-serve-artifacts", ("--artifacts-only",),
        ("start", {"artifacts_only": True, "serve_artifacts": False})),
    "artifacts-only with a store": Case(
        "start --artifacts-only --sqlite", ("--artifacts-only", "--sqlite"),
        ("start", {"artifacts_only": True, "sqlite": True})),
    "managed flag after --": Case("start -- --port 6000", ("--port", "after `--`"),
                                  ("start", {"extra_args": ("--port", "6000")})),
    "static prefix": Case("start -- --static-prefix /m", ("--static-prefix", "Remove it"),
                          ("start", {"extra_args": ("--static-prefix", "/m")})),
    "passthrough on status": Case("status -- --workers 2", ("after `--`", "start")),
    "negative lines": Case("logs -n -3", ("-n/--lines",)),
    "connect to a database": Case("connect ftp://example.org", ("http(s) URL",),
                                  ("connect", {"uri": "ftp://example.org"})),
    "connect to nothing": Case("connect http://127.0.0.1:{free}",
                               ("No MLflow tracking server answers",),
                               ("connect", {"uri": "http://127.0.0.1:{free}"})),
    "stop --all with --path": Case("stop --all --path {fresh}", ("--all", "--path")),
    "upgrade-db on PostgreSQL": Case(
        "start --upgrade-db --backend-store-uri postgresql://u:pw1@h/db",
        ("--upgrade-db", "u:***@h"),
        ("start", {"upgrade_db": True, "backend_store_uri": "postgresql://u:pw1@h/db"})),
    "folder under a file": Case("start --path {blocker}/data", ("cannot be used", "--path"),
                                ("start", {"path": "{blocker}/data"})),
    "status of a file": Case("status --path {blocker}", ("is a file", "--path"),
                             ("status", {"path": "{blocker}"})),
    "stop a file": Case("stop --path {blocker}", ("is a file", "--path"),
                        ("stop", {"path": "{blocker}"})),
    "logs of a file": Case("logs --path {blocker}", ("is a file",),
                           ("logs", {"path": "{blocker}"})),
    "start on a file": Case("start --path {blocker}", ("is a file", "MLFLOW_PATH"),
                            ("start", {"path": "{blocker}"})),
    "push a folder that is not there": Case(
        "push --to http://127.0.0.1:{free} --path {fresh}", ("no data folder", "--path"),
        ("push", {"to": "http://127.0.0.1:{free}", "path": "{fresh}"})),
    "UI too small": Case("ui --path {shared} --height 20", ("--height", "100")),
    "unknown experiment": Case("ui --path {shared} --experiment no-such-exp",
                               ("no experiment 'no-such-exp'",)),
    "other settings than the running server": Case(
        "start --path {shared} --workers 3", ("--workers", "restart"),
        ("start", {"path": "{shared}", "workers": 3})),
    "port of another MLflow server": Case(
        "start --path {fresh} --port {shared_port}", ("connect", "--port"),
        ("start", {"path": "{fresh}", "port": "{shared_port}"})),
    "ui without a server": Case("ui --path {fresh}", ("No MLflow server is running",
                                                      "start")),
}


@pytest.fixture
def places(shared_server, tmp_path, clean_tracking_env):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    return {"shared": shared_server.data_dir, "shared_port": str(shared_server.port),
            "fresh": str(tmp_path / "fresh"), "blocker": str(blocker), "free": str(free_port())}


def fill(value: Any, places: dict[str, str]) -> Any:
    if isinstance(value, str):
        filled = value.format(**places)
        return int(filled) if value == "{shared_port}" else filled
    if isinstance(value, tuple):
        return tuple(fill(v, places) for v in value)
    return value


@pytest.fixture
def untouched(shared_server, tmp_path):
    """After the case: the shared server runs as before, nothing new runs or exists."""
    before = {p.pid for p in serve_processes()}
    yield
    assert records.read_record(shared_server.data_dir).pid == shared_server.pid
    assert mlflow_magic.status(shared_server.data_dir).running
    assert {p.pid for p in serve_processes()} == before
    assert not (tmp_path / "fresh").exists()


def check_message(message: str, words: tuple[str, ...]) -> None:
    assert "Traceback" not in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("name", CASES)
def test_magic(name, ip, places, untouched):
    case = CASES[name]
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("mlflow_server", case.line.format(**places))
    check_message(str(info.value), case.words)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", CASES)
def test_console_script(name, places, untouched, capsys):
    case = CASES[name]
    try:
        code = cli.main(case.line.format(**places).split())
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out = capsys.readouterr()
    assert code in (1, 2) and out.out == ""
    check_message(out.err, case.words)
    assert "%mlflow_server" not in out.err


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.api])
def test_python_api(name, places, untouched):
    function, kwargs = CASES[name].api
    with pytest.raises(mlflow_magic.MlflowMagicError) as info:
        getattr(mlflow_magic, function)(**{k: fill(v, places) for k, v in kwargs.items()})
    check_message(str(info.value), CASES[name].words)


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 25
    assert sum(1 for c in CASES.values() if c.api) >= 20
