"""server/failures.py: which file a failed upload leaves behind, and the disk-full answer
(the whole path, on a real full disk, is in test_lifecycle.py)."""

from __future__ import annotations

import json

import own_loop
import pytest

from mlflow_magic.server import failures

ROUTE = "/api/2.0/mlflow-artifacts/artifacts/"


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    root.mkdir()
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_DESTINATION", str(root))
    return root


def test_an_upload_names_the_file_it_writes_inside_the_artifact_folder(artifacts):
    scope = {"method": "PUT", "path": ROUTE + "0/abc/artifacts/big.txt"}
    assert failures.uploaded_file(scope) == (artifacts / "0/abc/artifacts/big.txt").resolve()
    ajax = {"method": "PUT", "path": "/ajax-api/2.0/mlflow-artifacts/artifacts/0/x.bin"}
    assert failures.uploaded_file(ajax) == (artifacts / "0/x.bin").resolve()


def test_nothing_outside_the_artifact_folder_or_other_than_an_upload_is_named(artifacts):
    assert failures.uploaded_file({"method": "PUT", "path": ROUTE + "../mlflow.db"}) is None
    assert failures.uploaded_file({"method": "PUT", "path": ROUTE}) is None
    assert failures.uploaded_file({"method": "GET", "path": ROUTE + "0/a.txt"}) is None
    assert failures.uploaded_file({"method": "PUT", "path": "/api/2.0/mlflow/runs/create"}) is None


def test_an_artifact_store_that_is_not_a_local_folder_names_no_file(monkeypatch):
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_DESTINATION", "s3://bucket/artifacts")
    assert failures.uploaded_file({"method": "PUT", "path": ROUTE + "0/a.txt"}) is None
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_DESTINATION", "file:///tmp/somewhere")
    assert str(failures.uploaded_file({"method": "PUT", "path": ROUTE + "a"})).endswith("/a")


def _call(app, scope):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    own_loop.run(failures.asgi(app)(scope, receive, send))
    return sent


def _failing_with(body: bytes, status: int = 500):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})
    return app


def test_a_disk_full_upload_answers_507_and_removes_its_cut_off_copy(artifacts):
    cut_off = artifacts / "0" / "big.txt"
    cut_off.parent.mkdir()
    cut_off.write_bytes(b"x" * 100)  # what an older MLflow's copy leaves
    sent = _call(_failing_with(b"OSError: [Errno 28] No space left on device"),
                 {"type": "http", "method": "PUT", "path": ROUTE + "0/big.txt"})
    assert sent[0]["status"] == 507
    assert "is full" in json.loads(sent[1]["body"])["message"]
    assert not cut_off.exists()


def test_another_server_error_passes_untouched_and_removes_nothing(artifacts):
    kept = artifacts / "kept.txt"
    kept.write_text("mine")
    sent = _call(_failing_with(b"something else broke"),
                 {"type": "http", "method": "PUT", "path": ROUTE + "kept.txt"})
    assert sent[0]["status"] == 500 and sent[1]["body"] == b"something else broke"
    assert kept.read_text() == "mine"
