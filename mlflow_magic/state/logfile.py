"""The server's log file: private, bounded in size, and read from the end.

The server writes its output to ``.mlflow_magic/server.log`` through a file
descriptor opened with ``O_APPEND``. Rotation copies the file to
``server.log.1`` and truncates it in place (logrotate's ``copytruncate``), so
the server keeps writing to the same descriptor and never needs a signal;
with ``O_APPEND`` its next line lands at the new end. The folder then never
holds more than about twice :data:`MAX_BYTES` of logs.

Every reader (``logs``, ``status``, the panel every few seconds, the start
progress) reads only the end of the file, so its cost does not grow with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

#: Rotate when the log grows past this many bytes.
MAX_BYTES = 10 * 1024 * 1024
#: How far back a reader looks for its lines, at most (a log line is rarely longer).
_BLOCK = 64 * 1024
_MAX_SCAN = 4 * 1024 * 1024


def open_for_append(path: Path) -> int:
    """A file descriptor that appends to the log, which only its owner may read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o600)  # a log made world-readable by an older version
    return fd


def append(path: Path, text: str) -> None:
    """Append ``text`` (e.g. the header of a new start) to the log."""
    fd = open_for_append(path)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def rotate(path: Path, max_bytes: int = MAX_BYTES) -> bool:
    """Move the log to ``<name>.1`` once it passes ``max_bytes``; True if it rotated.

    Copy, then truncate in place: the server's descriptor stays valid, and lines
    written between the two steps are the only ones that can be lost.
    """
    if size(path) <= max_bytes:
        return False
    backup = path.with_name(path.name + ".1")
    try:
        with open(path, "rb") as src:
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
        os.truncate(path, 0)
    except OSError:
        return False
    return True


def tail(path: Path, lines: int = 30, offset: int = 0) -> str:
    """The last ``lines`` lines of ``path`` after byte ``offset``, reading only the end.

    ``offset`` is where the current start's output begins; if the log was rotated
    since, the whole (new) file counts.
    """
    if lines <= 0:
        return ""
    try:
        with open(path, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            start = offset if offset <= end else 0
            data = b""
            pos = end
            while pos > start and data.count(b"\n") <= lines and end - pos < _MAX_SCAN:
                step = min(_BLOCK, pos - start)
                pos -= step
                fh.seek(pos)
                data = fh.read(step) + data
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
