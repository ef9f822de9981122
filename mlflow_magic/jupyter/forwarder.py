"""The process behind jupyter-server-proxy's ``/mlflow/`` route (the launcher's entry).

jupyter-server-proxy runs ``python -m mlflow_magic.jupyter.forwarder --unix-socket {unix_socket}``
on the first request to ``/mlflow/`` and proxies to that socket, which lives in
a folder only this user can enter: no other user can reach this process, and
no port of it can be taken over. Starting a second MLflow server here would put
two servers on one SQLite file, so this process starts nothing of its own: it
reuses (or starts, detached and shared, exactly like ``%mlflow_server start``)
the server of ``$MLFLOW_PATH`` and relays each request to it (:mod:`mlflow_magic.jupyter.relay`):
to ``127.0.0.1``, only while that server holds its port, without Jupyter's
credentials, with the folder's key. Whichever comes first, the magic or the
tile, both show the same server, and it survives a Jupyter restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
from collections.abc import Sequence
from urllib.parse import urlsplit

from tornado import httpserver, netutil, web

from ..contract import FIRST_PORT_ENV, IDLE_TIMEOUT_ENV
from ..errors import MlflowMagicError
from ..lifecycle.start import start as start_server
from ..security import ports
from ..settings.config import resolve
from ..settings.options import ServerOptions
from .config import MlflowMagic
from .relay import MAX_BODY, Relay

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_log = logging.getLogger(__name__)


class Forwarder:
    """The folder's server, (re)started when needed, and verified for each request."""

    def __init__(self, options: ServerOptions, route: str | None = None) -> None:
        self.options = options
        #: the server extension's route (``<base_url>mlflow-magic/proxy/``), if it is there
        self.route = route
        self._lock = asyncio.Lock()
        self._port: int | None = None

    def _ensure_server(self) -> int:
        """Reuse the folder's server if it is alive, else start it (blocking)."""
        return urlsplit(start_server(resolve(self.options)).server.url).port or 80

    async def target(self) -> ports.OwnServer:
        """The folder's server, verified to hold its port (MlflowMagicError if it cannot
        start)."""
        async with self._lock:
            found = ports.server_on_port(self._port) if self._port else None
            if found is None:
                self._port = await asyncio.to_thread(self._ensure_server)
                found = ports.server_on_port(self._port)
            if found is None:
                raise MlflowMagicError(f"The MLflow server on port {self._port} does not hold "
                                       "its port any more; reload to start it again.")
            return found


@web.stream_request_body
class ForwardHandler(Relay, web.RequestHandler):
    """Every request under ``/mlflow/``, relayed to the folder's server."""

    def initialize(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    def compute_etag(self) -> None:
        return None

    async def prepare(self) -> None:
        try:
            server = await self.forwarder.target()
        except (MlflowMagicError, ports.PortTaken) as exc:
            self.set_status(502)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"mlflow_magic could not start the MLflow server:\n\n{exc}\n")
            return
        if self.forwarder.route:  # the server extension's route: it streams
            return self._to_the_route(server.record.port)
        same_origin = self._same_origin()
        if self.request.method not in SAFE_METHODS and not same_origin:
            raise web.HTTPError(403, "mlflow_magic: cross-origin request refused")
        await self.open_relay(server.record.port, self.request.path, server.key, same_origin)

    def _to_the_route(self, port: int) -> None:  # only called with a route
        """Send the browser to ``mlflow-magic/proxy/<port>/`` for the same path (307: the
        same method and body). jupyter-server-proxy, in front of this process, holds whole
        responses in Jupyter's memory; that route streams them. The Location is relative,
        so it stays under any base URL and jupyter-server-proxy leaves it alone."""
        path = self.request.path
        route = (self.forwarder.route or "").strip("/").rsplit("/", 2)[-2:]  # mlflow-magic/proxy
        up = "../" * path.count("/")
        query = f"?{self.request.query}" if self.request.query else ""
        self.redirect(f"{up}{'/'.join(route)}/{port}{path}{query}", status=307)

    async def get(self, *_args: str) -> None:
        await self.relay_response()  # jupyter-server-proxy rewrites redirects itself

    post = put = delete = patch = head = options = get

    def _same_origin(self) -> bool:
        """jupyter-server-proxy passes the browser's Host and Origin on: same host, same
        origin (a write from another site gets no loopback Origin, so MLflow refuses it)."""
        headers = self.request.headers
        if headers.get("Sec-Fetch-Site") == "cross-site":
            return False
        origin = headers.get("Origin")
        return origin is None or urlsplit(origin).netloc == headers.get("Host")


def _log_warm_up_failure(task: asyncio.Task) -> None:
    """The first request shows a failed start to the user; the log keeps it for the admin."""
    if not task.cancelled() and task.exception() is not None:
        _log.warning("mlflow_magic: the MLflow server did not start: %s", task.exception())


async def serve(unix_socket: str, options: ServerOptions, route: str | None = None) -> None:
    forwarder = Forwarder(options, route)
    application = web.Application([(r"/.*", ForwardHandler, {"forwarder": forwarder})])
    server = httpserver.HTTPServer(application, max_body_size=MAX_BODY)
    server.add_socket(netutil.bind_unix_socket(unix_socket, mode=0o600))
    # Start (or find) the MLflow server right away, not on the first request; a failure
    # shows on that request.
    warm_up = asyncio.create_task(forwarder.target())
    warm_up.add_done_callback(_log_warm_up_failure)
    try:
        await asyncio.Event().wait()
    finally:
        warm_up.cancel()
        server.stop()
        with contextlib.suppress(OSError):
            os.unlink(unix_socket)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: the settings come as arguments (from ``c.MlflowMagic.*`` and the Jupyter
    server's route, see :func:`mlflow_magic.jupyter.launcher.setup_mlflow`)."""
    parser = argparse.ArgumentParser(prog="python -m mlflow_magic.jupyter.forwarder")
    parser.add_argument("--unix-socket", required=True,
                        help="the socket jupyter-server-proxy connects to")
    parser.add_argument("--path", help="data folder (default: $MLFLOW_PATH or ~/mlflow_data)")
    parser.add_argument("--route", help="the server extension's route, which streams")
    parser.add_argument("--first-port", type=int, help="where a start looks for a free port")
    parser.add_argument("--idle-timeout", help="the default idle timeout (30m, 2h, 0)")
    parser.add_argument("--start-flags", default="", help="flags of `start`, shell-quoted")
    args = parser.parse_args(argv)
    if args.first_port:
        os.environ[FIRST_PORT_ENV] = str(args.first_port)  # this process's own starts
    if args.idle_timeout:
        os.environ[IDLE_TIMEOUT_ENV] = args.idle_timeout
    settings = MlflowMagic(data_dir=args.path or "", idle_timeout=args.idle_timeout or "",
                           start_flags=shlex.split(args.start_flags))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.unix_socket, settings.options(), args.route))


if __name__ == "__main__":
    main()
