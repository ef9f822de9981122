"""The team setup: PostgreSQL backend store and S3 artifacts, on real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import psutil

import mlflow_magic
from mlflow_magic import registry


def test_postgres_backend_and_s3_artifacts(folder, postgres, s3, monkeypatch):
    for name, value in s3["env"].items():  # the server's storage credentials
        monkeypatch.setenv(name, value)
    password = postgres.split(":")[2].split("@")[0]
    server = mlflow_magic.start(folder, use=False, backend_store_uri=postgres,
                                artifacts_destination="s3://mlflow/team").server

    # A client with no storage credentials: artifacts go through the server.
    client_env = {k: v for k, v in os.environ.items()
                  if not k.startswith(("AWS_", "MLFLOW_S3"))}
    client_env["MLFLOW_TRACKING_URI"] = server.url
    done = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import mlflow
        mlflow.set_experiment("team")
        with mlflow.start_run() as run:
            mlflow.log_metric("accuracy", 0.93)
            mlflow.log_text("model card", "card.md")
        print(run.info.run_id)
    """)], capture_output=True, text=True, env=client_env, timeout=120)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[-1]

    keys = [o["Key"] for o in s3["client"].list_objects_v2(
        Bucket="mlflow", Prefix="team/")["Contents"]]
    assert any(k.endswith(f"{run_id}/artifacts/card.md") for k in keys)
    assert not (folder / "mlflow.db").exists()

    # The password is nowhere to be seen: not in results, record, command line or log.
    status = mlflow_magic.status(folder)
    assert "postgres:***@127.0.0.1" in str(status)
    shown = [str(status), status._repr_html_(), registry.record_path(folder).read_text(),
             " ".join(psutil.Process(server.pid).cmdline()),
             registry.log_path(folder).read_text(), json.dumps(server.settings)]
    assert not [text for text in shown if password in text]


def test_wrong_database_password_is_explained(folder, postgres):
    wrong = postgres.replace(postgres.split(":")[2].split("@")[0], "wrong-password")
    try:
        mlflow_magic.start(folder, use=False, backend_store_uri=wrong, timeout=10)
    except mlflow_magic.MlflowMagicError as exc:
        message = str(exc)
    else:
        raise AssertionError("a start with a wrong password must fail")
    assert "password" in message and "wrong-password" not in message
