"""Kernel passes: a way into a private server for a page that may keep no cookie.

VS Code's notebook webview and Colab's output frame are pages of another site than the
server's. Such a frame may get no cookie (third-party cookies blocked: Safari, Firefox
strict, Chrome's setting, embedded webviews), so the one-time login's session cookie
cannot carry it. A pass goes in the URL's path instead, ``/<PASS_PATH>/<pass>/``, and
the UI's relative URLs carry it on every request they make.

A pass holds on one port, for as long as the process that made it (the kernel) runs: it
may sit in a saved notebook's output, and it is dead once that kernel has ended. Its file
(``.mlflow_magic/passes/<sha256 of the pass>``, 0600) names the port and the process, by
pid and start time, so a pid reused by another program does not revive it.

The kernel makes passes (:func:`kernel_pass`); the server's gate checks them
(:func:`holds`). Imports only the standard library and, when a pass is checked, psutil.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path

from .. import contract

#: This process's passes, by (record folder, port): one per server, removed at exit.
_MADE: dict[tuple[str, int], tuple[str, Path]] = {}


def pass_file(record_dir: Path, token: str) -> Path:
    return record_dir / contract.PASSES_DIR / hashlib.sha256(token.encode()).hexdigest()


def kernel_pass(record_dir: Path, port: int) -> str:
    """A pass to the server on ``port`` that holds while this process runs, made once per
    server and process. Passes of processes that have ended are dropped on the way."""
    made = _MADE.get((str(record_dir), port))
    if made is not None and made[1].exists():
        return made[0]
    import psutil

    folder = record_dir / contract.PASSES_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    for old in folder.iterdir():
        _holds_or_drop(old, None)
    me = psutil.Process()
    token = secrets.token_urlsafe(24)
    path = pass_file(record_dir, token)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"port": port, "pid": me.pid, "born": me.create_time()}, fh)
    if not _MADE:
        atexit.register(_drop_own)
    _MADE[(str(record_dir), port)] = (token, path)
    return token


def holds(record_dir: Path, token: str, port: int) -> bool:
    """The pass ``token`` was made for ``port`` by a process that still runs."""
    if not token or len(token) > 100:
        return False
    return _holds_or_drop(pass_file(record_dir, token), port)


def _holds_or_drop(path: Path, port: int | None) -> bool:
    """The pass file at ``path`` holds (on ``port``, or on any port if None); a pass
    whose process has ended is removed."""
    import psutil

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as fh:
            found = json.load(fh)
        pid, born, made_for = int(found["pid"]), float(found["born"]), int(found["port"])
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):  # damaged: dropped
        alive = False
    else:
        try:
            alive = _same_process(psutil.Process(pid), born)
        except psutil.Error:
            alive = False
    if not alive:
        with contextlib.suppress(OSError):
            path.unlink()
        return False
    return port is None or made_for == port


def _same_process(process, born: float) -> bool:
    import psutil

    return abs(process.create_time() - born) < 0.01 and process.status() != psutil.STATUS_ZOMBIE


def _drop_own() -> None:
    """At exit, this process's passes end with it (after a crash, :func:`holds` finds the
    process gone)."""
    for _, path in _MADE.values():
        with contextlib.suppress(OSError):
            path.unlink()
    _MADE.clear()
