"""Run one parsed ``%mlflow_server`` / ``mlflow-magic`` command against the API.

Shared by the magic and the console script: they differ only in how they
parse (argparse flavour) and how they show the result (HTML or text).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from .. import api
from ..errors import ConfigError
from ..lifecycle.launch import Progress
from ..remote import transfer
from ..remote.rest import experiment_id_by_name, experiment_id_of_run
from ..security import ports
from ..settings.arguments import server_options
from ..settings.config import is_loopback, start_command
from ..tracking import http_tracking_uri
from .ui import DEFAULT_HEIGHT, UiLocation, UiView, deep_link, ui_location

START_COMMANDS = ("start", "restart")
UI_COMMANDS = ("start", "restart", "connect")


def run(ns: argparse.Namespace, extra_args: Sequence[str] | None = None,
        on_progress: Progress | None = None, wait: bool = True,
        on_push: transfer.Progress | None = None) -> object:
    """Execute the command in ``ns`` and return its typed result.

    ``wait=False`` lets a launch finish in the background (see
    :mod:`mlflow_magic.lifecycle.pending`); ``on_push`` follows a push.
    """
    command = ns.command or "status"
    if extra_args and command not in START_COMMANDS:
        raise ConfigError(
            f"Arguments after `--` are passed to `mlflow server`, so they only go with "
            f"`start` or `restart`, not `{command}`. Remove them, or use `start ... -- "
            f"{' '.join(extra_args)}`."
        )
    if command in START_COMMANDS:
        return api.launch(server_options(ns, extra_args), restart=command == "restart",
                          on_progress=on_progress, wait=wait)
    if command == "stop":
        if ns.all and ns.path:
            raise ConfigError("`stop --all` stops every known server; drop --path, or drop "
                              "--all to stop only the server of that folder.")
        return api.stop(ns.path, all=ns.all, force=ns.force)
    if command in ("status", "panel"):  # the panel's text form, where widgets cannot show
        return api.status(getattr(ns, "path", None))
    if command == "list":
        return api.list_servers()
    if command == "logs":
        if ns.lines < 0:
            raise ConfigError(f"-n/--lines must be 0 or more, not {ns.lines}.")
        return api.logs(ns.path, ns.lines)
    if command == "connect":
        return api.connect(ns.uri, registry_uri=ns.registry_uri)
    if command == "push":
        return api.push(ns.path, to=ns.to, experiments=ns.experiment, dry_run=ns.dry_run,
                        on_progress=on_push)
    if command == "sync":
        return api.sync(ns.path)
    if command == "ui":
        return ui_view(_ui_server_url(ns.path), ns.proxy_url, ns.height,
                       experiment=ns.experiment, run=ns.run, view=ns.view)
    raise ConfigError(f"Unknown command {command!r}; see `%mlflow_server?` for the commands.")


def ui_view(server_url: str, proxy_url: str | None = None, height: int | None = None,
            experiment: str | None = None, run: str | None = None,
            view: str | None = None) -> UiView:
    """The inline UI of ``server_url`` (the experiment and run are looked up by REST)."""
    if height is not None and height < 100:
        raise ConfigError(f"--height {height} is too small to show the UI; give 100 or more "
                          "pixels (the default is 650).")
    if is_loopback(urlsplit(server_url).hostname):
        location = ui_location(server_url, proxy_url)
    else:  # a remote server: the browser reaches it directly, no Jupyter proxy involved
        direct = server_url.rstrip("/") + "/"
        location = UiLocation(direct, direct, False, needs_login=False)
    experiment_id, run = _resolve_route(server_url, experiment, run)
    login = ports.login_query(server_url) if location.needs_login else ""
    if location.needs_pass:  # a frame of another site: a pass in the path, no cookie needed
        location = dataclasses.replace(
            location, url=location.url + ports.pass_path(server_url, location.url))
    return UiView(location, deep_link(experiment_id, run, view), height or DEFAULT_HEIGHT,
                  login)


def _ui_server_url(path: str | None) -> str:
    """The server ``ui`` shows: the folder's (``--path``), else the one MLflow uses."""
    tracking = http_tracking_uri()
    if path is None and tracking:
        in_use = api.folder_in_use()
        if in_use is None:  # a team server, or one that is not ours: shown as it is
            return tracking
        path = str(in_use)
    status = api.status(path)
    if not status.up or status.server is None:
        port = urlsplit(tracking).port if tracking and path is not None else None
        again = start_command(Path(status.data_dir), port)
        raise ConfigError(
            f"No MLflow server is running for {status.data_dir} ({status.state}), so there "
            f"is no UI to show. Start it again with `{again}` (or connect to another with "
            "`%mlflow_server connect URL`), then run `%mlflow_server ui` again."
        )
    return status.server.url


def _resolve_route(url: str, experiment: str | None,
                   run: str | None) -> tuple[str | None, str | None]:
    """Experiment names and bare run ids become the ids the UI's deep links need."""
    try:
        if run and not experiment:
            experiment = experiment_id_of_run(url, run, ports.headers_for_url(url))
        elif experiment and not experiment.isdigit():
            experiment = experiment_id_by_name(url, experiment, ports.headers_for_url(url))
    except (OSError, KeyError, ValueError):
        what = f"run {run}" if run and not experiment else f"experiment {experiment!r}"
        raise ConfigError(
            f"The MLflow server at {url} has no {what}. Check the name or id (the UI's "
            "experiment list shows them), or leave the flag out to open the UI's start page."
        ) from None
    return experiment, run
