"""The ``%mlflow_server`` line magic and the ``%%mlflow_run`` cell magic: parse, run the
command, display the result.

A thin shell: what a command does is :mod:`mlflow_magic.front.commands` and below; how
a result reads is :mod:`mlflow_magic.front.render`; whether this kernel shows rich
output is :mod:`mlflow_magic.front.context`. Errors the user can fix become IPython
``UsageError`` (one paragraph, no traceback).
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.display import display
from IPython.utils.process import arg_split

from ..errors import MlflowMagicError
from ..settings.arguments import (
    build_parser,
    build_run_parser,
    did_you_mean,
    full_help,
    help_asked,
    root_of,
    split_passthrough,
)

PROG = "%mlflow_server"


class _Parser(MagicArgumentParser):
    """IPython's magic parser (errors raise UsageError), with a pointer to the help."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {did_you_mean(root_of(self), message)}. See "
                         "`%mlflow_server?` for the commands and flags, or add --help to "
                         "a command for its own.")


PARSER = build_parser(_Parser, prog=PROG)
RUN_PARSER = build_run_parser(_Parser)


@magics_class
class MlflowMagics(Magics):
    """``%mlflow_server``: one shared MLflow server per data folder."""

    def __init__(self, shell=None, **kwargs) -> None:
        super().__init__(shell, **kwargs)
        self._rendering = False

    def _render_results(self) -> None:
        """Results read as HTML and text in cells (loaded on first use, not at %load_ext)."""
        if not self._rendering:
            from ..front import render

            render.install()
            self._rendering = True

    @line_magic
    def mlflow_server(self, line: str = "") -> None:
        # The lifecycle and its libraries load on first use, not at %load_ext.
        self._render_results()
        from ..front import commands, context
        from ..front.render import shown_with
        from ..front.ui import UiView, trace_renderer_base
        from ..results import Connected, Launched, Reused, Starting
        from ..tracking import set_trace_renderer_base, set_ui_links
        from .guard import GUARDS
        from .progress import CellProgress, follow, for_this_shell

        argv, extra = split_passthrough(arg_split(line))
        asked = help_asked(PARSER, argv)
        if asked is not None:  # as `mlflow-magic COMMAND --help` prints it
            print(asked)
            return None
        ns = PARSER.parse_args(argv)
        here = context.current()
        if ns.command in (None, "panel") and here.notebook and here.widgets:
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
                set_ui_links(view.location.direct_url, view.location.printed_url)
        except MlflowMagicError as exc:
            progress.fail()
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            progress.fail()
            raise

    def _push(self, ns) -> None:
        """A push, with its progress in place (a bar in a notebook, a line in a terminal)."""
        from ..front import commands, context
        from ..front.terminal import PushLine
        from ..results import Result
        from .progress import PushProgress

        shown = PushProgress() if context.current().notebook else None
        try:
            result = commands.run(ns, on_push=shown or PushLine())
        except MlflowMagicError as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            raise UsageError(
                "The push was interrupted. What was copied is kept; run the same push again "
                "to go on from where it stopped (nothing is copied twice).") from None
        if shown is not None and isinstance(result, Result):
            shown.show(result)
        else:
            display(result)

    def _panel(self, ns) -> None:
        from ..api import folder_in_use
        from ..settings.options import ServerOptions
        from .panel import ServerPanel

        path = getattr(ns, "path", None)
        display(ServerPanel(ServerOptions(path=path if path is not None else folder_in_use()),
                            getattr(ns, "proxy_url", None)))

    @cell_magic
    def mlflow_run(self, line: str, cell: str) -> None:
        self._render_results()
        from ..front import commands, context
        from ..front.ui import deep_link, team_run_link
        from . import runs
        from .progress import InPlace

        asked = help_asked(RUN_PARSER, arg_split(line))
        if asked is not None:
            print(asked)
            return
        ns = RUN_PARSER.parse_args(arg_split(line))
        card_output = InPlace()  # the card, at the top of the cell's output, redrawn in place
        shell = self.shell
        assert shell is not None  # a registered magic runs in its shell
        live = context.current().notebook  # a front end to redraw it in
        failed: list[BaseException] = []

        def execute() -> bool:
            result = shell.run_cell(cell)
            error = result.error_in_exec or result.error_before_exec
            if error is not None:
                failed.append(error)
            return result.success

        try:
            tags = runs.parse_tags(ns.tags)
            server_url = self._tracking_server(ns.path)
            view = commands.ui_view(server_url)
            card = runs.run_cell(
                execute,
                experiment=ns.experiment, name=ns.name, tags=tags, autolog=ns.autolog,
                link_for=lambda exp, run: view.link(deep_link(exp, run)),
                show=card_output.show if live else None, server_url=server_url,
                team_for=lambda run: team_run_link(server_url, run),
            )
        except MlflowMagicError as exc:
            raise UsageError(str(exc)) from None
        if card_output.placed:
            card_output.show(card)
        else:
            display(card)
        if failed:  # as `with mlflow.start_run(): ...` would: the cell fails, Run All stops
            error = failed[0]
            raise UsageError(
                f"The cell failed with {type(error).__name__}: {error} (its traceback is "
                f"above), so its run {card.run_name!r} is marked FAILED and the cells after it "
                "do not run.")

    @staticmethod
    def _tracking_server(path: str | None) -> str:
        """The server MLflow uses; the folder's server is started (or reused) if none."""
        from .. import api
        from ..tracking import http_tracking_uri
        from .progress import CellProgress, for_this_shell

        uri = http_tracking_uri()
        if path is None and uri:
            return uri
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


MlflowMagics.mlflow_server.__doc__ = full_help(PARSER)
MlflowMagics.mlflow_run.__doc__ = RUN_PARSER.format_help()
