"""The server's side of idle: every request that counts touches the folder's activity file,
which the keeper (:mod:`mlflow_magic.keeper.main`) reads to put the server to sleep.

A request counts unless it is ``/health`` or one of mlflow_magic's own probes (readiness,
``status``, the panel's refresh: they carry :data:`~mlflow_magic.contract.PROBE_HEADER`), so
a server nobody uses sleeps even while a panel watches it, and an open UI that polls keeps
it awake. The file is touched at most once a second per worker: one ``utime`` call.
"""

from __future__ import annotations

import contextlib
import os
import time

from .. import contract

#: Seconds between two touches of the file by one worker.
EVERY = 1.0
_PROBE = contract.PROBE_HEADER.lower().encode()


class Activity:
    """When this worker last said so; the file that says it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.last = 0.0

    def seen(self, path: str, probe: bool) -> None:
        """A request came in: say so, unless it does not count or was said just now."""
        if probe or path in contract.OPEN_PATHS:
            return
        now = time.monotonic()
        if now - self.last < EVERY:
            return
        self.last = now
        with contextlib.suppress(OSError):
            os.utime(self.path)


def asgi(app, activity: Activity):
    async def counted(scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            probe = any(name == _PROBE for name, _ in scope.get("headers", ()))
            activity.seen(scope.get("path", ""), probe)
        return await app(scope, receive, send)

    return counted


def wsgi(app, activity: Activity):
    header = "HTTP_" + contract.PROBE_HEADER.upper().replace("-", "_")

    def counted(environ, start_response):
        activity.seen(environ.get("PATH_INFO", ""), header in environ)
        return app(environ, start_response)

    return counted


def from_environment(app, kind: str):
    """``app`` that says when it is used, if a keeper watches (the starter names the file in
    :data:`~mlflow_magic.contract.ACTIVITY_FILE_ENV`); as it is otherwise."""
    path = os.environ.get(contract.ACTIVITY_FILE_ENV)
    if not path:
        return app
    return asgi(app, Activity(path)) if kind == "asgi" else wsgi(app, Activity(path))
