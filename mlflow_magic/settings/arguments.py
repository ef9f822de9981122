"""The one definition of ``%mlflow_server``'s subcommands and flags.

Both shells build their parser here: the magic with IPython's
``MagicArgumentParser`` (errors become ``UsageError``, no traceback) and the
console script with plain ``argparse`` (errors exit with status 2). So the
magic's ``?`` help and ``mlflow-magic --help`` never drift apart.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Sequence

from ..contract import IDLE_TIMEOUT_ENV
from .config import DEFAULT_IDLE_TIMEOUT, DEFAULT_TIMEOUT, FIRST_PORT, duration, human
from .options import ServerOptions

#: What ``ui --view`` opens (see :func:`mlflow_magic.front.ui.deep_link`); an experiment opens
#: its runs by default.
VIEWS = ("runs", "traces", "overview", "models")

DESCRIPTION = """\
Run one MLflow tracking server per data folder, shared by every notebook, kernel
and terminal that uses the folder, and point MLflow at it.

The data folder is --path, else $MLFLOW_PATH, else ~/mlflow_data. Anything
after `--` is passed to `mlflow server` as is, e.g.
`start -- --expose-prometheus /tmp/metrics`.
"""


def _duration(text: str) -> float:
    """``--idle-timeout``'s type: argparse shows the form's error as the flag's."""
    try:
        return duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_folder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path", metavar="DIR",
                        help="data folder (default: $MLFLOW_PATH, else ~/mlflow_data)")


def _add_start_flags(parser: argparse.ArgumentParser) -> None:
    _add_folder(parser)
    store = parser.add_argument_group("backend store")
    store.add_argument("--sqlite", action="store_true",
                       help="SQLite database <folder>/mlflow.db (the default)")
    store.add_argument("--file-store", action="store_true",
                       help="file store <folder>/mlruns (deprecated by MLflow)")
    store.add_argument("--backend-store-uri", metavar="URI",
                       help="any SQLAlchemy URI, e.g. postgresql://user:pass@host/db")
    store.add_argument("--registry-store-uri", metavar="URI",
                       help="separate store for the model registry")
    art = parser.add_argument_group("artifacts")
    art.add_argument("--artifacts-destination", metavar="URI",
                     help="where the server stores proxied artifacts "
                          "(default: <folder>/artifacts; s3://bucket/path works)")
    art.add_argument("--default-artifact-root", metavar="URI",
                     help="artifact root of new experiments")
    art.add_argument("--serve-artifacts", action=argparse.BooleanOptionalAction,
                     help="the server proxies artifact access (the default); with "
                          "--no-serve-artifacts clients write directly to "
                          "--default-artifact-root")
    art.add_argument("--artifacts-only", action=argparse.BooleanOptionalAction,
                     help="serve artifacts only, no tracking (MLflow scenario 6)")
    net = parser.add_argument_group("network and process")
    net.add_argument("--host", help="interface to listen on (default: 127.0.0.1)")
    net.add_argument("--port", type=int,
                     help=f"port (default: the first free port from {FIRST_PORT})")
    net.add_argument("--workers", type=int, help="uvicorn worker processes (default: 1)")
    net.add_argument("--timeout", type=float,
                     help=f"seconds to wait for the server to answer (default: "
                          f"{DEFAULT_TIMEOUT:.0f})")
    net.add_argument("--idle-timeout", metavar="DURATION", type=_duration,
                     help="sleep after this long without a request (30m, 2h, 90s; 0: never; "
                          f"default: ${IDLE_TIMEOUT_ENV}, else "
                          f"{human(DEFAULT_IDLE_TIMEOUT)}): the server's memory is freed, its "
                          "port kept, and the next request wakes it")
    net.add_argument("--jobs", action=argparse.BooleanOptionalAction,
                     help="enable MLflow's job runner (used by some GenAI features; "
                          "off by default: it costs ~7 processes)")
    net.add_argument("--attached", action=argparse.BooleanOptionalAction,
                     help="stop the server when this kernel exits (default: it keeps "
                          "running); once another kernel reuses it, it is shared and "
                          "keeps running")
    net.add_argument("--allowed-hosts", metavar="HOSTS",
                     help="comma-separated Host names the server accepts besides "
                          "localhost (needed behind a public proxy)")
    net.add_argument("--cors-allowed-origins", metavar="ORIGINS",
                     help="comma-separated origins allowed to write cross-origin")
    net.add_argument("--app-name", metavar="NAME",
                     help="the server app, e.g. basic-auth (MLflow's login; the admin "
                          "password comes from $MLFLOW_AUTH_ADMIN_PASSWORD)")
    sync = parser.add_argument_group("log locally, share with the team")
    sync.add_argument("--sync-to", metavar="URL",
                      help="copy every change to the tracking server at URL in the "
                           "background, within seconds, resuming after an outage "
                           "(credentials: $MLFLOW_TRACKING_USERNAME and "
                           "$MLFLOW_TRACKING_PASSWORD, or $MLFLOW_TRACKING_TOKEN)")
    sync.add_argument("--no-sync", dest="sync_to", action="store_const", const="",
                      help="stop copying to the team server (on restart)")
    parser.add_argument("--upgrade-db", action="store_true",
                        help="if the SQLite database was made by an older MLflow, back it "
                             "up next to it and upgrade it (`mlflow db upgrade`)")


