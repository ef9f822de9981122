"""``start --sync-to URL``: log to the folder's own server, see every change on the team server
within seconds, lose nothing while it is down.

The team server is real (PostgreSQL, artifacts in SeaweedFS's S3, MLflow's basic-auth login,
see ``team_server`` in conftest.py); what is checked is read back from it with MLflow's own
client. The pure parts (which requests are writes, the journal, the flags) come first.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import ADMIN_PASSWORD, Kernel, wait_for

import mlflow_magic
from mlflow_magic.contract import PUSH_SOURCE_TAG, SYNC_IN_SYNC, SYNC_TO_ENV, SYNC_WAITING
from mlflow_magic.errors import ConfigError
from mlflow_magic.lifecycle import launch
from mlflow_magic.server import journal as server_journal
from mlflow_magic.settings.arguments import build_parser, server_options
from mlflow_magic.settings.config import resolve
from mlflow_magic.settings.options import ServerOptions
from mlflow_magic.state import journal, syncstate
from mlflow_magic.tracking import environment

# --- pure logic ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "write"), [
    ("POST", "/api/2.0/mlflow/runs/log-batch", True),
    ("POST", "/ajax-api/2.0/mlflow/runs/set-tag", True),
    ("POST", "/api/2.0/mlflow/runs/search", False),
    ("POST", "/api/3.0/mlflow/traces/search", False),
    ("GET", "/api/2.0/mlflow/runs/get", False),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model.pkl", True),
    ("POST", "/api/3.0/mlflow/traces", True),
    ("POST", "/v1/traces", True),
    ("POST", "/graphql", False),
    ("DELETE", "/api/2.0/mlflow/registered-models/delete", True),
])
def test_which_requests_are_writes(method, path, write):
    assert server_journal.is_write(method, path) is write


def test_a_write_becomes_the_line_that_names_what_changed():
    batch = (b'{"run_id": "r1", "metrics": [{"key": "a", "value": 1, "timestamp": 1, "step": 0},'
             b' {"key": "a", "value": 2, "timestamp": 2, "step": 1}], "params": []}')
    assert server_journal.classify("/api/2.0/mlflow/runs/log-batch", batch, b"{}", 0) == {
        "k": journal.RUN, "r": "r1", "n": 2}
    assert server_journal.classify(
        "/api/2.0/mlflow/runs/create", b'{"experiment_id": "3"}',
        b'{"run": {"info": {"run_id": "new1", "experiment_id": "3"}}}', 0) == {
        "k": journal.NEW_RUN, "r": "new1", "e": "3"}
    assert server_journal.classify(
        "/api/2.0/mlflow-artifacts/artifacts/3/r1/artifacts/dir/f.bin", b"", b"", 1234) == {
        "k": journal.ARTIFACT, "r": "r1", "b": 1234}
    assert server_journal.classify(
        "/api/2.0/mlflow-artifacts/artifacts/3/models/m-1/artifacts/MLmodel", b"", b"", 9) == {
        "k": journal.MODEL, "e": "3"}
    assert server_journal.classify("/api/2.0/mlflow/model-versions/create",
                                   b'{"name": "m"}', b"{}", 0) == {"k": journal.REGISTRY}
    assert server_journal.classify("/api/2.0/mlflow/unknown/thing", b"{}", b"{}", 0) == {
        "k": journal.OTHER}


def test_the_journal_is_read_from_the_cursor_and_emptied_only_once_read(tmp_path, monkeypatch):
    path = str(tmp_path / "journal")
    journal.append(path, {"k": journal.RUN, "r": "a", "n": 3})
    journal.append(path, {"k": journal.ARTIFACT, "r": "a", "b": 2_000_000})
    journal.append(path, {"k": journal.REGISTRY})
    with open(path, "ab") as fh:
        fh.write(b'{"k": "run", "r": "half')  # a line being written: left for later
    entries, end = journal.read(path, 0)
    changes = journal.Changes.of(entries)
    assert (changes.runs, changes.artifact_runs, changes.points, changes.bytes,
            changes.kinds) == ({"a"}, {"a"}, 3, 2_000_000, {journal.REGISTRY})
    assert journal.read(path, end) == ([], end)
    monkeypatch.setattr(journal, "TRUNCATE_AT", 10)
    assert not journal.truncate_if_read(path, end)  # the half line is not read yet
    with open(path, "ab") as fh:
        fh.write(b'"}\n')
    entries, end = journal.read(path, end)
    assert entries == [{"k": "run", "r": "half"}] and journal.truncate_if_read(path, end)
    assert journal.size(path) == 0


def test_the_sync_state_keys_a_server_without_its_credentials():
    assert syncstate.target_key("https://u:pw@team.example:8443/") == syncstate.target_key(
        "https://other:x@team.example:8443")
    assert syncstate.target_key("https://team.example") != syncstate.target_key(
        "https://team2.example")
    assert "pw" not in syncstate.SyncState.new("https://u:pw@team.example").to_json()


def test_sync_to_is_a_flag_restart_keeps_and_no_sync_turns_off():
    parser = build_parser()
    assert server_options(parser.parse_args(
        ["start", "--sync-to", "https://team.example"])).sync_to == "https://team.example"
    assert server_options(parser.parse_args(["restart", "--no-sync"])).sync_to == ""
    assert server_options(parser.parse_args(["restart"])).sync_to is None  # keeps it
    with pytest.raises(ConfigError, match=r"--sync-to needs the http\(s\) URL"):
        resolve(ServerOptions(path="/tmp/x", sync_to="team.example:5000"))
    config = resolve(ServerOptions(path="/tmp/x", sync_to="https://u:secret@team.example/"))
    assert config.settings()["sync_to"] == "https://u:***@team.example"


def test_the_sync_runs_with_the_servers_credentials_and_the_team_url_but_not_its_socket():
    config = resolve(ServerOptions(path="/tmp/x", sync_to="https://team.example"))
    env = {"MLFLOW_TRACKING_USERNAME": "me", launch.LISTEN_FD_ENV: "3",
           launch.TOKEN_ENV: "tok"}
    spec = launch.sync_spec(config, env, {})
    assert spec is not None and spec["argv"][-3:] == ["-m", "mlflow_magic.syncer.main",
                                                      "/tmp/x"]
    assert spec["env"] == {"MLFLOW_TRACKING_USERNAME": "me", launch.TOKEN_ENV: "tok",
                           SYNC_TO_ENV: "https://team.example"}
    assert launch.sync_spec(resolve(ServerOptions(path="/tmp/x")), env, {}) is None


# --- with a real team server -------------------------------------------------------------------


def team_client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(url)  # MLFLOW_TRACKING_USERNAME / PASSWORD: the team's admin


def copy_of(url: str, experiment: str, run_id: str):
    """The team server's copies of a local run (active or deleted)."""
    client = team_client(url)
    there = client.get_experiment_by_name(experiment)
    if there is None:
        return []
    return client.search_runs([there.experiment_id], f"tags.`{PUSH_SOURCE_TAG}` = '{run_id}'",
                              run_view_type=3)


