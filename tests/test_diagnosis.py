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


def test_a_latin1_database_gets_its_name_and_the_commands_with_no_password():
    log = ("sqlalchemy.exc.OperationalError: (pymysql.err.OperationalError) (1253, "
           "\"COLLATION 'utf8mb4_bin' is not valid for CHARACTER SET 'latin1'\")")
    said = hint(log, "mysql+pymysql://u:secret@db.example:3307/runs")
    assert said is not None and "secret" not in said
    assert said.startswith("The database runs uses the character set latin1")
    assert "mariadb -h db.example -P 3307 -u u -p -e 'ALTER DATABASE runs CHARACTER SET " \
           "utf8mb4 COLLATE utf8mb4_bin;'" in said
    assert "mariadb-dump -h db.example -P 3307 -u u -p --default-character-set=utf8mb4 runs" \
           in said
