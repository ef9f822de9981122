"""A new SQLite database is a copy of a template MLflow made once; it must be exactly
what MLflow would have made itself, and anything odd must leave it to MLflow."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

import mlflow_magic
from mlflow_magic.contract import CACHE_DIR_ENV, DATABASE_COPIED
from mlflow_magic.server import newdb
from mlflow_magic.state import records


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache folder holding this MLflow's template (built once for the module)."""
    folder = tmp_path_factory.mktemp("cache")
    assert newdb.template(folder) is not None
    return folder


def clauses(sql: str | None) -> list[str]:
    """A CREATE statement's clauses, sorted: MLflow's migrations write a table's CHECK
    constraints in an order that changes from one Python process to the next."""
    return sorted(line.strip().rstrip(",") for line in (sql or "").splitlines())


def contents(path: Path) -> tuple[list, dict]:
    """Schema and rows, without the default experiment's creation and update times."""
    with sqlite3.connect(path) as db:
        schema = [(kind, name, clauses(sql)) for kind, name, sql in db.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")]
        tables = [name for kind, name, _ in schema if kind == "table"]
        rows = {name: db.execute(f'SELECT * FROM "{name}"').fetchall() for name in tables}
        columns = [c[1] for c in db.execute("PRAGMA table_info(experiments)")]
    keep = [i for i, c in enumerate(columns) if c not in ("creation_time", "last_update_time")]
    rows["experiments"] = [tuple(r[i] for i in keep) for r in rows["experiments"]]
    return schema, rows


def open_with_mlflow(db: Path, artifacts: Path) -> None:
    """What `mlflow server` does to the database when it starts."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{db}", str(artifacts))
    store.engine.dispose()


@pytest.mark.integration
def test_a_copied_database_is_the_one_mlflow_makes_itself(cache, tmp_path):
    own, copied = tmp_path / "own.db", tmp_path / "copied.db"
    open_with_mlflow(own, tmp_path / "artifacts")  # MLflow's migrations
    assert newdb.seed(f"sqlite:///{copied}", cache)
    open_with_mlflow(copied, tmp_path / "artifacts")  # MLflow opens it as existing
    assert contents(copied) == contents(own)
    schema, rows = contents(copied)
    assert len(schema) > 50 and [r[1] for r in rows["experiments"]] == ["Default"]


@pytest.mark.integration
def test_the_template_is_made_once_and_every_new_database_is_a_copy(cache, tmp_path):
    template = newdb.template(cache)
    made = template.stat().st_mtime_ns
    for name in ("a", "b"):
        db = tmp_path / name / "mlflow.db"
        assert newdb.seed(f"sqlite:///{db}", cache)
        assert db.read_bytes() == template.read_bytes()
    assert newdb.template(cache).stat().st_mtime_ns == made
    assert not list(tmp_path.rglob("*.new"))  # no leftovers next to the database


@pytest.mark.integration
def test_existing_and_other_databases_are_left_to_mlflow(cache, tmp_path):
    existing = tmp_path / "mlflow.db"
    existing.write_bytes(b"the user's own bytes")
    assert not newdb.seed(f"sqlite:///{existing}", cache)
    assert existing.read_bytes() == b"the user's own bytes"
    for uri in ("sqlite:///:memory:", "sqlite://", "postgresql://u:pw@h/db", "./mlruns", None):
        assert not newdb.seed(uri, cache)


@pytest.mark.integration
def test_a_damaged_template_is_made_again(tmp_path):
    name = newdb.template_name()
    (tmp_path / name).write_bytes(b"not a database")
    path = newdb.template(tmp_path)
    assert path == tmp_path / name and newdb.looks_empty(path)


def test_no_cache_leaves_the_database_to_mlflow(tmp_path):
    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("")
    db = tmp_path / "data" / "mlflow.db"
    assert not newdb.seed(f"sqlite:///{db}", blocked / "cache")
    assert not db.exists()


def test_only_the_newest_templates_of_other_versions_are_kept(tmp_path):
    current = tmp_path / "sqlite-mlflow-9.9.9-current.db"
    current.write_bytes(b"")
    for age in range(newdb.KEEP + 3):
        old = tmp_path / f"sqlite-mlflow-1.{age}.0-x.db"
        old.write_bytes(b"")
        os.utime(old, (1_000_000 - age, 1_000_000 - age))
    newdb.prune(tmp_path, current)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([current.name, *(f"sqlite-mlflow-1.{a}.0-x.db"
                                           for a in range(newdb.KEEP))])


@pytest.mark.integration
def test_a_second_folder_starts_from_the_template_and_keeps_its_own_artifacts(
        folder, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "fresh-cache"))
    first = mlflow_magic.start(folder, use=False).server
    first_log = records.log_path(folder).read_text()
    assert "Creating initial MLflow database tables" in first_log  # MLflow made the template
    assert DATABASE_COPIED in first_log
    second_folder = tmp_path / "second"
    try:
        second = mlflow_magic.start(second_folder, use=False).server
        log = records.log_path(second_folder).read_text()
        assert DATABASE_COPIED in log and "Creating initial" not in log
        client = MlflowClient(tracking_uri=second.url)
        assert client.get_experiment("0").name == "Default"
        run = client.create_run("0")
        (tmp_path / "hello.txt").write_text("hello")
        client.log_artifact(run.info.run_id, str(tmp_path / "hello.txt"))
        assert list(second_folder.rglob("hello.txt"))
        assert not list(folder.rglob("hello.txt"))
        assert [r.info.run_id for r in client.search_runs(["0"])] == [run.info.run_id]
        assert MlflowClient(tracking_uri=first.url).search_runs(["0"]) == []
    finally:
        mlflow_magic.stop(second_folder)
