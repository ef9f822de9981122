"""``mlflow-magic``: the same commands for terminals and editors without Jupyter."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import commands
from .arguments import build_parser, split_passthrough
from .config import mask_uri
from .errors import MlflowMagicError
from .results import Connected, Launched, Reused


def _progress(phase: str, elapsed: float) -> None:
    """One updating line on a terminal; nothing when output is redirected."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{phase} ... {elapsed:4.1f} s")
        if phase == "ready":
            sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (1 for a problem the message explains)."""
    parser = build_parser()
    ours, extra = split_passthrough(sys.argv[1:] if argv is None else argv)
    ns = parser.parse_args(ours)
    try:
        result = commands.run(ns, extra, on_progress=_progress)
    except MlflowMagicError as exc:
        print(f"mlflow-magic: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nmlflow-magic: interrupted; nothing was left running.", file=sys.stderr)
        return 130
    print(result)
    if isinstance(result, (Launched, Reused, Connected)):
        # A child cannot change its shell's environment: say how to point the shell at it.
        print(f"\nexport MLFLOW_TRACKING_URI={mask_uri(result.url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
