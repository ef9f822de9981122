"""A whole push (:func:`push`): plan, copy, check, as one typed result.

A push stopped by the network or the server is one paragraph that says the next push goes
on from where it stopped; two sides that still differ after the copy are named, never
hidden.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ...errors import PushError
from ...results import Pushed
from ...settings.masking import mask_text, mask_uri
from ...state import pushstate
from .checking import verify
from .copying import Progress, apply, quiet
from .planning import plan


def push(data_dir: str, source_url: str, to: str, experiments: Sequence[str] | None = None,
         dry_run: bool = False, on_progress: Progress | None = None) -> Pushed:
    """Copy what the server at ``source_url`` (the data folder ``data_dir``'s) has and the
    tracking server at ``to`` lacks, then compare both sides."""
    from mlflow import MlflowClient

    source, target = MlflowClient(source_url), MlflowClient(to)
    t0 = time.monotonic()
    earlier = pushstate.known(Path(data_dir), to)
    with _stopped_push_explained(to), quiet():
        found = plan(source, target, experiments, earlier)
        created = tuple(e.name for e in found.experiments if e.target_id is None)
        merged = tuple((e.name, e.others) for e in found.experiments if e.others)
        summary = found.summary()
        if dry_run:
            return Pushed(data_dir, mask_uri(to) or to, True, summary, found.empty, created,
                          merged)
        tally = None if found.empty else apply(source, target, found, on_progress)
        # Nothing copied: the plan just read is what the comparison reads (no second pass).
        checked = verify(source, target, experiments, already=found if tally is None else None,
                         known=earlier)
    if checked.differences:
        listed = "; ".join(checked.differences[:10])
        more = len(checked.differences) - 10
        raise PushError(
            f"The push to {mask_uri(to)} ended, but the two servers differ: {listed}"
            + (f"; and {more} more" if more > 0 else "")
            + ". Run the same push again to copy what is missing; a difference that stays "
              "(a param with another value there, extra metric points) was made on the "
              "target by something else and needs a look there.")
    pushstate.remember(Path(data_dir), to, {**earlier, **checked.equal})  # the next push
    return Pushed(data_dir, mask_uri(to) or to, False, summary, found.empty, created, merged,
                  time.monotonic() - t0, tally.rate_values() if tally is not None else None,
                  checked)


@contextlib.contextmanager
def _stopped_push_explained(to: str) -> Iterator[None]:
    """An MLflow or network error in the middle of a push: one paragraph that says the next
    push goes on from there (nothing copied is lost or doubled)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, ConnectionError, OSError) as exc:
        if isinstance(exc, OSError) and not _is_network_error(exc):
            raise
        reason = mask_text(str(exc).strip().splitlines()[0] if str(exc).strip() else
                           type(exc).__name__).rstrip(".")
        raise PushError(
            f"The push to {mask_uri(to)} stopped: {reason}. What was copied so far is kept, "
            "and nothing is copied twice: once the server answers again, run the same push "
            "to go on from where it stopped.") from exc


def _is_network_error(exc: OSError) -> bool:
    import requests

    return isinstance(exc, requests.exceptions.RequestException | ConnectionError)
