"""mlflow_magic's settings in Jupyter's own configuration, for the admins of a JupyterHub or
a lab box: ``c.MlflowMagic.<trait>`` in ``jupyter_server_config.py`` (or
``--MlflowMagic.<trait>=...`` on the command line), as jupyter-server-proxy and every server
extension are configured.

They apply to the launcher's tile and ``/mlflow/`` (this Jupyter server starts their
server), and, through the environment this Jupyter server hands its kernels, to the magic
and the API in those kernels (``$MLFLOW_PATH``, ``$MLFLOW_MAGIC_FIRST_PORT``), unless the
environment already sets them.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
from collections.abc import MutableMapping

from traitlets import Int, List, Unicode
from traitlets.config import Configurable

from ..contract import FIRST_PORT_ENV, IDLE_TIMEOUT_ENV
from ..errors import ConfigError
from ..settings.arguments import build_parser, server_options, split_passthrough
from ..settings.config import duration
from ..settings.options import ServerOptions


class MlflowMagic(Configurable):
    """mlflow_magic in this Jupyter server: the tile's server and the kernels' defaults."""

    data_dir = Unicode(
        "",
        help="The data folder of the launcher tile's MLflow server, and of `%mlflow_server "
             "start` in the kernels this Jupyter starts ($MLFLOW_PATH there, unless the "
             "environment sets it). '{username}' becomes the user's name, for a shared "
             "JupyterHub configuration. Empty: $MLFLOW_PATH, else ~/mlflow_data.",
    ).tag(config=True)

    first_port = Int(
        0,
        help="Where a start without --port looks for a free port (MLFLOW_MAGIC_FIRST_PORT in "
             "the kernels, unless the environment sets it). Give each user of a shared host "
             "a range of their own. 0: the environment's, else 5000.",
    ).tag(config=True)

    idle_timeout = Unicode(
        "",
        help="How long a server may go without a request before it sleeps (its memory "
             "freed, its port kept, the next request wakes it): 30m, 2h, 0 for never; "
             "MLFLOW_MAGIC_IDLE_TIMEOUT in the kernels, unless the environment sets it. "
             "Empty: the environment's, else 1h.",
    ).tag(config=True)

    start_flags = List(
        Unicode(),
        help="Flags of `%mlflow_server start` for the tile's server, as on a command line, "
             "e.g. ['--workers', '2'] or ['--backend-store-uri', 'postgresql://...']; "
             "arguments for `mlflow server` itself go after '--'. The magic's own flags "
             "still decide in a kernel.",
    ).tag(config=True)

    def folder(self) -> str | None:
        """The configured data folder, with the user's name in place; None if not set."""
        if not self.data_dir:
            return None
        return os.path.expanduser(self.data_dir.replace("{username}", getpass.getuser()))

    def options(self) -> ServerOptions:
        """The tile's server: the configured folder and flags (a bad flag is one paragraph)."""
        if self.idle_timeout:
            try:
                duration(self.idle_timeout)
            except ValueError as exc:
                raise ConfigError(f"c.MlflowMagic.idle_timeout: {exc}.") from None
        ours, extra = split_passthrough(self.start_flags)
        parser = build_parser(_Refusing, prog="c.MlflowMagic.start_flags")
        ns = parser.parse_args(["start", *ours])
        options = server_options(ns, extra)
        folder = self.folder()
        if folder and options.path is None:
            options = ServerOptions(**{**options.__dict__, "path": folder})
        return options

    def argv(self) -> list[str]:
        """The same settings as arguments, for a process of their own (the forwarder)."""
        args = ["--path", folder] if (folder := self.folder()) else []
        if self.first_port:
            args += ["--first-port", str(self.first_port)]
        if self.idle_timeout:
            args += ["--idle-timeout", self.idle_timeout]
        return [*args, "--start-flags", shlex.join(self.start_flags)]

    def export(self, environ: MutableMapping[str, str]) -> None:
        """Hand the defaults to the kernels this Jupyter starts (they inherit its
        environment); a variable the environment sets already is left alone."""
        if (folder := self.folder()) is not None:
            environ.setdefault("MLFLOW_PATH", folder)
        if self.first_port:
            environ.setdefault(FIRST_PORT_ENV, str(self.first_port))
        if self.idle_timeout:
            environ.setdefault(IDLE_TIMEOUT_ENV, self.idle_timeout)


class _Refusing(argparse.ArgumentParser):
    """A bad flag in the configuration: one paragraph that names the trait."""

    def error(self, message: str):
        raise ConfigError(f"c.MlflowMagic.start_flags: {message}. Give the flags of "
                          "`%mlflow_server start` (see `mlflow-magic start --help`).")


def server_app():
    """The Jupyter server of this process, if one runs here."""
    from jupyter_server.serverapp import ServerApp

    return ServerApp.instance() if ServerApp.initialized() else None


def from_server(serverapp=None) -> MlflowMagic:
    """The settings of a Jupyter server (defaults where there is none)."""
    return MlflowMagic(config=serverapp.config) if serverapp is not None else MlflowMagic()
