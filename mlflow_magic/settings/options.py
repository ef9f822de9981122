"""What the user asked for, as one :class:`ServerOptions`, and how ``restart`` merges it.

``None`` in a field means "not said": the default, or on ``restart`` the running
server's own setting. The options a server was started with are kept (secrets
included) in the folder's private ``options.json``, so ``restart`` can ask for the
same server again.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

#: The user-facing option that controls each setting compared on reuse.
SETTING_FLAGS: dict[str, str] = {
    "backend_store_uri": "--backend-store-uri/--sqlite/--file-store",
    "registry_store_uri": "--registry-store-uri",
    "default_artifact_root": "--default-artifact-root",
    "artifacts_destination": "--artifacts-destination",
    "serve_artifacts": "--serve-artifacts/--no-serve-artifacts",
    "artifacts_only": "--artifacts-only",
    "host": "--host",
    "port": "--port",
    "workers": "--workers",
    "idle_timeout": "--idle-timeout",
    "jobs": "--jobs",
    "attached": "--attached",
    "allowed_hosts": "--allowed-hosts",
    "cors_allowed_origins": "--cors-allowed-origins",
    "app_name": "--app-name",
    "extra_args": "the arguments after `--`",
    "sync_to": "--sync-to/--no-sync",
}


@dataclass(frozen=True)
class ServerOptions:
    """What the user asked for; ``None`` means "not said": the default, or on ``restart``
    the running server's own setting."""

    path: str | os.PathLike[str] | None = None
    sqlite: bool = False
    file_store: bool = False
    backend_store_uri: str | None = None
    registry_store_uri: str | None = None
    default_artifact_root: str | None = None
    artifacts_destination: str | None = None
    serve_artifacts: bool | None = None
    artifacts_only: bool | None = None
    host: str | None = None
    port: int | None = None
    workers: int | None = None
    timeout: float | None = None
    #: seconds without a request before the server sleeps (0: never; None: the default)
    idle_timeout: float | None = None
    jobs: bool | None = None
    attached: bool | None = None
    allowed_hosts: str | None = None
    cors_allowed_origins: str | None = None
    #: the server app: MLflow's own, or e.g. ``basic-auth``
    app_name: str | None = None
    #: arguments for `mlflow server` itself (after ``--``); None: not said, () : none
    extra_args: tuple[str, ...] | None = None
    #: the team server every change is copied to (None: not said; "": no sync)
    sync_to: str | None = None
    #: back up an SQLite database of an older MLflow and upgrade it (an action, not a setting)
    upgrade_db: bool = False

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, for the folder's private settings file (secrets included)."""
        data = dataclasses.asdict(self)
        data["path"] = None if self.path is None else os.fspath(self.path)
        data["extra_args"] = None if self.extra_args is None else list(self.extra_args)
        data.pop("upgrade_db")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ServerOptions:
        """The inverse of :meth:`to_dict`; unknown keys (other versions) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("extra_args") is not None:
            values["extra_args"] = tuple(values["extra_args"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


#: Options of one group replace each other as a whole when ``restart`` names one of them.
_BACKEND_GROUP = ("sqlite", "file_store", "backend_store_uri")


def merge_options(old: ServerOptions, new: ServerOptions) -> ServerOptions:
    """The options of a ``restart``: the running server's, changed only where ``new`` says.

    Choosing a backend replaces the previous choice; naming where proxied artifacts go
    turns proxying back on; ``--artifacts-only`` drops the stores it has no use for.
    """
    merged = {f.name: getattr(new, f.name) if getattr(new, f.name) is not None
              else getattr(old, f.name) for f in dataclasses.fields(ServerOptions)}
    if any(getattr(new, name) for name in _BACKEND_GROUP):
        merged.update({name: getattr(new, name) for name in _BACKEND_GROUP})
        if new.artifacts_only is None:
            merged["artifacts_only"] = None
    else:
        merged.update({name: getattr(old, name) for name in _BACKEND_GROUP})
    if new.artifacts_destination is not None and new.serve_artifacts is None:
        merged["serve_artifacts"] = None
    if new.serve_artifacts is False and new.artifacts_destination is None:
        merged["artifacts_destination"] = None
    if new.artifacts_only:
        merged.update(dict.fromkeys(_BACKEND_GROUP))
        merged.update(sqlite=False, file_store=False, registry_store_uri=None)
    merged["upgrade_db"] = new.upgrade_db
    return ServerOptions(**merged)
