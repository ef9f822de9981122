"""Unit tests of flag resolution, validation, command lines and masking (no server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlflow_magic.config import (
    ServerOptions,
    equivalent_command,
    mask_args,
    mask_uri,
    resolve,
    resolve_data_dir,
    server_argv,
    server_env,
)
from mlflow_magic.errors import ConfigError


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_PATH", str(tmp_path / "from_env"))
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_dir() == tmp_path / "from_env"
    monkeypatch.delenv("MLFLOW_PATH")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir() == tmp_path / "mlflow_data"


def test_defaults_are_sqlite_with_proxied_artifacts(tmp_path):
    config = resolve(ServerOptions(path=tmp_path / "d"))
    assert (tmp_path / "d").is_dir()
    assert config.backend_store_uri == f"sqlite:///{tmp_path / 'd' / 'mlflow.db'}"
    assert config.serve_artifacts
    assert config.artifacts_destination == str(tmp_path / "d" / "artifacts")
    assert config.default_artifact_root is None
    assert (config.host, config.port, config.workers) == ("127.0.0.1", None, 1)
    assert config.explicit == frozenset()


def test_file_store_and_no_serve_artifacts(tmp_path):
    config = resolve(ServerOptions(path=tmp_path, file_store=True, no_serve_artifacts=True))
    assert config.backend_store_uri == str(tmp_path / "mlruns")
    assert not config.serve_artifacts
    assert config.default_artifact_root == str(tmp_path / "artifacts")
    assert server_env(config, {})["MLFLOW_ALLOW_FILE_STORE"] == "true"
    assert "--no-serve-artifacts" in server_argv(config, 5000)
    assert config.explicit == {"backend_store_uri", "serve_artifacts"}


def test_passwords_travel_in_the_environment_not_on_the_command_line(tmp_path):
    uri = "postgresql://alice:hunter2@db.example.org:5432/mlflow"
    config = resolve(ServerOptions(path=tmp_path, backend_store_uri=uri,
                                   registry_store_uri=uri))
    argv = server_argv(config, 5000)
    assert not any("hunter2" in a for a in argv)
    env = server_env(config, {"MLFLOW_BACKEND_STORE_URI": "stale"})
    assert env["MLFLOW_BACKEND_STORE_URI"] == uri
    assert env["MLFLOW_REGISTRY_STORE_URI"] == uri
    shown = " ".join(equivalent_command(config, 5000))
    assert "hunter2" not in shown and "alice:***@db.example.org" in shown
    assert "hunter2" not in repr(config.settings())


def test_job_execution_is_off_unless_asked(tmp_path):
    assert server_env(resolve(ServerOptions(path=tmp_path)), {})[
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert server_env(resolve(ServerOptions(path=tmp_path, jobs=True)), {})[
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


@pytest.mark.parametrize(("uri", "masked"), [
    ("postgresql://u:p@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql+psycopg2://u:p%40ss@h/db?sslmode=require",
     "postgresql+psycopg2://u:***@h/db?sslmode=require"),
    ("https://user:tok@mlflow.example.org", "https://user:***@mlflow.example.org"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    (None, None),
])
def test_mask_uri(uri, masked):
    assert mask_uri(uri) == masked


def test_mask_args():
    assert mask_args(["--x", "mysql://a:b@h/d"]) == ["--x", "mysql://a:***@h/d"]


@pytest.mark.parametrize(("options", "words"), [
    ({"sqlite": True, "file_store": True}, ["--sqlite", "--file-store", "only one"]),
    ({"sqlite": True, "backend_store_uri": "sqlite:///x.db"}, ["--backend-store-uri"]),
    ({"no_serve_artifacts": True, "artifacts_destination": "/x"}, ["--artifacts-destination"]),
    ({"artifacts_only": True, "no_serve_artifacts": True}, ["--artifacts-only"]),
    ({"artifacts_only": True, "sqlite": True}, ["--artifacts-only", "--sqlite"]),
    ({"port": 0}, ["Port 0", "1 to 65535"]),
    ({"port": 70000}, ["Port 70000"]),
    ({"workers": 0}, ["--workers"]),
    ({"timeout": -1}, ["--timeout"]),
    ({"extra_args": ("--port", "6000")}, ["--port", "after `--`"]),
    ({"extra_args": ("--backend-store-uri=sqlite:///x",)}, ["--backend-store-uri"]),
    ({"extra_args": ("--static-prefix", "/m")}, ["--static-prefix", "Remove it"]),
    ({"backend_store_uri": "mongodb://h/db"}, ["'mongodb'", "postgresql"]),
    ({"backend_store_uri": "oracle://h/db"}, ["'oracle'", "postgresql"]),
    ({"artifacts_destination": "bogus://bucket"}, ["'bogus'", "s3"]),
])
def test_bad_input_is_explained(tmp_path, options, words):
    with pytest.raises(ConfigError) as info:
        resolve(ServerOptions(path=tmp_path, **options))
    message = str(info.value)
    for word in words:
        assert word in message
    assert "\n" not in message


def test_missing_database_driver_names_the_pip_package(tmp_path):
    with pytest.raises(ConfigError, match=r"pip install mysqlclient"):
        resolve(ServerOptions(path=tmp_path,
                              backend_store_uri="mysql://root:pw@127.0.0.1/mlflow"))


def test_default_driver_follows_sqlalchemy(tmp_path, monkeypatch):
    """``postgresql://`` means psycopg (3) with SQLAlchemy 2.1, psycopg2 with 2.0."""
    import sqlalchemy

    from mlflow_magic import config

    monkeypatch.setitem(config.DB_DRIVERS, "psycopg", ("no_such_mod_a", "pkg-a"))
    monkeypatch.setitem(config.DB_DRIVERS, "psycopg2", ("no_such_mod_b", "pkg-b"))
    expected = "pkg-a" if sqlalchemy.__version__ >= "2.1" else "pkg-b"
    with pytest.raises(ConfigError, match=f"pip install {expected}"):
        resolve(ServerOptions(path=tmp_path, backend_store_uri="postgresql://u:p@h/db"))


def test_missing_driver_message_masks_the_password(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve(ServerOptions(path=tmp_path, backend_store_uri="mysql://root:pw@h/m"))
    assert ":pw@" not in str(info.value) and "root:***@h" in str(info.value)


def test_unwritable_folder_is_refused_before_anything_starts(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"cannot be used.*--path"):
        resolve(ServerOptions(path=blocker / "mlflow_data"))


def test_server_argv_runs_our_launcher_with_passthrough(tmp_path):
    config = resolve(ServerOptions(path=tmp_path, port=5123, workers=2,
                                   allowed_hosts="hub.example.org",
                                   extra_args=("--expose-prometheus", "/tmp/m")))
    argv = server_argv(config, 5123)
    assert argv[:3] == [sys.executable, "-m", "mlflow_magic.serve"]
    assert argv[-2:] == ["--expose-prometheus", "/tmp/m"]
    for pair in (["--port", "5123"], ["--workers", "2"], ["--allowed-hosts", "hub.example.org"]):
        i = argv.index(pair[0])
        assert argv[i:i + 2] == pair


def test_explicit_settings_are_tracked(tmp_path):
    config = resolve(ServerOptions(path=tmp_path, port=5001, host="0.0.0.0",
                                   artifacts_destination=str(Path(tmp_path) / "elsewhere")))
    assert config.explicit == {"port", "host", "artifacts_destination"}
