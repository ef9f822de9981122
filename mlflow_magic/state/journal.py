"""The folder's write journal: what changed since the sync last looked.

The folder's server appends one JSON line per write it answered with success (see
:mod:`mlflow_magic.server.journal`); the sync (:mod:`mlflow_magic.syncer`) reads from where it
stopped, copies what those lines name, and only then moves its cursor on. So a sync cycle
with nothing new is one ``stat`` (no request anywhere), and a sync killed anywhere reads the
same lines again: every copy it makes compares both sides first, so nothing is doubled.

Appends and the sync's truncation take the file's ``flock``: a line written while the sync
empties the file lands in the emptied file, never in a gap. This module imports only the
standard library: the server's workers load it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass, field

#: What a line says changed (``k``).
RUN = "run"  # a run's params, tags, metrics, inputs, status, name (``r``: the run)
NEW_RUN = "new"  # run ``r`` was created in experiment ``e`` (``r`` unknown: look there)
ARTIFACT = "art"  # a file of run ``r`` (``b``: its bytes)
EXPERIMENT = "exp"
MODEL = "model"  # a logged model (MLflow 3), of experiment ``e`` when known
REGISTRY = "reg"  # a registered model or a model version
TRACE = "trace"  # of experiment ``e`` when known
OTHER = "other"  # a write this version does not know: everything but runs is looked at
#: The journal is emptied once the sync has read all of it and it is larger than this.
TRUNCATE_AT = 1 << 20


def append(path: str, entry: dict[str, object]) -> None:
    """One line at the end of the journal (O_APPEND under its lock: ~10 us)."""
    line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        os.close(fd)  # releases the lock


def size(path: str | os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def read(path: str | os.PathLike[str], offset: int) -> tuple[list[dict], int]:
    """The whole lines after ``offset``, and where they end (a line being written is left
    for the next read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    entries = []
    for line in data[:end].splitlines():
        with contextlib.suppress(ValueError):
            entries.append(json.loads(line))
    return entries, offset + end


def truncate_if_read(path: str | os.PathLike[str], offset: int) -> bool:
    """Empty the journal if everything in it was read (``offset`` is its end) and it has
    grown past :data:`TRUNCATE_AT`; True if it was emptied (the cursor is then 0)."""
    if offset < TRUNCATE_AT:
        return False
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size != offset:
            return False
        os.ftruncate(fd, 0)
        return True
    finally:
        os.close(fd)


@dataclass
class Changes:
    """What a stretch of the journal says changed, merged: each run once."""

    runs: set[str] = field(default_factory=set)
    artifact_runs: set[str] = field(default_factory=set)
    new_in: set[str] = field(default_factory=set)  # experiments with new runs
    kinds: set[str] = field(default_factory=set)  # EXPERIMENT, MODEL, REGISTRY, TRACE, OTHER
    experiments: set[str] = field(default_factory=set)  # named by model and trace writes
    points: int = 0
    bytes: int = 0

    @classmethod
    def of(cls, entries: list[dict]) -> Changes:
        found = cls()
        for entry in entries:
            kind, run = entry.get("k"), entry.get("r")
            found.points += int(entry.get("n") or 0)
            found.bytes += int(entry.get("b") or 0)
            if kind in (RUN, ARTIFACT, NEW_RUN) and run:
                found.runs.add(run)
                if kind == ARTIFACT:
                    found.artifact_runs.add(run)
            elif kind == NEW_RUN and entry.get("e"):
                found.new_in.add(str(entry["e"]))
            elif kind is not None:
                found.kinds.add(OTHER if kind in (RUN, ARTIFACT, NEW_RUN) else str(kind))
                if entry.get("e"):
                    found.experiments.add(str(entry["e"]))
        return found

    @property
    def empty(self) -> bool:
        return not (self.runs or self.new_in or self.kinds)
