"""Unit tests of flag resolution, validation, command lines and masking (no server)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from mlflow_magic.config import (
    ServerOptions,
    equivalent_command,
    inherited_settings,
    mask_args,
    mask_text,
    mask_uri,
    merge_options,
    resolve,
    resolve_data_dir,
    server_argv,
    server_env,
    server_flags,
)
from mlflow_magic.errors import ConfigError
from mlflow_magic.registry import prepare_folder


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
    assert mask_args(["--read-replica-backend-store-uri=postgresql://a:b@h/d",
                      "--secret-key", "abc", "--workers", "2"]) == [
        "--read-replica-backend-store-uri=postgresql://a:***@h/d", "--secret-key", "***",
        "--workers", "2"]


@pytest.mark.parametrize(("uri", "masked"), [
    ("ftp://bob:pw@ftp.example.org/arts", "ftp://bob:***@ftp.example.org/arts"),
    ("sftp://bob:pw@host/path", "sftp://bob:***@host/path"),
    ("https://h/x?password=abc&x=1", "https://h/x?password=***&x=1"),
    ("wasbs://c@acct.blob.core.windows.net/p?sig=xyz", "wasbs://c@acct.blob.core.windows.net/p?sig=***"),
    ("s3://bucket/prefix", "s3://bucket/prefix"),
])
def test_mask_uri_covers_artifact_stores_and_query_secrets(uri, masked):
    assert mask_uri(uri) == masked


def test_mask_text_masks_uris_inside_log_lines():
    line = "OperationalError: postgresql://user:hunter2@db/x failed; see ?token=abc&y=1"
    assert mask_text(line) == ("OperationalError: postgresql://user:***@db/x failed; "
                               "see ?token=***&y=1")


def test_secrets_in_artifact_uris_and_passthrough_stay_off_the_command_line(tmp_path):
    config = resolve(ServerOptions(
        path=tmp_path, artifacts_destination="ftp://bob:ftp-pw@ftp.example.org/arts",
        extra_args=("--read-replica-backend-store-uri", "postgresql://r:replica-pw@h/db")))
    shown = " ".join(server_argv(config, 5000)) + repr(config.settings()) + " ".join(
        equivalent_command(config, 5000))
    assert "ftp-pw" not in shown and "replica-pw" not in shown
    assert "bob:***@ftp.example.org" in shown and "r:***@h" in shown
    assert "replica-pw" in " ".join(server_flags(config, 5000))  # the real ones, for the env


def test_server_settings_in_the_kernel_environment_do_not_leak(tmp_path):
    kernel_env = {"MLFLOW_DEFAULT_ARTIFACT_ROOT": "/elsewhere", "MLFLOW_ARTIFACTS_ONLY": "true",
                  "MLFLOW_STATIC_PREFIX": "/x", "MLFLOW_UVICORN_OPTS": "--reload",
                  "_MLFLOW_SERVER_FILE_STORE": "y", "MLFLOW_TRACKING_URI": "http://other",
                  "MLFLOW_S3_ENDPOINT_URL": "http://s3", "AWS_ACCESS_KEY_ID": "k",
                  "MLFLOW_MAGIC_PARENT_PID": "1", "PATH": "/usr/bin"}
    env = server_env(resolve(ServerOptions(path=tmp_path)), kernel_env)
    for name in ("MLFLOW_DEFAULT_ARTIFACT_ROOT", "MLFLOW_ARTIFACTS_ONLY", "MLFLOW_STATIC_PREFIX",
                 "MLFLOW_UVICORN_OPTS", "_MLFLOW_SERVER_FILE_STORE", "MLFLOW_TRACKING_URI",
                 "MLFLOW_MAGIC_PARENT_PID"):
        assert name not in env
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://s3" and env["AWS_ACCESS_KEY_ID"] == "k"
    assert inherited_settings(kernel_env) == ["MLFLOW_S3_ENDPOINT_URL"]


def test_restart_options_change_only_what_is_named():
    old = ServerOptions(path="/d", backend_store_uri="postgresql://u:pw@h/db",
                        artifacts_destination="s3://b/p", workers=2, allowed_hosts="hub.org",
                        extra_args=("--expose-prometheus", "/m"))
    same = merge_options(old, ServerOptions(path="/d"))
    assert same == old
    assert merge_options(old, ServerOptions(path="/d", workers=4)) == \
        dataclasses.replace(old, workers=4)
    to_sqlite = merge_options(old, ServerOptions(path="/d", sqlite=True))
    assert to_sqlite.sqlite and to_sqlite.backend_store_uri is None
    assert to_sqlite.artifacts_destination == "s3://b/p"
    no_extra = merge_options(old, ServerOptions(path="/d", extra_args=()))
    assert no_extra.extra_args == ()
    direct = merge_options(old, ServerOptions(path="/d", serve_artifacts=False))
    assert direct.serve_artifacts is False and direct.artifacts_destination is None
    back = merge_options(direct, ServerOptions(path="/d", artifacts_destination="/a"))
    assert back.serve_artifacts is None and back.artifacts_destination == "/a"
    only = merge_options(old, ServerOptions(path="/d", artifacts_only=True))
    assert only.backend_store_uri is None and only.artifacts_only


def test_options_round_trip_through_json():
    options = ServerOptions(path="/d", serve_artifacts=False, extra_args=("--x", "1"),
                            upgrade_db=True)
    again = ServerOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert again == dataclasses.replace(options, upgrade_db=False)


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

    from mlflow_magic import config

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


def test_server_argv_runs_our_launcher_with_passthrough(tmp_path):
    config = resolve(ServerOptions(path=tmp_path, port=5123, workers=2,
                                   allowed_hosts="hub.example.org",
                                   extra_args=("--expose-prometheus", "/tmp/m")))
    argv = server_argv(config, 5123)
    assert argv[:3] == [sys.executable, "-m", "mlflow_magic.serve"]
    assert argv[-2:] == ["--expose-prometheus", "/tmp/m"]
    for pair in (["--port", "5123"], ["--workers", "2"]):
        i = argv.index(pair[0])
        assert argv[i:i + 2] == pair
    assert argv[argv.index("--allowed-hosts") + 1].startswith("hub.example.org,localhost")


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
    from mlflow_magic import config

    monkeypatch.setattr(config, "_module_installed", lambda module: module in installed)
    assert config.with_installed_driver(uri) == chosen


def test_no_driver_at_all_names_our_extra(tmp_path, monkeypatch):
    from mlflow_magic import config

    monkeypatch.setattr(config, "_module_installed", lambda module: False)
    with pytest.raises(ConfigError, match=r"pip install 'mlflow-magic\[postgres\]'"):
        resolve(ServerOptions(path=tmp_path, backend_store_uri="postgresql://u:p@h/db"))
    with pytest.raises(ConfigError, match=r"pip install 'mlflow-magic\[s3\]'"):
        resolve(ServerOptions(path=tmp_path, artifacts_destination="s3://bucket/p"))