def _add_ui_flags(parser: argparse.ArgumentParser, show_flag: bool = True) -> None:
    ui = parser.add_argument_group("user interface")
    if show_flag:
        ui.add_argument("--no-ui", action="store_true", help="do not show the UI inline")
    ui.add_argument("--height", type=int, default=None,
                    help="height of the inline UI in pixels (default: 650)")
    ui.add_argument("--proxy-url", metavar="URL",
                    help="how the browser reaches the server: a URL template with {port} or "
                         "the Jupyter base URL (default: $MLFLOW_MAGIC_PROXY_URL, else found "
                         "from the Jupyter server that runs this kernel)")


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    """Add every subcommand, with its flags, to ``parser``."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (("start", "start or reuse the folder's server and use it"),
                       ("restart", "stop the folder's server and start it again with the "
                                   "same settings, changed only where a flag says")):
        start = sub.add_parser(name, help=text, description=text)
        _add_start_flags(start)
        _add_ui_flags(start)
        start.add_argument("--wait", action="store_true",
                           help="in a notebook, return only once the server answers (by "
                                "default the cell returns at once and MLflow calls wait "
                                "for the server; terminals and scripts always wait)")
    stop = sub.add_parser("stop", help="stop the folder's server and all its processes")
    _add_folder(stop)
    stop.add_argument("--all", action="store_true", help="stop every known server")
    stop.add_argument("--force", action="store_true",
                      help="forget the record of a server started on another host (shared "
                           "home) that is known to be gone")
    _add_folder(sub.add_parser("status", help="state, URL, pid, uptime, stores, log"))
    sub.add_parser("list", help="every known server")
    logs = sub.add_parser("logs", help="the end of the server's log")
    _add_folder(logs)
    logs.add_argument("-n", "--lines", type=int, default=30, help="how many lines (default: 30)")
    connect = sub.add_parser("connect", help="use an existing tracking server")
    connect.add_argument("uri", help="http(s) URL of the tracking server")
    connect.add_argument("--registry-uri", metavar="URI",
                         help="a separate model registry server")
    _add_ui_flags(connect)
    push = sub.add_parser(
        "push", help="copy the folder's runs, artifacts, models and traces to another "
                     "tracking server, then compare both (a second push copies nothing)",
        description="Copy the data folder's experiments, runs (params, tags, every metric "
                    "point, datasets, nested runs, artifacts), logged and registered models "
                    "and traces to the tracking server at --to, then compare both sides. "
                    "Credentials come from MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD. A push that stopped goes on where it stopped; "
                    "nothing is copied twice, and nothing in the folder changes.")
    push.add_argument("--to", required=True, metavar="URL",
                      help="http(s) URL of the tracking server to copy to")
    _add_folder(push)
    push.add_argument("--experiment", action="append", metavar="NAME",
                      help="push only this experiment (repeat for several; default: all)")
    push.add_argument("--dry-run", action="store_true",
                      help="say what would be copied, with sizes, and copy nothing")
    _add_folder(sub.add_parser(
        "sync", help="where the copy to the team server (start --sync-to URL) is: in sync, "
                     "how far behind, the last error"))
    ui = sub.add_parser("ui", help="show the UI (inline in notebooks), optionally at an "
                                   "experiment or run")
    _add_folder(ui)
    ui.add_argument("--experiment", metavar="NAME_OR_ID", help="open this experiment")
    ui.add_argument("--run", metavar="RUN_ID", help="open this run (needs --experiment, "
                                                   "or finds it from the run)")
    ui.add_argument("--view", choices=VIEWS,
                    help="what to open: an experiment's training runs (the default), its "
                         "traces or its GenAI overview, or the model registry (models)")
    _add_ui_flags(ui, show_flag=False)
    panel = sub.add_parser("panel", help="a control panel with status, buttons and log "
                                         "(also: %%mlflow_server with no command)")
    _add_folder(panel)
    panel.add_argument("--proxy-url", metavar="URL", help="as for start")


RUN_DESCRIPTION = """\
Run the cell inside an MLflow run (nested if a run is active) and show a card
with its status, params, last metric values, artifacts, duration and a link to
it in the UI. A failing cell ends the run as FAILED. Starts the data folder's
server first if MLflow is not pointed at one yet.
"""


def build_run_parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
                     prog: str = "%%mlflow_run") -> argparse.ArgumentParser:
    """The flags of the ``%%mlflow_run`` cell magic."""
    parser = parser_class(prog=prog, description=RUN_DESCRIPTION,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", metavar="NAME",
                        help="experiment (created if new; default: the active one)")
    parser.add_argument("--name", metavar="RUN_NAME", help="run name (default: generated)")
    parser.add_argument("--tags", nargs="*", metavar="KEY=VALUE", help="tags of the run")
    parser.add_argument("--autolog", action="store_true",
                        help="turn on mlflow.autolog() for this cell")
    _add_folder(parser)
    return parser


def commands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each subcommand, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def help_asked(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The help that ``-h``/``--help`` in ``argv`` asks for: the named command's flags (what
    ``mlflow-magic COMMAND --help`` prints), else the commands; None if none was asked."""
    if not {"-h", "--help"} & set(argv):
        return None
    commands = commands_of(parser)
    named = next((arg for arg in argv if arg in commands), None)
    return (commands[named] if named else parser).format_help()


