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
(:func:`holds`). Imports only the standard library, :mod:`~mlflow_magic.state.owned`
and, when a pass is checked, psutil.
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
from . import owned

#: This process's passes, by (record folder, port, host): one per server and name, removed
#: at exit.
_MADE: dict[tuple[str, int, str], tuple[str, Path]] = {}


def pass_file(record_dir: Path, token: str) -> Path:
    return record_dir / contract.PASSES_DIR / hashlib.sha256(token.encode()).hexdigest()


def kernel_pass(record_dir: Path, port: int, host: str | None = None) -> str:
    """A pass to the server on ``port`` that holds while this process runs, made once per
    server, process and ``host``: the name the browser reaches the server by, when it is not
    this machine's loopback (Colab's proxy); a request through the pass that names another
    host is refused (DNS rebinding). Passes of processes that have ended are dropped on the
    way."""
    host = (host or "").lower()
    made = _MADE.get((str(record_dir), port, host))
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
        json.dump({"port": port, "pid": me.pid, "born": me.create_time(),
                   "hosts": [host] if host else []}, fh)
    if not _MADE:
        atexit.register(_drop_own)
    _MADE[(str(record_dir), port, host)] = (token, path)
    return token


def hosts(record_dir: Path, token: str) -> list[str]:
    """The names other than loopback that the pass ``token`` was made for."""
    try:
        found = json.loads(owned.read_owned(pass_file(record_dir, token))).get("hosts", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(h) for h in found] if isinstance(found, list) else []


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
        found = json.loads(owned.read_owned(path))
        pid, born, made_for = int(found["pid"]), float(found["born"]), int(found["port"])
    except (FileNotFoundError, owned.NotOwned):  # none, or not ours: never dropped by us
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
