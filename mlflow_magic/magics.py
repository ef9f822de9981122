"""The ``%mlflow_server`` line magic: parse, run the command, display the result.

A thin shell: everything it does is in :mod:`commands` and below. Errors the
user can fix become IPython ``UsageError`` (one paragraph, no traceback).
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.display import display
from IPython.utils.process import arg_split

from .arguments import build_parser, split_passthrough
from .errors import MlflowMagicError

PROG = "%mlflow_server"


class _Parser(MagicArgumentParser):
    """IPython's magic parser (errors raise UsageError), with a pointer to the help."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}. See `%mlflow_server?` for the commands "
                         "and flags.")


PARSER = build_parser(_Parser, prog=PROG)


@magics_class
class MlflowMagics(Magics):
    """``%mlflow_server``: one shared MLflow server per data folder."""

    @line_magic
    def mlflow_server(self, line: str = "") -> None:
        from . import commands  # the manager and its libraries load on first use, not at %load_ext

        argv, extra = split_passthrough(arg_split(line))
        ns = PARSER.parse_args(argv)
        try:
            result = commands.run(ns, extra)
            display(result)
            if ns.command in commands.UI_COMMANDS and not ns.no_ui:
                display(commands.ui_view(result.url, ns.proxy_url, ns.height))
        except MlflowMagicError as exc:
            raise UsageError(str(exc)) from None


MlflowMagics.mlflow_server.__doc__ = PARSER.format_help()
