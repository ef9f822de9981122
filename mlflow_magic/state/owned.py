"""Files only their owner could have written: opened through their folder, checked by what
the kernel says of each.

On a shared machine a data folder can sit in a directory others can write (``/tmp``, a
shared ``/data``, a symlink into someone's 0777 folder), or be gone after a reboot or a tmp
cleaner while its owner's records still name it. Anything read back by path could then be
another user's: a record naming a victim folder and a lure's port, a login code, a pass, a
keeper's state. So every private file is opened here: its folder first (the path as the
user gave it), checked to be this user's and writable by nobody else; then the file inside
it through that folder's descriptor (``openat``, never following a symlink), checked the
same way. A folder someone else made, or swapped in, fails the check, whatever its files
say. PostgreSQL's data directory and OpenSSH's key files are held to the same rule.

Imports only the standard library: the server's gate reads logins and passes through it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

#: Mode bits that let another user change a file or a folder's entries.
OTHERS_WRITE = 0o022


class NotOwned(PermissionError):
    """A private file, or its folder, is another user's or writable by others."""


def check(info: os.stat_result, what: object) -> None:
    """Raise :class:`NotOwned` unless ``info`` (an ``fstat``) is this user's and not
    writable by others."""
    if info.st_uid != os.geteuid():
        raise NotOwned(errno.EACCES, f"{what} belongs to another user (uid {info.st_uid})")
    if info.st_mode & OTHERS_WRITE:
        raise NotOwned(errno.EACCES, f"{what} is writable by other users "
                                     f"(mode {info.st_mode & 0o7777:04o})")


def open_owned(path: Path, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """A descriptor of ``path``, opened through its folder's descriptor with ``O_NOFOLLOW``;
    :class:`NotOwned` if the folder or the file is not this user's alone (OSError as
    ``os.open`` raises it otherwise)."""
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        check(os.fstat(folder), path.parent)
        fd = os.open(path.name, flags | os.O_NOFOLLOW, mode, dir_fd=folder)
    finally:
        os.close(folder)
    try:
        check(os.fstat(fd), path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_owned(path: Path) -> str:
    """The text of a private file (see :func:`open_owned`)."""
    with os.fdopen(open_owned(path)) as fh:
        return fh.read()
