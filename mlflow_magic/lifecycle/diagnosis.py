"""What a server's log says about its start: the phase it is in, and a fix for a failure.

Read by the manager from the log's end while a server starts, and when it fails.
The log lines it looks for are MLflow's, uvicorn's and mlflow_magic's own
(``contract``); the phases are what a start's progress shows.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from ..contract import DATABASE_TABLES, OUT_OF_DATE, SERVER_PROCESS_STARTED, UVICORN_RUNNING
from ..settings.masking import mask_text, mask_uri
from ..state import logfile

#: How many lines of the log an error message or a status shows.
LOG_TAIL_LINES = 30

#: The start-up phases, in order, as reported to a Progress callback.
PHASE_ORDER = ("starting Python and MLflow", "preparing database", "starting web server",
               "waiting for health", "ready")
#: Reported while waiting for a running server that does not answer yet.
BUSY_PHASE = "the server is busy: waiting for it to answer"

#: Log lines that tell which start-up phase the server is in, latest phase first.
PHASES = (
    (UVICORN_RUNNING, "waiting for health"),
    (SERVER_PROCESS_STARTED, "starting web server"),
    (DATABASE_TABLES, "preparing database"),
)


def phase(text: str) -> str:
    """Which start-up phase the server's log (its end, since the start) shows so far."""
    for marker, phase in PHASES:
        if marker in text:
            return phase
    return PHASE_ORDER[0]


def hint(log_tail: str, backend_store_uri: str | None) -> str | None:
    """A specific fix for the known causes of a failed start, found in the log."""
    lowered = log_tail.lower()
    charset = _NOT_UTF8MB4.search(lowered)
    if charset:
        return _charset_fix(charset.group(1), backend_store_uri)
    if OUT_OF_DATE.lower() in lowered:  # our guard's message and MLflow's own
        return (f"The database was created by an older MLflow and was left as it is. Start "
                "again with --upgrade-db to back up the SQLite file next to it and upgrade it, "
                "or back it up yourself and run "
                f"`mlflow db upgrade {mask_uri(backend_store_uri)}`.")
    if "usage: mlflow server" in lowered:
        return ("`mlflow server` refused its arguments: check the ones you passed after `--` "
                "(`mlflow server --help` lists them).")
    if "address already in use" in lowered:
        return "Its port was taken by another process meanwhile; start again."
    if "no space left on device" in lowered or "database or disk is full" in lowered:
        return "The disk of the data folder is full: free some space and start again."
    if "read-only file system" in lowered or "permission denied" in lowered:
        return ("The server cannot write to the data folder: choose a writable folder with "
                "--path, or fix its permissions.")
    unknown_host = re.search(r"could not translate host name \"([^\"]+)\"|"
                             r"unknown mysql server host '([^']+)'|"
                             r"failed to resolve host '([^']+)'", lowered)
    if unknown_host:
        host = next(g for g in unknown_host.groups() if g)
        return (f"The database host {host!r} in {mask_uri(backend_store_uri)} is not known to "
                "this machine: check the host name in --backend-store-uri (and that this "
                "machine can reach it).")
    missing_db = re.search(r"database \"([^\"]+)\" does not exist|unknown database '([^']+)'",
                           lowered)
    if missing_db:
        name = missing_db.group(1) or missing_db.group(2)
        return (f"The database {name!r} does not exist on that server: create it first "
                f"(`createdb {name}` for PostgreSQL, `CREATE DATABASE {name} CHARACTER SET "
                "utf8mb4 COLLATE utf8mb4_bin;` for MariaDB/MySQL), or name another in "
                "--backend-store-uri.")
    if "access denied for user" in lowered:
        return "The database refused the user name or password in --backend-store-uri."
    if "connection refused" in lowered or "could not connect" in lowered \
            or "can't connect to mysql server" in lowered:
        return (f"The database at {mask_uri(backend_store_uri)} does not accept "
                "connections: check that it runs and that host, port and credentials are "
                "right.")
    if "password authentication failed" in lowered:
        return "The database refused the user name or password in --backend-store-uri."
    missing = re.search(r"no module named '([^'.]+)", lowered)
    if missing:
        return f"A Python module is missing: install it with `pip install {missing.group(1)}`."
    return None


#: MariaDB's and MySQL's refusal of MLflow's ``utf8mb4_bin`` collation in a database of
#: another character set (MLflow 3.18's first migration; server default latin1).
_NOT_UTF8MB4 = re.compile(r"collation 'utf8mb4\w*' is not valid for character set '(\w+)'")


def _charset_fix(charset: str, backend_store_uri: str | None) -> str:
    """Why MLflow cannot use a MariaDB/MySQL database in ``charset``, and the commands that
    convert it: MLflow's tables compare names with ``utf8mb4_bin``."""
    parts = urlsplit(backend_store_uri or "")
    name = parts.path.lstrip("/").split("/", 1)[0] or "<database>"
    host = f" -h {parts.hostname}" if parts.hostname else ""
    port = f" -P {parts.port}" if parts.port else ""
    user = f" -u {parts.username}" if parts.username else ""
    alter = f"ALTER DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;"
    return (f"The database {name} uses the character set {charset}, and MLflow needs "
            "utf8mb4 (its tables compare names with utf8mb4_bin). For a new, empty database, "
            f"run `mariadb{host}{port}{user} -p -e '{alter}'` and start again. For one that "
            f"holds data, back it up first (`mariadb-dump{host}{port}{user} -p "
            f"--default-character-set=utf8mb4 {name} > {name}-backup.sql`), then run that "
            "ALTER DATABASE and, for each of its tables, `ALTER TABLE <table> CONVERT TO "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;`. A server whose default character "
            "set is utf8mb4 (`character-set-server = utf8mb4`, as in Debian's packaged "
            "configuration) creates new databases right.")


#: What a server's log says when its database cannot be reached at all: MLflow retries for
#: minutes, a start says so at once.
_STORE_UNREACHABLE = re.compile(
    r"could not translate host name|failed to resolve host|unknown mysql server host|"
    r"name or service not known|password authentication "
    r"failed|access denied for user|database \"[^\"]+\" does not exist|unknown database '|"
    r"connection to server at .* failed|can't connect to mysql server|could not connect to "
    r"server", re.I)


def store_unreachable(log_tail: str) -> str | None:
    """The first line of a start's log that says its database cannot be reached, if any."""
    for line in log_tail.splitlines():
        if _STORE_UNREACHABLE.search(line):
            return mask_text(line.strip())
    return None


def log_tail(log: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The end of the log (from ``offset``, where a start began), secrets masked, for an
    error message or a status."""
    return mask_text(logfile.tail(log, lines, offset))
