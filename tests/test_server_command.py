"""The command and environment a server is launched with (pure): secrets off the command
line, the kernel's server settings not inherited."""
from __future__ import annotations

import sys

from mlflow_magic.settings.config import resolve
from mlflow_magic.settings.options import ServerOptions
from mlflow_magic.settings.server_command import (
    equivalent_command,
    inherited_settings,
    server_argv,
    server_env,
    server_flags,
)


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



def test_server_argv_runs_our_launcher_with_passthrough(tmp_path):
    config = resolve(ServerOptions(path=tmp_path, port=5123, workers=2,
                                   allowed_hosts="hub.example.org",
                                   extra_args=("--expose-prometheus", "/tmp/m")))
    argv = server_argv(config, 5123)
    assert argv[:3] == [sys.executable, "-m", "mlflow_magic.server.serve"]
    assert argv[-2:] == ["--expose-prometheus", "/tmp/m"]
    for pair in (["--port", "5123"], ["--workers", "2"]):
        i = argv.index(pair[0])
        assert argv[i:i + 2] == pair
    assert argv[argv.index("--allowed-hosts") + 1].startswith("hub.example.org,localhost")
