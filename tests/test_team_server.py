"""The team setup: PostgreSQL backend store and S3 artifacts, on real servers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import pytest
from conftest import BROWSER_MARKS, owner, serving

import mlflow_magic
from mlflow_magic.errors import StartFailedError
from mlflow_magic.state import records


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
    shown = [str(status), status._repr_html_(), records.record_path(folder).read_text(),
             " ".join(serving(server).cmdline()),
             records.log_path(folder).read_text(), json.dumps(server.settings)]
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


def no_storage_credentials(url: str, **extra: str) -> dict[str, str]:
    """A client's environment: the tracking URI, and no S3 credentials at all."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MLFLOW_S3", "MLFLOW_TRACKING_", "MLFLOW_REGISTRY_"))}
    return {**env, "MLFLOW_TRACKING_URI": url, **extra}


CLIENT = """
import mlflow, sys
from mlflow import MlflowClient
mlflow.set_experiment(sys.argv[1])
with mlflow.start_run() as run:
    mlflow.log_params({"alpha": 0.5, "backend": sys.argv[1]})
    mlflow.log_metric("rmse", 0.25, step=1)
    mlflow.log_text("a model card", "model/card.md")
client = MlflowClient()
client.create_registered_model(sys.argv[1])
client.create_model_version(sys.argv[1], f"runs:/{run.info.run_id}/model", run.info.run_id)
print("RUN", run.info.run_id)
"""

READER = """
import mlflow, sys
from mlflow import MlflowClient
client = MlflowClient()
run = client.get_run(sys.argv[1])
versions = client.search_model_versions(f"name='{sys.argv[2]}'")
text = mlflow.artifacts.load_text(f"runs:/{sys.argv[1]}/model/card.md")
print("READ", run.data.params["alpha"], run.data.metrics["rmse"], len(versions), text)
"""


def client_run(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("backend", ["postgres", "mariadb"])
def test_sql_backend_with_s3_keeps_everything_across_restart(backend, folder, s3, monkeypatch,
                                                              request):
    uri = request.getfixturevalue(backend)
    for name, value in s3["env"].items():
        monkeypatch.setenv(name, value)
    prefix = f"team-{backend}"
    server = mlflow_magic.start(folder, use=False, backend_store_uri=uri,
                                artifacts_destination=f"s3://mlflow/{prefix}").server
    run_id = client_run(CLIENT, no_storage_credentials(server.url), backend).split()[-1]
    first_server = serving(server).pid
    again = mlflow_magic.restart(folder, use=False).server
    assert serving(again).pid != first_server and again.url == server.url
    assert again.settings["backend_store_uri"] == server.settings["backend_store_uri"]
    read = client_run(READER, no_storage_credentials(again.url), run_id, backend)
    assert read.split()[:4] == ["READ", "0.5", "0.25", "1"] and "a model card" in read
    keys = [o["Key"] for o in s3["client"].list_objects_v2(
        Bucket="mlflow", Prefix=f"{prefix}/")["Contents"]]
    assert any(k.endswith(f"{run_id}/artifacts/model/card.md") for k in keys)
    assert not (folder / "mlflow.db").exists()
    password = uri.split(":")[2].split("@")[0]
    shown = [str(mlflow_magic.status(folder)), records.record_path(folder).read_text(),
             str(mlflow_magic.logs(folder, 500)), str(mlflow_magic.list_servers()),
             " ".join(serving(again).cmdline())]
    assert not [text for text in shown if password in text or "secret" in text]


def test_a_latin1_mariadb_database_gets_the_commands_that_convert_it(folder, mariadb):
    """MLflow 3.18's first migration fails on a database in latin1 (plain ``mlflow server``
    too): the start says which database, why, and the exact commands, above the log's end,
    and leaves nothing running."""
    import psutil

    uri = mariadb.rsplit("/", 1)[0] + "/mlflow_latin1"
    before = {p.pid for p in psutil.process_iter()}
    with pytest.raises(StartFailedError) as info:
        mlflow_magic.start(folder, use=False, backend_store_uri=uri, timeout=180)
    message = str(info.value)
    paragraph, _, tail = message.partition("Last lines of its log")
    assert "The database mlflow_latin1 uses the character set latin1" in paragraph
    assert ("-e 'ALTER DATABASE mlflow_latin1 CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;'"
            in paragraph)
    assert "mariadb-dump" in paragraph and "CONVERT TO CHARACTER SET utf8mb4" in paragraph
    assert "utf8mb4_bin' is not valid for CHARACTER SET 'latin1'" in tail
    assert "maria-s3cret-pw" not in message
    assert records.read_record(folder) is None
    left = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.pid not in before
            and str(folder) in " ".join(p.info["cmdline"] or [])]
    assert left == []


def test_clients_write_to_s3_directly_without_proxying(folder, postgres, s3, monkeypatch):
    """Scenario 4: the server only tracks; clients have credentials and write to S3."""
    for name, value in s3["env"].items():
        monkeypatch.setenv(name, value)
    server = mlflow_magic.start(folder, use=False, backend_store_uri=postgres,
                                default_artifact_root="s3://mlflow/direct",
                                serve_artifacts=False).server
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, **s3["env"]}
    run_id = client_run(CLIENT, env, "direct").split()[-1]
    keys = [o["Key"] for o in s3["client"].list_objects_v2(
        Bucket="mlflow", Prefix="direct/")["Contents"]]
    assert any(k.endswith(f"{run_id}/artifacts/model/card.md") for k in keys)
    # Without credentials the client cannot: artifacts do not go through this server.
    failed = subprocess.run([sys.executable, "-c", textwrap.dedent(CLIENT), "direct-2"],
                            capture_output=True, text=True, timeout=180,
                            env=no_storage_credentials(server.url))
    assert failed.returncode != 0


