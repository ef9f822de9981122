"""What the last pushes found equal on each target server (``push.json``, 0600, in the
folder's private folder): per run, its copy's id there and the digest of everything a push
copies (:func:`mlflow_magic.remote.transfer.reading.digest`).

A later push to the same server reads a run whose digest is unchanged on this side only:
nothing of it is read on the target, and it is not compared again. So a second push of a
folder costs the reading of the folder, not of both servers. A run changed here, or whose
copy is gone there, is planned and compared in full as before.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import records
from .syncstate import target_key


def _read(data_dir: Path) -> dict:
    try:
        found = json.loads(records.read_private(records.push_state_path(data_dir)))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def known(data_dir: Path, url: str) -> dict[str, tuple[str, str]]:
    """Source run -> (its copy, its digest) that pushes to ``url`` found equal."""
    runs = _read(data_dir).get(target_key(url), {})
    return {run: (str(pair[0]), str(pair[1])) for run, pair in runs.items()
            if isinstance(pair, list) and len(pair) == 2}


def remember(data_dir: Path, url: str, equal: dict[str, tuple[str, str]]) -> None:
    """Keep what a push just found equal on ``url`` (the runs of other targets stay)."""
    data = _read(data_dir)
    data[target_key(url)] = {run: list(pair) for run, pair in equal.items()}
    records.write_private(records.push_state_path(data_dir), json.dumps(data))
