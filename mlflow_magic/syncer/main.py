"""``python -m mlflow_magic.syncer.main <data folder>``: copy a folder's changes to its team
server, within seconds, for as long as the folder's keeper runs it.

The team server's URL comes in :data:`~mlflow_magic.contract.SYNC_TO_ENV` (from the keeper's
0600 spec, never on the command line), its credentials in MLflow's own
``MLFLOW_TRACKING_USERNAME`` / ``PASSWORD`` / ``TOKEN``. The folder's server is reached at its
record's URL, as any program of its owner reaches it.

A failure (the team server down, a 5xx, a refused login) is said in ``sync.json`` as one
paragraph with its fix, and the cycle is tried again after a backoff; logging to the folder
never waits for any of this. The process ends by itself once everything is copied and the
folder's server sleeps (the keeper starts it again with the server), so a sleeping folder
costs no MLflow process.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from .. import contract
from ..settings.masking import mask_text, mask_uri
from ..state import records, syncstate

#: Seconds between two looks at the journal (one ``stat`` each).
POLL = 0.5
#: The waits before a failed cycle is tried again (the last one repeats).
BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
#: MLflow's client retries a failed request for minutes by default; the sync has its own
#: backoff and says what failed at once.
_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


def explain(exc: BaseException, url: str) -> str:
    """A failed cycle as the one paragraph ``status`` shows: what happened, and the fix."""
    where = mask_uri(url) or url
    text = mask_text(str(exc).strip().splitlines()[0] if str(exc).strip()
                     else type(exc).__name__).rstrip(".")
    code = getattr(exc, "error_code", "") or ""
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or " 401" in text or " 403" in text \
            or "401 Client Error" in text or "status code 401" in text:
        return (f"The team server at {where} refused the sync's login ({text}). Nothing "
                "is lost: the folder keeps logging, and the sync goes on from where it "
                "stopped once the login works. Set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to an account of that "
                f"server, then run `%mlflow_server restart --sync-to {where}`.")
    if _is_unreachable(exc, text):
        return (f"The team server at {where} does not answer ({text}). Nothing is lost: "
                "the folder keeps logging, and the sync tries again by itself and goes on "
                "from where it stopped. If the address is wrong, restart with the right "
                "one (`%mlflow_server restart --sync-to URL`).")
    return (f"The sync to {where} stopped on an error ({text}). Nothing is lost: it tries "
            "again by itself, and goes on from where it stopped. If this stays, the "
            "server's log (`%mlflow_server logs`) and the team server's say more.")


def _is_unreachable(exc: BaseException, text: str) -> bool:
    import requests

    return isinstance(exc, requests.exceptions.RequestException | ConnectionError) or any(
        word in text for word in ("Connection refused", "Max retries exceeded",
                                  "Failed to establish", "timed out", " 50", "too many 50"))


class Sync:
    """The loop: a cycle when the journal grew, a backoff after a failure."""

    def __init__(self, data_dir: Path, url: str) -> None:
        self.data_dir, self.url = data_dir, url
        self.state = syncstate.load_for(data_dir, url)
        self.keeper = os.getppid()
        self.failures = 0

    def publish(self) -> None:
        """Say where the sync is (atomically, 0600): ``status`` reads it with the journal."""
        syncstate.save(self.data_dir, self.state)

    def run(self) -> int:
        record = records.read_record(self.data_dir)
        if record is None:  # not recorded yet (a start in progress): the keeper tries again
            return 0
        from mlflow import MlflowClient

        from .cycle import Cycle

        cycle = Cycle(self.data_dir, MlflowClient(record.url), MlflowClient(self.url),
                      self.state, self.publish)
        self.publish()
        while os.getppid() == self.keeper:  # a keeper killed (-9) takes its sync with it
            if cycle.pending() or self.state.last_error:
                try:
                    done = cycle.run_once()
                except Exception as exc:  # any failure: said, then tried again
                    self.failures += 1
                    self.state.last_error = explain(exc, self.url)
                    cycle.runs.copies.clear()  # read every copy back: nothing is doubled
                    self.publish()
                    time.sleep(BACKOFF[min(self.failures, len(BACKOFF)) - 1])
                    continue
                self.failures = 0
                self.state.last_error = None
                if done.anything:
                    self.state.last_copied = time.time()
                self.publish()
                continue
            if self._server_sleeps():
                return 0
            time.sleep(POLL)
        return 0

    def _server_sleeps(self) -> bool:
        state = records.read_keeper_state(self.data_dir)
        return state is not None and state.state == contract.KEEPER_SLEEPING


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    os.umask(0o077)
    url = os.environ[contract.SYNC_TO_ENV]
    for name, value in _CLIENT_ENV.items():
        os.environ.setdefault(name, value)
    # Any moment is a safe one: the state file is replaced whole, and every copy compares.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        return Sync(Path(args[0]), url).run()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
