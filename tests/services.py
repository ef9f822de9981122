"""Services the tests and the benchmarks start for themselves (a throwaway PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Debian's PostgreSQL server binaries (the newest installed), or $PG_BIN.
PG_BIN = Path(os.environ.get("PG_BIN") or max(
    Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/usr/lib/postgresql/15/bin"),
    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0))


def free_port() -> int:
    """A port free at this moment (tests never count on it staying free)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_cluster(password: str = "pg-s3cret-pw") -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port, stopped and removed afterwards; yields
    the URI of its database ``mlflow``, with a password."""
    # Not under pytest's tmp folder: the postgres user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="mlflow-magic-pg-"))
    (root / "pw").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pw", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                 f"--pwfile={root / 'pw'}", "--auth-host=scram-sha-256",
                                 "--auth-local=trust", "--no-sync"]),
                   check=True, capture_output=True)
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data)]
    subprocess.run(_as_postgres([*ctl, "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
                                 " -c fsync=off", "-l", str(root / "log"), "-w", "start"]),
                   check=True, capture_output=True)
    try:
        subprocess.run(_as_postgres([str(PG_BIN / "psql"), "-h", str(root), "-p", str(port),
                                     "-U", "postgres", "-c", "CREATE DATABASE mlflow"]),
                       check=True, capture_output=True)
        yield f"postgresql://postgres:{password}@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(_as_postgres([*ctl, "-m", "immediate", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