def full_help(parser: argparse.ArgumentParser) -> str:
    """The commands, then every command's flags: what ``%mlflow_server?`` shows."""
    return "\n".join([parser.format_help(), *(
        f"\n{name}\n{'-' * len(name)}\n{sub.format_help()}"
        for name, sub in commands_of(parser).items())])


def did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """``message`` of an argparse error, with the closest known flag to each unknown one."""
    unknown = re.findall(r"(?<![\w-])(--?[\w-]+)", message.partition("arguments:")[2])
    known = {flag for sub in [parser, *commands_of(parser).values()] for action in sub._actions
             for flag in action.option_strings}
    hints = [f"did you mean `{match[0]}` for `{flag}`?" for flag in unknown
             if (match := difflib.get_close_matches(flag, known, n=1, cutoff=0.6))]
    return f"{message} ({'; '.join(hints)})" if hints else message


class Parser(argparse.ArgumentParser):
    """The console script's parser: an unknown flag gets the closest known one."""

    def error(self, message: str):
        super().error(did_you_mean(root_of(self), message))


#: Each subcommand's parser, to its top parser (for the flags an error may suggest).
_ROOTS: dict[int, argparse.ArgumentParser] = {}


def root_of(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return _ROOTS.get(id(parser), parser)


def build_parser(parser_class: type[argparse.ArgumentParser] = Parser,
                 prog: str = "mlflow-magic") -> argparse.ArgumentParser:
    parser = parser_class(prog=prog, description=DESCRIPTION,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    add_subcommands(parser)
    for sub in commands_of(parser).values():
        _ROOTS[id(sub)] = parser
    return parser


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """Split at the first ``--``: our flags before it, ``mlflow server``'s after it.

    No ``--`` gives None ("not said": ``restart`` keeps the server's own), a bare
    ``--`` gives [] (none).
    """
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, None


def server_options(ns: argparse.Namespace,
                   extra_args: Sequence[str] | None = None) -> ServerOptions:
    """The :class:`ServerOptions` named by parsed ``start``/``restart`` flags."""
    return ServerOptions(
        path=ns.path,
        sqlite=ns.sqlite,
        file_store=ns.file_store,
        backend_store_uri=ns.backend_store_uri,
        registry_store_uri=ns.registry_store_uri,
        default_artifact_root=ns.default_artifact_root,
        artifacts_destination=ns.artifacts_destination,
        serve_artifacts=ns.serve_artifacts,
        artifacts_only=ns.artifacts_only,
        host=ns.host,
        port=ns.port,
        workers=ns.workers,
        idle_timeout=ns.idle_timeout,
        timeout=ns.timeout,
        jobs=ns.jobs,
        attached=ns.attached,
        allowed_hosts=ns.allowed_hosts,
        cors_allowed_origins=ns.cors_allowed_origins,
        app_name=ns.app_name,
        extra_args=None if extra_args is None else tuple(extra_args),
        sync_to=ns.sync_to,
        upgrade_db=ns.upgrade_db,
    )
