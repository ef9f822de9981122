"""The ``%mlflow_server`` line magic: parse, run the command, display the result.

A thin shell: everything it does is in :mod:`commands` and below. Errors the
user can fix become IPython ``UsageError`` (one paragraph, no traceback).
"""

from __future__ import annotations

import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.display import display
from IPython.utils.process import arg_split

from ..arguments import build_parser, build_run_parser, split_passthrough
from ..errors import MlflowMagicError

PROG = "%mlflow_server"


class _Parser(MagicArgumentParser):
    """IPython's magic parser (errors raise UsageError), with a pointer to the help."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}. See `%mlflow_server?` for the commands "
                         "and flags.")


PARSER = build_parser(_Parser, prog=PROG)
RUN_PARSER = build_run_parser(_Parser)


@magics_class
class MlflowMagics(Magics):
    """``%mlflow_server``: one shared MLflow server per data folder."""

    @line_magic
    def mlflow_server(self, line: str = "") -> None:
        # The manager and its libraries load on first use, not at %load_ext.
        from .. import commands
        from ..results import Connected, Launched, Reused, Starting
        from ..tracking import set_trace_renderer_base
        from .progress import GUARDS, CellProgress, follow, for_this_shell, in_notebook
        from .view import UiView, trace_renderer_base

        argv, extra = split_passthrough(arg_split(line))
        ns = PARSER.parse_args(argv)
        if ns.command in (None, "panel") and in_notebook():
            return self._panel(ns)
        if ns.command == "push":
            return self._push(ns)
        progress = for_this_shell()
        # In a notebook a launch goes on in the background: the cell returns at once.
        background = (progress if isinstance(progress, CellProgress)
                      and not getattr(ns, "wait", True) else None)
        try:
            if background is not None:
                background.defer()
            result = commands.run(ns, extra, on_progress=progress, wait=background is None)
            view = result if isinstance(result, UiView) else None
            if ns.command in commands.UI_COMMANDS:
                # a start's or connect's result
                assert isinstance(result, Launched | Reused | Starting | Connected)
                view = commands.ui_view(result.url, ns.proxy_url, ns.height)
            inline = view if ns.command in commands.UI_COMMANDS and not ns.no_ui else None
            if isinstance(result, Starting) and background is not None:
                # the result and the UI show once it answers
                follow(result, background, lambda done: shown_with(done, inline))
                if id(self.shell) in GUARDS:
                    GUARDS[id(self.shell)].watch(result)
            elif isinstance(progress, CellProgress) and progress.placed:
                progress.show(shown_with(result, inline))  # in place of the progress
            else:
                display(result)
                if inline is not None:
                    display(inline)
            if view is not None:  # MLflow's own trace view goes the way the UI goes
                set_trace_renderer_base(trace_renderer_base(view.location))
        except MlflowMagicError as exc:
            progress.fail()
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            progress.fail()
            raise

    def _push(self, ns) -> None:
        """A push, with its progress in place (a bar in a notebook, a line in a terminal)."""
        from .. import commands
        from ..results import Renders
        from ..terminal import PushLine
        from .progress import PushProgress

        shown = PushProgress() if "ipykernel" in sys.modules else None
        try:
            result = commands.run(ns, on_push=shown or PushLine())
        except MlflowMagicError as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            raise UsageError(
                "The push was interrupted. What was copied is kept; run the same push again "
                "to go on from where it stopped (nothing is copied twice).") from None
        if shown is not None and isinstance(result, Renders):
            shown.show(result)
        else:
            display(result)

    def _panel(self, ns) -> None:
        from ..options import ServerOptions
        from .panel import ServerPanel

        display(ServerPanel(ServerOptions(path=getattr(ns, "path", None)),
                            getattr(ns, "proxy_url", None)))

    @cell_magic
    def mlflow_run(self, line: str, cell: str) -> None:
        from .. import commands
        from . import runs
        from .view import deep_link

        ns = RUN_PARSER.parse_args(arg_split(line))
        shown: list = []

        def show(card) -> None:
            """The card, at the top of the cell's output, redrawn in place."""
            if shown:
                shown[0].update(card)
            else:
                shown.append(display(card, display_id=True))

        shell = self.shell
        assert shell is not None  # a registered magic runs in its shell
        live = "ipykernel" in sys.modules  # a front end to redraw it in
        try:
            tags = runs.parse_tags(ns.tags)
            server_url = self._tracking_server(ns.path)
            view = commands.ui_view(server_url)
            card = runs.run_cell(
                lambda: shell.run_cell(cell).success,
                experiment=ns.experiment, name=ns.name, tags=tags, autolog=ns.autolog,
                link_for=lambda exp, run: view.link(deep_link(exp, run)),
                show=show if live else None, server_url=server_url,
            )
        except MlflowMagicError as exc:
            raise UsageError(str(exc)) from None
        if shown:
            shown[0].update(card)
        else:
            display(card)

    @staticmethod
    def _tracking_server(path: str | None) -> str:
        """The server MLflow uses; the folder's server is started (or reused) if none."""
        from .. import api
        from ..tracking import http_tracking_uri
        from .progress import for_this_shell

        uri = http_tracking_uri()
        if path is None and uri:
            return uri
        from .progress import CellProgress

        progress = for_this_shell()
        try:
            result = api.start(path, on_progress=progress)
        except MlflowMagicError:
            progress.fail()
            raise
        if isinstance(progress, CellProgress) and progress.placed:
            progress.show(result)
        else:
            display(result)
        return result.url


def shown_with(result, view=None):
    """A result and, below it, the inline UI: one output, HTML and text."""
    from .progress import Shown

    html = result._repr_html_() + (view._repr_html_() if view is not None else "")
    text = str(result) + (f"\n{view}" if view is not None else "")
    return Shown(html, text)


MlflowMagics.mlflow_server.__doc__ = PARSER.format_help()
MlflowMagics.mlflow_run.__doc__ = RUN_PARSER.format_help()
