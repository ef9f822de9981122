"""``mlflow-magic``: the same commands for terminals and editors without Jupyter."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from .errors import MlflowMagicError
from .front import commands, render
from .front.terminal import PushLine, TextProgress
from .results import Connected, Launched, Reused
from .settings.arguments import build_parser, split_passthrough
from .settings.masking import mask_uri

#: A command line is shown to every user of the machine (``ps``, ``/proc/<pid>/cmdline``).
PASSWORD_IN_ARGV = (
    "--sync-to holds a password, and a command line can be read by every user of this "
    "machine (`ps`) for as long as the command runs; nothing was started. Give the URL "
    "without it and the credentials as MLflow reads them: `export "
    "MLFLOW_TRACKING_USERNAME=NAME`, then `read -s MLFLOW_TRACKING_PASSWORD && export "
    "MLFLOW_TRACKING_PASSWORD` (or MLFLOW_TRACKING_TOKEN for a token), and run "
    "`mlflow-magic start --sync-to https://HOST` again. A password you already typed there "
    "was visible: change it if others use this machine.")


def for_terminal(message: str) -> str:
    """Messages name the magic's commands; a terminal user runs ``mlflow-magic`` instead."""
    return (message.replace("`%mlflow_server?`", "`mlflow-magic --help`")
            .replace("%mlflow_server", "mlflow-magic"))


def _no_progress(phase: str, elapsed: float) -> None:
    """Output redirected to a file or a pipe: no progress line."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (1 for a problem the message explains)."""
    render.install()
    parser = build_parser()
    ours, extra = split_passthrough(sys.argv[1:] if argv is None else argv)
    ns = parser.parse_args(ours)
    if urlsplit(getattr(ns, "sync_to", None) or "").password:
        print(f"mlflow-magic: {PASSWORD_IN_ARGV}", file=sys.stderr)
        return 2
    tty = sys.stderr.isatty()
    progress = TextProgress(sys.stderr) if tty else _no_progress
    try:
        result = commands.run(ns, extra, on_progress=progress,
                              on_push=PushLine(sys.stderr) if tty else None)
    except MlflowMagicError as exc:
        print(f"mlflow-magic: {for_terminal(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if ns.command == "push":
            print("\nmlflow-magic: interrupted. What was copied is kept; run the same push "
                  "again to go on from where it stopped (nothing is copied twice).",
                  file=sys.stderr)
        else:
            print("\nmlflow-magic: interrupted; nothing was left running.", file=sys.stderr)
        return 130
    print(for_terminal(str(result)))
    if isinstance(result, (Launched, Reused)) and result.server.private:
        # The browser has no key: a one-time link logs it in (a cookie, as Jupyter's ?token=).
        print(commands.ui_view(result.url))
    if isinstance(result, (Launched, Reused, Connected)):
        # A child cannot change its shell's environment: say how to point the shell at it.
        print(f"\nexport MLFLOW_TRACKING_URI={mask_uri(result.url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
