"""The folder's key and one-time login links: the credentials of a private server.

Every data folder has a key (``.mlflow_magic/key``, 0600), made with its first server and
kept across restarts, so other kernels keep working. The server's gate
(:mod:`mlflow_magic.server.gate`) refuses every request without it; where it goes is
decided by :mod:`mlflow_magic.security.ports`.

A browser gets in by a one-time login link (``?mlflow_magic_login=<code>``, valid for
minutes and for one use) that sets a session cookie, as Jupyter's ``?token=`` login does;
the key itself never appears in a URL, an output or a command line.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path

from .. import contract
from ..state import records


def key_path(data_dir: Path) -> Path:
    return records.record_dir(data_dir) / contract.KEY_FILE


def folder_key(data_dir: Path, create: bool = False) -> str | None:
    """The folder's key; with ``create``, made now if the folder has none yet."""
    try:
        return records.read_private(key_path(data_dir)).strip() or None
    except FileNotFoundError:
        if not create:
            return None
    except OSError:
        return None
    key = secrets.token_urlsafe(32)
    records.write_private(key_path(data_dir), key)
    return key


def new_login(data_dir: Path, port: int) -> str:
    """A one-time login code for the folder's server on ``port`` (see the gate), which
    accepts it only there: a code a browser sent to another program is useless to it.
    Old codes are dropped."""
    folder = records.record_dir(data_dir) / contract.LOGINS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    now = time.time()
    for old in folder.iterdir():
        try:
            if now - old.lstat().st_mtime > contract.LOGIN_TTL:
                old.unlink()
        except OSError:
            continue
    code = secrets.token_urlsafe(24)
    records.write_private(folder / hashlib.sha256(code.encode()).hexdigest(), str(port))
    return code
