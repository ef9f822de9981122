"""Flags resolved and checked into a server config (pure): defaults, data folder, drivers,
bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_magic.errors import ConfigError
from mlflow_magic.settings.config import duration, resolve, resolve_data_dir
from mlflow_magic.settings.options import ServerOptions
from mlflow_magic.settings.server_command import server_argv, server_env
from mlflow_magic.state.records import prepare_folder


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_PATH", str(tmp_path / "from_env"))
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_dir() == tmp_path / "from_env"
    monkeypatch.delenv("MLFLOW_PATH")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir() == tmp_path / "mlflow_data"


def test_defaults_are_sqlite_with_proxied_artifacts(tmp_path):
    config = resolve(ServerOptions(path=tmp_path / "d"))
    assert not (tmp_path / "d").exists()  # resolving creates nothing
    assert config.backend_store_uri == f"sqlite:///{tmp_path / 'd' / 'mlflow.db'}"
    assert config.serve_artifacts
    assert config.artifacts_destination == str(tmp_path / "d" / "artifacts")
    assert config.default_artifact_root is None
    assert (config.host, config.port, config.workers) == ("127.0.0.1", None, 1)
    assert config.explicit == frozenset()


def test_file_store_and_no_serve_artifacts(tmp_path):
    config = resolve(ServerOptions(path=tmp_path, file_store=True, serve_artifacts=False))
    assert config.backend_store_uri == str(tmp_path / "mlruns")
    assert not config.serve_artifacts
    assert config.default_artifact_root == str(tmp_path / "artifacts")
    assert server_env(config, {})["MLFLOW_ALLOW_FILE_STORE"] == "true"
    assert "--no-serve-artifacts" in server_argv(config, 5000)
    assert config.explicit == {"backend_store_uri", "serve_artifacts"}
    named = resolve(ServerOptions(path=tmp_path, workers=2, jobs=True, attached=False,
                                  allowed_hosts="h", cors_allowed_origins="o", extra_args=()))
    assert named.explicit == {"workers", "jobs", "attached", "allowed_hosts",
                              "cors_allowed_origins", "extra_args"}


@pytest.mark.parametrize(("options", "words"), [
    ({"sqlite": True, "file_store": True}, ["--sqlite", "--file-store", "only one"]),
    ({"sqlite": True, "backend_store_uri": "sqlite:///x.db"}, ["--backend-store-uri"]),
    ({"serve_artifacts": False, "artifacts_destination": "/x"}, ["--artifacts-destination"]),
    ({"artifacts_only": True, "serve_artifacts": False}, ["--artifacts-only"]),
    ({"upgrade_db": True, "backend_store_uri": "postgresql://u:pw@h/db"},
     ["--upgrade-db", "u:***@h", "mlflow db upgrade"]),
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
                              backend_store_uri="mysql+mysqldb://root:pw@127.0.0.1/mlflow"))


def test_default_driver_follows_sqlalchemy(tmp_path, monkeypatch):
    """``postgresql://`` means psycopg (3) with SQLAlchemy 2.1, psycopg2 with 2.0."""
    import sqlalchemy

    from mlflow_magic.settings import config

    monkeypatch.setitem(config.DB_DRIVERS, "psycopg", ("no_such_mod_a", "pkg-a"))
    monkeypatch.setitem(config.DB_DRIVERS, "psycopg2", ("no_such_mod_b", "pkg-b"))
    from packaging.version import Version

    expected = "pkg-a" if Version(sqlalchemy.__version__) >= Version("2.1") else "pkg-b"
    with pytest.raises(ConfigError, match=f"Install it with {expected}"):
        resolve(ServerOptions(path=tmp_path, backend_store_uri="postgresql://u:p@h/db"))


def test_missing_driver_message_masks_the_password(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve(ServerOptions(path=tmp_path, backend_store_uri="mysql+mysqldb://root:pw@h/m"))
    assert ":pw@" not in str(info.value) and "root:***@h" in str(info.value)


def test_unwritable_folder_is_refused_before_anything_starts(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"cannot be used.*--path"):
        prepare_folder(blocker / "mlflow_data")


def test_explicit_settings_are_tracked(tmp_path):
    config = resolve(ServerOptions(path=tmp_path, port=5001, host="0.0.0.0",
                                   artifacts_destination=str(Path(tmp_path) / "elsewhere")))
    assert config.explicit == {"port", "host", "artifacts_destination"}


def test_named_allowed_hosts_keep_this_machines_clients_allowed(tmp_path):
    config = resolve(ServerOptions(path=tmp_path, allowed_hosts="hub.example.org"))
    served = server_env(config, {})["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert served[0] == "hub.example.org"
    assert {"localhost", "127.0.0.1:*", "[::1]"} <= set(served)
    assert config.settings()["allowed_hosts"] == "hub.example.org"  # as the user said it
    wildcard = resolve(ServerOptions(path=tmp_path, allowed_hosts="*"))
    assert server_env(wildcard, {})["MLFLOW_SERVER_ALLOWED_HOSTS"] == "*"


@pytest.mark.parametrize(("installed", "uri", "chosen"), [
    ({"psycopg", "psycopg2"}, "postgresql://u:p@h/db", "postgresql://u:p@h/db"),
    ({"psycopg2"}, "postgresql://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
    ({"pg8000"}, "postgresql://u:p@h/db", "postgresql+pg8000://u:p@h/db"),
    ({"pymysql"}, "mysql://u:p@h/db", "mysql+pymysql://u:p@h/db"),
    ({"psycopg2"}, "postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    (set(), "postgresql://u:p@h/db", "postgresql://u:p@h/db"),
])
def test_an_installed_driver_stands_in_for_a_missing_default(monkeypatch, installed, uri,
                                                             chosen):
    from mlflow_magic.settings import config

    monkeypatch.setattr(config, "_module_installed", lambda module: module in installed)
    assert config.with_installed_driver(uri) == chosen


def test_no_driver_at_all_names_the_package_that_installs(tmp_path, monkeypatch):
    from mlflow_magic.settings import config

    monkeypatch.setattr(config, "_module_installed", lambda module: False)
    with pytest.raises(ConfigError, match=r"pip install 'psycopg\[binary\]'"):
        resolve(ServerOptions(path=tmp_path, backend_store_uri="postgresql://u:p@h/db"))
    with pytest.raises(ConfigError, match=r"pip install boto3"):
        resolve(ServerOptions(path=tmp_path, artifacts_destination="s3://bucket/p"))


@pytest.mark.parametrize(("said", "seconds"), [("30m", 1800), ("2h", 7200), ("90s", 90),
                                               ("1d", 86400), ("0", 0), ("45", 45)])
def test_an_idle_timeout_is_a_duration(said, seconds):
    assert duration(said) == seconds


def test_the_idle_timeout_defaults_to_an_hour_or_the_admins_setting(tmp_path):
    assert resolve(ServerOptions(path=tmp_path)).idle_timeout == 3600
    assert resolve(ServerOptions(path=tmp_path),
                   {"MLFLOW_MAGIC_IDLE_TIMEOUT": "30m"}).idle_timeout == 1800
    assert resolve(ServerOptions(path=tmp_path, idle_timeout=0),
                   {"MLFLOW_MAGIC_IDLE_TIMEOUT": "30m"}).idle_timeout == 0
    with pytest.raises(ConfigError, match="MLFLOW_MAGIC_IDLE_TIMEOUT='soon'"):
        resolve(ServerOptions(path=tmp_path), {"MLFLOW_MAGIC_IDLE_TIMEOUT": "soon"})
