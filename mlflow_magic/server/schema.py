"""Protect a database made by an older MLflow: refuse it, or back it up before upgrading it.

Runs in the server process, before ``mlflow server`` opens the store. MLflow
itself refuses an older schema only when every table it knows already exists;
when a newer MLflow added a table (3.17 does), it migrates the database in
place, silently and with no way back. Here an older schema is always refused
with the upgrade command, unless the user opted in with ``--upgrade-db``:
then an SQLite file is copied next to itself first, and MLflow migrates it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from ..contract import OUT_OF_DATE
from ..internals import schema_revisions, upgrade_schema


def current_revision(uri: str) -> str | None:
    """The schema revision of the database at ``uri``; None for a new or empty one, or
    one that cannot be read now (MLflow then retries and reports it in its own way)."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri)
    except Exception:
        return None
    try:
        if "alembic_version" not in sqlalchemy.inspect(engine).get_table_names():
            return None
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")
                                ).scalar()
    except sqlalchemy.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def sqlite_file(uri: str) -> Path | None:
    """The file of an ``sqlite:///`` URI (None for in-memory or other databases)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def guard(uri: str | None, upgrade: bool) -> None:
    """Refuse an older schema (exit 1, message in the log), or back it up for the upgrade."""
    if not uri or "://" not in uri:
        return
    db = sqlite_file(uri)
    if uri.startswith("sqlite:") and (db is None or not db.exists()):
        return
    found = current_revision(uri)
    if found is None:
        return
    head, known = schema_revisions()
    if found == head or found not in known:  # current, or newer: MLflow decides
        return
    if not upgrade:
        print(f"mlflow_magic: {OUT_OF_DATE} (found version {found}, but expected {head}). "
              "It was left as it is.", file=sys.stderr, flush=True)
        raise SystemExit(1)
    if db is not None:
        backup = db.with_name(f"{db.name}.backup-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(db, backup)
        os.chmod(backup, 0o600)
        print(f"mlflow_magic: backed up {db} to {backup}; upgrading the schema from {found} "
              f"to {head}", file=sys.stderr, flush=True)
    upgrade_schema(uri)