def test_artifacts_only_server_behind_a_tracking_server(folder, tmp_path, s3, monkeypatch):
    """Scenario 6: one server only serves artifacts; the tracking server points at it."""
    for name, value in s3["env"].items():
        monkeypatch.setenv(name, value)
    artifacts = mlflow_magic.start(tmp_path / "artifact-server", use=False, artifacts_only=True,
                                   artifacts_destination="s3://mlflow/only").server
    try:
        root = f"{artifacts.url}/api/2.0/mlflow-artifacts/artifacts/experiments"
        tracking = mlflow_magic.start(folder, use=False, serve_artifacts=False,
                                      default_artifact_root=root).server
        run_id = client_run(CLIENT, no_storage_credentials(tracking.url), "scenario-6"
                            ).split()[-1]
        read = client_run(READER, no_storage_credentials(tracking.url), run_id, "scenario-6")
        assert "a model card" in read
        keys = [o["Key"] for o in s3["client"].list_objects_v2(
            Bucket="mlflow", Prefix="only/")["Contents"]]
        assert any(k.endswith(f"{run_id}/artifacts/model/card.md") for k in keys)
        assert "none (artifacts only)" in str(mlflow_magic.status(tmp_path / "artifact-server"))
    finally:
        mlflow_magic.stop(tmp_path / "artifact-server")


def test_two_servers_on_one_store_serve_the_same_experiments(folder, tmp_path, postgres, s3,
                                                             monkeypatch):
    """Scale out by adding servers: a run logged through one is read through the other."""
    for name, value in s3["env"].items():
        monkeypatch.setenv(name, value)
    settings = {"backend_store_uri": postgres, "artifacts_destination": "s3://mlflow/scale"}
    one = mlflow_magic.start(folder, use=False, **settings).server
    other_folder = tmp_path / "second-host"
    try:
        two = mlflow_magic.start(other_folder, use=False, workers=2, **settings).server
        assert one.url != two.url
        run_id = client_run(CLIENT, no_storage_credentials(one.url), "scale-out").split()[-1]
        read = client_run(READER, no_storage_credentials(two.url), run_id, "scale-out")
        assert read.split()[:4] == ["READ", "0.5", "0.25", "1"] and "a model card" in read
    finally:
        mlflow_magic.stop(other_folder)


def test_psycopg2_stands_in_for_a_missing_psycopg(folder, postgres, monkeypatch):
    """MLflow's docs say `pip install psycopg2-binary`; SQLAlchemy 2.1 wants psycopg 3."""
    from mlflow_magic.settings import config

    installed = config._module_installed
    monkeypatch.setattr(config, "_module_installed",
                        lambda module: module != "psycopg" and installed(module))
    server = mlflow_magic.start(folder, use=False, backend_store_uri=postgres).server
    assert server.settings["backend_store_uri"].startswith("postgresql+psycopg2://postgres:***@")
    assert "postgresql+psycopg2://" in str(mlflow_magic.status(folder))
    client_run(CLIENT, no_storage_credentials(server.url), "psycopg2")


@pytest.mark.integration
def test_basic_auth_server_and_connect(folder, monkeypatch, clean_tracking_env):
    admin_password = "admin-pw-s3cret-123"
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", admin_password)
    result = mlflow_magic.start(folder, use=False, app_name="basic-auth")
    server = result.server
    assert "MLFLOW_TRACKING_USERNAME" in str(result)
    assert (folder / "basic_auth.db").exists()

    def status_of(auth: tuple[str, str] | None, key: bool = True) -> int:
        """What MLflow's login says; ``key=False``: what the server's gate says first to a
        browser, which needs the key (the owner's other programs get in by their user)."""
        req = urllib.request.Request(f"{server.url}/api/2.0/mlflow/experiments/search"
                                     "?max_results=1",
                                     headers=owner(server.url) if key else BROWSER_MARKS)
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status_of(None) == 401
    assert status_of(("admin", "wrong-password-123")) == 401
    assert status_of(("admin", admin_password)) == 200
    # MLflow's own launcher (an auth app) serves behind the gate too: the right login
    # alone, without the folder's key, does not get a browser in.
    assert server.private and status_of(("admin", admin_password), key=False) == 401
    assert mlflow_magic.status(folder).running

    with pytest.raises(mlflow_magic.MlflowMagicError, match="MLFLOW_TRACKING_USERNAME"):
        mlflow_magic.connect(server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-password-123")
    with pytest.raises(mlflow_magic.MlflowMagicError, match="refused the user name"):
        mlflow_magic.connect(server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
    assert "Connected to MLflow" in str(mlflow_magic.connect(server.url))
    client_run(CLIENT, {**no_storage_credentials(server.url),
                        "MLFLOW_TRACKING_USERNAME": "admin",
                        "MLFLOW_TRACKING_PASSWORD": admin_password}, "with-login")

    # A restart keeps the users and the secret key; the password is nowhere to be seen.
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD")
    again = mlflow_magic.restart(folder, use=False).server
    assert again.settings["app_name"] == "basic-auth" and status_of(None) == 401
    shown = [str(mlflow_magic.status(folder)), records.record_path(folder).read_text(),
             records.options_path(folder).read_text(), str(mlflow_magic.logs(folder, 500)),
             " ".join(serving(again).cmdline())]
    assert not [text for text in shown if admin_password in text]


def test_basic_auth_without_an_admin_password_is_explained(folder, monkeypatch):
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    with pytest.raises(mlflow_magic.MlflowMagicError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        mlflow_magic.start(folder, use=False, app_name="basic-auth")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "short")
    with pytest.raises(mlflow_magic.MlflowMagicError, match="too short"):
        mlflow_magic.start(folder, use=False, app_name="basic-auth")
    assert records.read_record(folder) is None