def points_there(url: str, experiment: str, run_id: str, key: str) -> int:
    copies = copy_of(url, experiment, run_id)
    if not copies:
        return 0
    assert len(copies) == 1, "a run was copied twice"
    return len(team_client(url).get_metric_history(copies[0].info.run_id, key))


def sync_state(folder: Path) -> dict:
    return json.loads((folder / ".mlflow_magic" / "sync.json").read_text())


def sync_processes(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "mlflow_magic.syncer.main" in cmd and str(folder) in cmd:
            found.append(proc)
    return found


class Trainer(threading.Thread):
    """A training loop on the folder's own server: ``points`` of metric "loss" over
    ``seconds``, each call timed."""

    def __init__(self, url: str, run_id: str, points: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.run_id, self.points, self.seconds = url, run_id, points, seconds
        self.latencies: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        from mlflow import MlflowClient

        client = MlflowClient(self.url)
        try:
            for step in range(self.points):
                t0 = time.perf_counter()
                client.log_metric(self.run_id, "loss", 1.0 / (step + 1), step=step)
                self.latencies.append(time.perf_counter() - t0)
                time.sleep(self.seconds / self.points)
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def laptop_syncing(tmp_path, team_server):
    """A laptop folder whose server copies to the team server; stopped at the end."""
    folder = tmp_path / "laptop"
    server = mlflow_magic.start(folder, use=False, sync_to=team_server.url).server
    try:
        yield folder, server
    finally:
        mlflow_magic.stop(folder)
        assert not sync_processes(folder)  # `stop` ends the sync with the server


@pytest.mark.integration
def test_a_running_run_shows_on_the_team_server_live_then_its_artifact_and_model_version(
        laptop_syncing, team_server, tmp_path):
    from mlflow import MlflowClient

    folder, server = laptop_syncing
    local = MlflowClient(server.url)
    experiment = local.create_experiment("live")
    run = local.create_run(experiment, run_name="training")
    run_id = run.info.run_id
    local.log_param(run_id, "lr", "0.01")
    trainer = Trainer(server.url, run_id, 300, 30.0)
    trainer.start()
    # Live: the team server has points of the run while it is still running.
    wait_for(lambda: points_there(team_server.url, "live", run_id, "loss") >= 50, timeout=60)
    assert trainer.is_alive()
    (copy,) = copy_of(team_server.url, "live", run_id)
    assert copy.info.status == "RUNNING" and copy.data.params == {"lr": "0.01"}
    assert copy.info.run_name == "training"
    trainer.join(timeout=120)
    assert trainer.error is None
    blob = tmp_path / "weights.bin"
    blob.write_bytes(os.urandom(3_000_000))
    local.log_artifact(run_id, str(blob), "model")
    local.set_terminated(run_id)
    local.create_registered_model("live-model")
    local.create_model_version("live-model", f"runs:/{run_id}/model", run_id)
    # Everything follows: every point once, the artifact byte for byte, the version.
    team = team_client(team_server.url)
    wait_for(lambda: points_there(team_server.url, "live", run_id, "loss") == 300
             and copy_of(team_server.url, "live", run_id)[0].info.status == "FINISHED",
             timeout=60)
    copy_id = copy_of(team_server.url, "live", run_id)[0].info.run_id
    wait_for(lambda: [f.path for f in team.list_artifacts(copy_id, "model")]
             == ["model/weights.bin"], timeout=60)
    got = team.download_artifacts(copy_id, "model/weights.bin", str(tmp_path / "back"))
    assert hashlib.sha256(Path(got).read_bytes()).hexdigest() == hashlib.sha256(
        blob.read_bytes()).hexdigest()
    versions = wait_for(lambda: team.search_model_versions("name='live-model'"), timeout=60)
    assert versions[0].run_id == copy_id
    # Status says so, and the finished run was compared once, with nothing found.
    status = wait_for(lambda: (s := mlflow_magic.status(folder)).sync is not None
                      and s.sync.state == SYNC_IN_SYNC and s, timeout=30)
    assert f"in sync with {team_server.url}" in str(status), str(status)
    state = sync_state(folder)
    assert run_id in state["verified"] and state["differences"] == []
    assert "in sync" in str(mlflow_magic.sync(folder))


@pytest.mark.integration
def test_a_team_server_outage_loses_nothing_and_doubles_nothing(laptop_syncing, team_server):
    from mlflow import MlflowClient

    folder, server = laptop_syncing
    local = MlflowClient(server.url)
    run_id = local.create_run(local.create_experiment("outage")).info.run_id
    wait_for(lambda: copy_of(team_server.url, "outage", run_id), timeout=60)
    team_server.stop()
    down = time.monotonic()
    trainer = Trainer(server.url, run_id, 600, 50.0)
    trainer.start()
    # While it is down: logging goes on, and status says what waits and why.
    status = wait_for(lambda: (s := mlflow_magic.status(folder)).sync is not None
                      and s.sync.state == SYNC_WAITING and "metric points" in str(s) and s,
                      timeout=60)
    text = str(status)
    assert f"waiting for {team_server.url} (see below), behind by 1 run, " in text, text
    assert "does not answer" in text and "Nothing is lost" in text, text
    trainer.join(timeout=120)
    assert trainer.error is None and len(trainer.latencies) == 600
    time.sleep(max(0.0, 60 - (time.monotonic() - down)))
    local.set_terminated(run_id)
    team_server.start()  # on the same port
    wait_for(lambda: points_there(team_server.url, "outage", run_id, "loss") == 600
             and copy_of(team_server.url, "outage", run_id)[0].info.status == "FINISHED",
             timeout=120)
    status = wait_for(lambda: (s := mlflow_magic.status(folder)).sync.state == SYNC_IN_SYNC
                      and s, timeout=60)
    assert status.sync.last_error is None
    state = sync_state(folder)
    assert run_id in state["verified"] and state["differences"] == []
    assert len(copy_of(team_server.url, "outage", run_id)) == 1


@pytest.mark.integration
def test_a_sync_killed_in_the_middle_of_a_large_artifact_finishes_it_once(
        laptop_syncing, team_server, tmp_path):
    from mlflow import MlflowClient

    folder, server = laptop_syncing
    local = MlflowClient(server.url)
    run_id = local.create_run(local.create_experiment("crash")).info.run_id
    wait_for(lambda: copy_of(team_server.url, "crash", run_id), timeout=60)
    (before,) = wait_for(lambda: sync_processes(folder), timeout=30)
    blob = tmp_path / "big.bin"
    blob.write_bytes(os.urandom(50_000_000))
    local.log_artifact(run_id, str(blob))
    local.set_terminated(run_id)
    # The sync reads the journal every half second and uploads 50 MB: kill it meanwhile.
    time.sleep(1.0)
    before.kill()
    # The keeper starts it again; it reads the copy back and finishes it.
    wait_for(lambda: [p.pid for p in sync_processes(folder)] not in ([], [before.pid]),
             timeout=60)
    team = team_client(team_server.url)
    wait_for(lambda: copy_of(team_server.url, "crash", run_id)[0].info.status == "FINISHED",
             timeout=120)
    (copy,) = copy_of(team_server.url, "crash", run_id)
    assert [(f.path, f.file_size) for f in team.list_artifacts(copy.info.run_id)] == [
        ("big.bin", 50_000_000)]
    state = wait_for(lambda: run_id in (s := sync_state(folder))["verified"] and s, timeout=60)
    assert state["differences"] == []


@pytest.mark.integration
def test_a_wrong_password_is_one_paragraph_in_status_and_the_fix_finishes_the_copy(
        tmp_path, team_server, monkeypatch):
    from mlflow import MlflowClient

    folder = tmp_path / "laptop"
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    try:
        server = mlflow_magic.start(folder, use=False, sync_to=team_server.url).server
        local = MlflowClient(server.url)  # local logging needs no team login
        run_id = local.create_run(local.create_experiment("denied")).info.run_id
        local.log_metric(run_id, "acc", 0.5)
        cli = [sys.executable, "-m", "mlflow_magic.cli", "sync", "--path", str(folder)]
        shown = wait_for(lambda: "refused the sync's login" in (out := subprocess.run(
            cli, capture_output=True, text=True, timeout=60).stdout) and out, timeout=60)
        assert "MLFLOW_TRACKING_PASSWORD" in shown and "Traceback" not in shown, shown
        assert "not-the-password" not in shown + json.dumps(sync_state(folder))
        with environment(MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD):  # nothing half-made there
            assert team_client(team_server.url).get_experiment_by_name("denied") is None
        # The fix: the right password, and a restart that keeps --sync-to.
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        mlflow_magic.restart(folder, use=False)
        wait_for(lambda: points_there(team_server.url, "denied", run_id, "acc") == 1,
                 timeout=60)
        wait_for(lambda: mlflow_magic.status(folder).sync.state == SYNC_IN_SYNC, timeout=60)
    finally:
        mlflow_magic.stop(folder)


@pytest.mark.integration
def test_a_run_deleted_on_the_team_server_is_not_brought_back(laptop_syncing, team_server):
    from mlflow import MlflowClient

    folder, server = laptop_syncing
    local = MlflowClient(server.url)
    run_id = local.create_run(local.create_experiment("gone")).info.run_id
    local.log_metric(run_id, "x", 1.0)
    wait_for(lambda: points_there(team_server.url, "gone", run_id, "x") == 1, timeout=60)
    (copy,) = copy_of(team_server.url, "gone", run_id)
    team_client(team_server.url).delete_run(copy.info.run_id)
    local.log_metric(run_id, "x", 2.0, step=1)
    status = wait_for(lambda: (s := mlflow_magic.status(folder)).sync.left_alone and s,
                      timeout=60)
    assert "deleted on the team server" in str(status), str(status)
    (still,) = copy_of(team_server.url, "gone", run_id)  # no second copy
    assert still.info.lifecycle_stage == "deleted"
    assert points_there(team_server.url, "gone", run_id, "x") == 1


@pytest.mark.integration
def test_in_a_notebook_the_run_card_links_to_the_run_on_the_team_server(tmp_path, team_server):
    """The flag in a real kernel, as a user types it; the %%mlflow_run card links the run's
    copy once it is there, and %mlflow_server sync says where the sync is."""
    folder = tmp_path / "laptop"
    kernel = Kernel({"MLFLOW_PATH": str(folder)})
    try:
        out, errors = kernel.run(f"%load_ext mlflow_magic\n"
                                 f"%mlflow_server start --wait --no-ui --sync-to "
                                 f"{team_server.url}")
        assert errors == [] and "Started" in " ".join(kernel.shown) + out, kernel.shown
        assert mlflow_magic.status(folder).sync is not None
        # The cell runs until the sync has copied the run and noted its copy (the sync's lag,
        # more than a fixed sleep on a loaded machine: each request to the team server costs a
        # password hash), so the card it draws at its end has the link.
        out, errors = kernel.run(
            "%%mlflow_run --experiment nb --name card\n"
            "import mlflow, time\n"
            "from mlflow_magic.front.ui import team_run_link\n"
            "mlflow.log_metric('acc', 0.9)\n"
            "here, deadline = mlflow.active_run().info.run_id, time.monotonic() + 90\n"
            "while not team_run_link(mlflow.get_tracking_uri(), here) "
            "and time.monotonic() < deadline:\n"
            "    time.sleep(0.5)\n")
        assert errors == [], errors
        card = kernel.shown[-1]  # the final card, drawn in place of the live one
        run_id = card.split("MLflow run 'card' (", 1)[1].split(")", 1)[0]
        (copy,) = wait_for(lambda: copy_of(team_server.url, "nb", run_id), timeout=60)
        assert f"{team_server.url}/#/runs/{copy.info.run_id}" in card, card
        assert ">on the team server</a>" in card, card
        out, errors = kernel.run("%mlflow_server sync")
        assert errors == [] and f"Sync of {folder}" in out and team_server.url in out, out
    finally:
        kernel.close()
        mlflow_magic.stop(folder)
