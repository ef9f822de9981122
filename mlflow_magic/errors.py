"""Errors raised by mlflow_magic.

Every error carries one paragraph that names the problem and the fix. The
notebook shell turns them into IPython ``UsageError`` (no traceback), the
console script prints them to stderr, and the Python API lets them propagate.
"""

from __future__ import annotations


class MlflowMagicError(Exception):
    """Base class: the message is meant for the user, as is.

    In a notebook (``mlflow_magic.start()``, ``compare()`` called in a cell) IPython shows
    the paragraph alone, no stack: the fix is in it. Elsewhere it is a plain exception.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class ConfigError(MlflowMagicError):
    """The requested flags, URIs or folder cannot work; nothing was started."""


class PortInUseError(MlflowMagicError):
    """The requested port is held by another process."""


class SettingsMismatchError(MlflowMagicError):
    """A server runs for this data folder, but with other settings than requested."""


class StartFailedError(MlflowMagicError):
    """The server process exited before it answered; the log tail says why."""

    def __init__(self, message: str, exit_code: int | None = None, log_tail: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.log_tail = log_tail


class StartTimeoutError(StartFailedError):
    """The server did not answer within the timeout; it was stopped."""


class ConnectError(MlflowMagicError):
    """A tracking server given to ``connect`` does not answer as MLflow."""


class PushError(MlflowMagicError):
    """A push could not copy, or its copy differs from the source (see transfer.py)."""


class BusyError(MlflowMagicError):
    """Another process holds the data folder's lock for too long."""


class UnresponsiveError(MlflowMagicError):
    """The folder's server runs but did not answer in time; it was left running."""


class ForeignHostError(MlflowMagicError):
    """The folder's record was written on another host (a shared home), where we can't look."""


class CellMessage(BaseException):
    """Raised out of MLflow's request-header hook, which logs and drops an ``Exception``
    (so this is a ``BaseException``, as ``KeyboardInterrupt`` is); IPython shows the
    message alone: the fix is in it, the stack says nothing."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]
