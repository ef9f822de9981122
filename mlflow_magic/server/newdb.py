"""A new SQLite database in milliseconds: a copy of an empty one, made once per MLflow.

MLflow creates a new database by running its whole chain of schema migrations,
about 1.5 s of a 6 s cold start on a small machine. The outcome is the same
for every folder: the tables at the newest revision, plus the rows those
migrations add (the default workspace), and no experiment. So the first new
database for an installed MLflow is made by MLflow's own code into a cache
file (the template), and every later one is a copy of it. MLflow then opens
the copy as an existing database and creates the folder's default experiment
itself, with the folder's own artifact location.

Runs in the server process, before ``mlflow server`` opens the store. Anything
unexpected (an unwritable cache, a template that does not look right, MLflow
internals that moved) leaves the database to MLflow, as before: slower, never
wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path

from ..contract import DATABASE_COPIED
from ..internals import create_tables
from ..paths import cache_dir
from .schema import sqlite_file

#: Templates of other MLflow versions kept (for other environments on the machine).
KEEP = 4

def template_name() -> str | None:
    """The template's file name for the installed MLflow, None if it cannot be told.

    The version alone would do for releases; the digest of the migration scripts'
    names also tells apart development installs whose schema moved.
    """
    import importlib.metadata
    import importlib.util

    try:
        spec = importlib.util.find_spec("mlflow")
        version = importlib.metadata.version("mlflow")
    except (ImportError, ValueError, importlib.metadata.PackageNotFoundError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    versions = Path(next(iter(spec.submodule_search_locations))) / "store/db_migrations/versions"
    try:
        scripts = sorted(p.name for p in versions.iterdir() if p.suffix == ".py")
    except OSError:
        return None
    digest = hashlib.sha1("\n".join(scripts).encode()).hexdigest()[:12]
    return f"sqlite-mlflow-{version}-{digest}.db"


def looks_empty(path: Path) -> bool:
    """A database at some revision, with every table MLflow needs and no experiment."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        experiments = conn.execute("SELECT count(*) FROM experiments").fetchone()[0]
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    return len(revision) == 1 and experiments == 0 and runs == 0


def build(template: Path) -> bool:
    """Make ``template`` with MLflow's own table creation and migrations; False on failure."""
    partial = template.with_name(f"{template.name}.{os.getpid()}.partial")
    try:
        complete = create_tables(f"sqlite:///{partial}")
        if not complete or not looks_empty(partial):
            return False
        os.replace(partial, template)  # whole or not at all, also with a concurrent build
        return True
    except Exception as exc:  # whatever it is, MLflow makes the database itself instead
        print(f"mlflow_magic: no database template ({exc}); MLflow creates the tables",
              file=sys.stderr, flush=True)
        return False
    finally:
        partial.unlink(missing_ok=True)


def prune(folder: Path, keep: Path) -> None:
    """Drop all but the newest templates, so old MLflow versions do not pile up."""
    others = sorted((p for p in folder.glob("sqlite-mlflow-*.db") if p != keep),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in others[KEEP:]:
        old.unlink(missing_ok=True)


def template(folder: Path) -> Path | None:
    """This MLflow's template in ``folder``, made now if missing; None if there is none."""
    name = template_name()
    if name is None:
        return None
    path = folder / name
    if path.is_file() and looks_empty(path):
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not build(path):
        return None
    with contextlib.suppress(OSError):
        prune(folder, path)
    return path


def seed(uri: str | None, folder: Path | None = None) -> bool:
    """Give a SQLite URI whose file does not exist yet a copy of the template.

    True if the file was made here; False leaves it to MLflow (another database, an
    existing file, or no template).
    """
    db = sqlite_file(uri) if uri else None
    if db is None or db.exists():
        return False
    source = template(folder or cache_dir())
    if source is None:
        return False
    copy = db.with_name(f".{db.name}.{os.getpid()}.new")
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source.read_bytes())
        os.link(copy, db)  # never over a file someone made meanwhile
    except OSError:
        return False
    finally:
        copy.unlink(missing_ok=True)
    print(f"{DATABASE_COPIED} {source}", file=sys.stderr, flush=True)
    return True
