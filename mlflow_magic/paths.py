"""The user's own folders for mlflow_magic: state (the list of servers) and cache (the
new-database templates). Standard library only: the server process uses it too.
"""

from __future__ import annotations

import os
from pathlib import Path

from .contract import CACHE_DIR_ENV, STATE_DIR_ENV


def user_dir(override_env: str, xdg_env: str, default: str) -> Path:
    """``$override_env``, else ``$xdg_env/mlflow_magic``, else ``default/mlflow_magic``."""
    override = os.environ.get(override_env)
    if override:
        return Path(override).expanduser()
    return Path(os.environ.get(xdg_env) or os.path.expanduser(default)) / "mlflow_magic"


def state_dir() -> Path:
    """The user's state folder for mlflow_magic (``$MLFLOW_MAGIC_STATE_DIR`` overrides)."""
    return user_dir(STATE_DIR_ENV, "XDG_STATE_HOME", "~/.local/state")


def cache_dir() -> Path:
    """``$MLFLOW_MAGIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlflow_magic`` (``~/.cache``)."""
    return user_dir(CACHE_DIR_ENV, "XDG_CACHE_HOME", "~/.cache")
