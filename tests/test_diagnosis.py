"""Reading a start's log: the phase it shows, and the fix for a failure (pure)."""

from __future__ import annotations

import pytest

from mlflow_magic.lifecycle.diagnosis import PHASE_ORDER, hint, phase


def test_the_phase_is_the_latest_the_log_shows():
    log = ["", "INFO Creating initial MLflow database tables...",
           "INFO:     Started server process [123]", "INFO:     Uvicorn running on http://..."]
    seen = [phase("\n".join(log[:i + 1])) for i in range(len(log))]
    assert seen == [PHASE_ORDER[0], "preparing database", "starting web server",
                    "waiting for health"]
    assert phase(log[3] + "\n" + log[1]) == "waiting for health"  # order in the log: no matter


@pytest.mark.parametrize(("log", "words"), [
    ("alembic: Detected out-of-date database schema (found 1, expected 2)",
     ["--upgrade-db", "mlflow db upgrade postgresql://u:***@db/x"]),
    ("usage: mlflow server [OPTIONS]\nError: No such option: --bogus", ["after `--`"]),
    ("OSError: [Errno 98] Address already in use", ["port was taken"]),
    ("sqlite3.OperationalError: database or disk is full", ["disk", "full"]),
    ("PermissionError: [Errno 13] Permission denied: '/d/mlflow.db'", ["--path"]),
    ('connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused',
     ["postgresql://u:***@db/x", "does not accept connections"]),
    ("FATAL:  password authentication failed for user \"u\"", ["user name or password"]),
    ("ModuleNotFoundError: No module named 'psycopg2'", ["pip install psycopg2"]),
])
def test_known_failures_get_their_fix_with_the_password_masked(log, words):
    said = hint(log, "postgresql://u:secret@db/x")
    assert said is not None
    for word in words:
        assert word in said
    assert "secret" not in said


def test_an_unknown_failure_gets_no_guess():
    assert hint("Traceback ...\nValueError: something new", None) is None
