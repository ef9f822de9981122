"""Run one parsed ``%mlflow_server`` / ``mlflow-magic`` command against the API.

Shared by the magic and the console script: they differ only in how they
parse (argparse flavour) and how they show the result (HTML or text).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import api
from .arguments import server_options
from .errors import ConfigError
from .manager import Progress

START_COMMANDS = ("start", "restart")


def run(ns: argparse.Namespace, extra_args: Sequence[str] = (),
        on_progress: Progress | None = None) -> object:
    """Execute the command in ``ns`` and return its typed result."""
    command = ns.command or "status"
    if extra_args and command not in START_COMMANDS:
        raise ConfigError(
            f"Arguments after `--` are passed to `mlflow server`, so they only go with "
            f"`start` or `restart`, not `{command}`. Remove them, or use `start ... -- "
            f"{' '.join(extra_args)}`."
        )
    if command in START_COMMANDS:
        return api.launch(server_options(ns, extra_args), restart=command == "restart",
                          on_progress=on_progress)
    if command == "stop":
        if ns.all and ns.path:
            raise ConfigError("`stop --all` stops every known server; drop --path, or drop "
                              "--all to stop only the server of that folder.")
        return api.stop(ns.path, all=ns.all)
    if command == "status":
        return api.status(getattr(ns, "path", None))
    if command == "list":
        return api.list_servers()
    if command == "logs":
        if ns.lines < 0:
            raise ConfigError(f"-n/--lines must be 0 or more, not {ns.lines}.")
        return api.logs(ns.path, ns.lines)
    if command == "connect":
        return api.connect(ns.uri, registry_uri=ns.registry_uri)
    raise ConfigError(f"Unknown command {command!r}; see `%mlflow_server?` for the commands.")
