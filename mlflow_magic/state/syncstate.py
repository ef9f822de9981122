"""What the sync of a folder knows and says (``sync.json``, 0600 in the private folder).

Written by the sync process after each cycle, read by ``status``, the panel and
``%mlflow_server sync``. It holds the journal cursor (what is copied), the map of this
folder's runs and logged models to the team server's, the names the sync gave runs there
(so a rename made there is not reverted), the runs it leaves alone and why, and the last
error as one paragraph. A different team URL starts a new map: the ids of one server mean
nothing on another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..contract import SYNC_BEHIND, SYNC_IN_SYNC, SYNC_WAITING
from ..settings.masking import mask_uri, without_credentials
from . import journal, records


@dataclass
class SyncState:
    """The sync's memory and its last word."""

    target: str  # the team server's URL, password masked
    target_key: str  # which server the maps are of (its URL without credentials, hashed)
    #: where in the journal everything before is on the team server; None: read it all
    cursor: int | None = None
    runs: dict[str, str] = field(default_factory=dict)  # run id here -> run id there
    models: dict[str, str] = field(default_factory=dict)  # logged model here -> there
    names: dict[str, str] = field(default_factory=dict)  # run name last set there
    left_alone: dict[str, str] = field(default_factory=dict)  # run id -> why
    verified: list[str] = field(default_factory=list)  # finished runs compared once
    differences: list[str] = field(default_factory=list)
    last_error: str | None = None
    last_copied: float | None = None  # when a cycle last copied something

    @classmethod
    def new(cls, url: str) -> SyncState:
        return cls(mask_uri(url) or url, target_key(url))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> SyncState:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def target_key(url: str) -> str:
    """The same server whatever credentials its URL carries."""
    return hashlib.sha256(without_credentials(url).encode()).hexdigest()[:16]


def load(data_dir: Path) -> SyncState | None:
    try:
        return SyncState.from_json(records.read_private(records.sync_state_path(data_dir)))
    except (OSError, ValueError, TypeError):
        return None


def load_for(data_dir: Path, url: str) -> SyncState:
    """The state of the sync to ``url``: a new one if the folder synced elsewhere before."""
    found = load(data_dir)
    if found is None or found.target_key != target_key(url):
        return SyncState.new(url)
    found.target = mask_uri(url) or url
    return found


def save(data_dir: Path, state: SyncState) -> None:
    records.write_private(records.sync_state_path(data_dir), state.to_json())


def forget_cursor(data_dir: Path) -> None:
    """The server runs without a journal: the next sync reads the whole folder again."""
    found = load(data_dir)
    if found is not None and found.cursor is not None:
        found.cursor = None
        save(data_dir, found)


@dataclass(frozen=True)
class Behind:
    """What the folder has that the team server does not have yet, from the journal."""

    runs: int
    points: int
    bytes: int
    other: bool  # models, registry, traces or experiments changed too

    @property
    def nothing(self) -> bool:
        return not (self.runs or self.points or self.bytes or self.other)

    def text(self) -> str:
        parts = [f"{self.runs:,} run" + ("" if self.runs == 1 else "s")]
        if self.points:
            parts.append(f"{self.points:,} metric points")
        if self.bytes:
            parts.append(f"{self.bytes / 1e6:.1f} MB of artifacts")
        if self.other:
            parts.append("models, traces or experiments")
        return ", ".join(parts)


def behind(data_dir: Path, state: SyncState) -> Behind | None:
    """How far the team server is behind (None: not known until the sync has read the whole
    folder once)."""
    if state.cursor is None:
        return None
    entries, _ = journal.read(records.journal_path(data_dir), state.cursor)
    changes = journal.Changes.of(entries)
    return Behind(len(changes.runs) + len(changes.new_in), changes.points, changes.bytes,
                  bool(changes.kinds))


def summary_state(state: SyncState, lag: Behind | None) -> str:
    """"in sync", "behind" or "waiting" (an error stops it until the team server answers)."""
    if state.last_error:
        return SYNC_WAITING
    if lag is not None and lag.nothing:
        return SYNC_IN_SYNC
    return SYNC_BEHIND
