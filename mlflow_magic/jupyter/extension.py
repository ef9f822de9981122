"""A Jupyter server extension: the MLflow UI through Jupyter, private to its user, behind any
public host name.

``<base_url>mlflow-magic/proxy/<port>/`` relays to this user's own MLflow server
on ``<port>`` (jupyter/relay.py), after Jupyter's login (every request), and:

- only to a port held by a server of this user's records, checked on every
  request, on ``127.0.0.1``: a port of another user's gets nothing, not even the
  request, let alone Jupyter's token or cookies;
- as MLflow expects from a local client: ``Host: 127.0.0.1:<port>`` and, for
  requests Jupyter itself deems same-origin, a loopback ``Origin`` (behind
  ``https://hub.example.org`` MLflow would refuse the browser's own); a
  cross-origin write is refused here with 403;
- without Jupyter's credentials, and with the folder's key, so MLflow's
  server, which refuses every request without it, lets the owner in.

MLflow's own checks stay on, unchanged, for everything that reaches its port.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import logging
import os
from urllib.parse import urlsplit

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import iostream, web

from ..contract import INFO_PATH, PROXY_PATH, TILE_PATH
from ..security import ports
from ..settings.config import start_command
from ..state import records
from .relay import Relay

#: Jupyter's own log: what an admin reads when a route could not bring a server back.
_log = logging.getLogger("ServerApp")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@web.stream_request_body
class LoopbackProxyHandler(Relay, JupyterHandler):
    """``mlflow-magic/proxy/<port>/...``: to the user's own MLflow, after Jupyter's login."""

    def set_default_headers(self) -> None:
        """No Jupyter headers on MLflow's pages: they carry MLflow's own (X-Frame-Options)."""

    def check_xsrf_cookie(self) -> None:
        """Writes are checked for same origin in :meth:`prepare` instead: the MLflow UI
        sends no Jupyter XSRF token."""

    def compute_etag(self) -> None:
        """Streamed responses keep MLflow's own ETag; tornado must not compute one."""
        return None

    async def prepare(self, *, _redirect_to_login: bool = True) -> None:
        await super().prepare(_redirect_to_login=_redirect_to_login)
        # A Jupyter login is required, as for /proxy/: Jupyter leaves that to each handler
        # (its allow_unauthenticated_access defaults to True). GET goes to the login page,
        # anything else gets 403.
        web.authenticated(lambda _handler: None)(self)
        if not self.current_user:
            return
        port, path = int(self.path_args[0]), self.path_args[1]
        if not path:  # the UI's relative links need the slash
            query = self.request.query
            return self.redirect(self._prefix() + (f"?{query}" if query else ""))
        same_origin = self._same_origin()
        if self.request.method not in SAFE_METHODS and not same_origin:
            raise web.HTTPError(403, "mlflow_magic: cross-origin request refused")
        taken = False
        try:
            server = ports.server_on_port(port)  # microseconds once verified
        except ports.PortTaken:
            server, taken = None, True
        if server is None and not taken:  # down, and nobody stopped it: bring it back
            server = await asyncio.to_thread(brought_back, port)
        if server is None:
            return self._not_ours(port, taken)
        self._record_activity()
        try:
            await self.open_relay(port, path, server.key, same_origin)
        except (OSError, iostream.StreamClosedError):  # it stopped a moment ago
            ports.forget(port)
            return self._not_ours(port, False)

    async def get(self, *_args: str) -> None:
        await self.relay_response(self._rewrite_location)
        self._record_activity()

    post = put = delete = patch = head = options = get

    def _same_origin(self) -> bool:
        """Jupyter's own rule for its API (Origin host = Host, or an allowed origin)."""
        if self.request.headers.get("Sec-Fetch-Site") == "cross-site":
            return False
        return self.check_origin()

    def _prefix(self) -> str:
        return url_path_join(self.base_url, PROXY_PATH, self.path_args[0]) + "/"

    def _rewrite_location(self, location: str) -> str:
        """A redirect to ``/x`` on MLflow's root stays under this route."""
        if location.startswith("/") and not location.startswith("//"):
            return self._prefix() + location.lstrip("/")
        return location

    def _not_ours(self, port: int, taken: bool) -> None:
        """A page that says why, instead of a proxy error: which folder to start, how."""
        folder = records.folder_last_on(port)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        if folder is None:
            self.set_status(404)
            self.finish(_page("No MLflow server of yours runs here", (
                f"No MLflow server that you started runs on port {port}. This route only "
                "shows your own servers. Run <code>%mlflow_server start</code> in a notebook "
                "(or <code>mlflow-magic start</code> in a terminal), then open the link it "
                "shows.")))
            return
        self.set_status(503)
        self.set_header("Retry-After", "5")
        cell = start_command(folder, None if taken else port)
        self.finish(_page("This MLflow server is not running", (
            f"The MLflow server of the data folder <code>{html.escape(str(folder))}</code> "
            f"is not running" + (f", and port {port} is now held by another user: start it "
                                 "again and open the new link it shows"
                                 if taken else f" on port {port}") + ". Start it with:"
            f"<pre>{html.escape(cell)}</pre>"
            + ("" if taken else "This page reloads itself every 5 seconds, and shows the UI "
                                "once the server runs again.")),
            refresh=not taken))

    def _record_activity(self) -> None:
        """Count MLflow traffic as activity, so an idle culler does not stop a server in use."""
        self.settings.setdefault("last_activity_times", {})["mlflow_magic"] = (
            datetime.datetime.now(datetime.timezone.utc))


def brought_back(port: int) -> ports.OwnServer | None:
    """The folder's server on ``port`` started again with its own settings, if it is down
    and nobody stopped it (its keeper died in a reboot or with kill -9); else None."""
    from ..errors import MlflowMagicError
    from ..lifecycle.start import revive

    try:
        found = ports.server_on_port(port, wait=True)
        if found is None and records.folder_last_on(port) is not None:
            # Ours until a moment ago, and something else answers there now: say what.
            from ..state.processes import port_holder

            _log.warning("mlflow_magic: port %s answers, but not as a server of yours; "
                         "it is held by %s", port, port_holder(port))
        return found
    except ports.ServerNotRunning as down:
        if not down.revivable:
            return None
        try:
            revive(down.data_dir, down.port)
        except MlflowMagicError as exc:  # the page then says which cell to run
            _log.warning("mlflow_magic: the server of %s could not be brought back on port "
                         "%s: %s", down.data_dir, down.port, exc)
            return None
    except ports.PortTaken:
        return None
    return ports.server_on_port(port)


def _page(title: str, body_html: str, refresh: bool = False) -> str:
    reload = '<meta http-equiv="refresh" content="5">' if refresh else ""
    return (f"<!doctype html><meta charset=utf-8>{reload}<title>MLflow: {html.escape(title)}"
            "</title><body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
            f"<h2>{html.escape(title)}</h2><p>{body_html}</p>")



class TileHandler(JupyterHandler):
    """``mlflow-magic/tile/``: where the launcher's MLflow tile opens its tab.

    It reuses (or starts, detached and shared, as ``%mlflow_server start`` does)
    the server of ``c.MlflowMagic.data_dir`` (else ``$MLFLOW_PATH``), then sends the tab
    to the loopback route above, so the tile's UI can write behind a public host name as the inline
    UI can. (jupyter-server-proxy's own ``/mlflow/`` route, which the tile used,
    can only override headers with fixed values: it cannot tell a same-origin
    write from a cross-site one.)
    """

    @web.authenticated
    async def get(self) -> None:
        from ..errors import MlflowMagicError
        from ..lifecycle.start import start as start_server
        from ..settings.config import resolve

        options = self.settings["mlflow_magic"].options()
        try:
            result = await asyncio.to_thread(lambda: start_server(resolve(options)))
        except MlflowMagicError as exc:
            self.set_status(500)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"The MLflow server could not start.\n\n{exc}")
            return
        port = urlsplit(result.url).port
        self.redirect(url_path_join(self.base_url, PROXY_PATH, str(port)) + "/")


class InfoHandler(APIHandler):
    """``mlflow-magic/api/info``: lets a kernel find out that this route exists."""

    @web.authenticated
    def get(self) -> None:
        from .. import __version__

        self.finish({"version": __version__, "route": f"{PROXY_PATH}{{port}}/"})


def _load_jupyter_server_extension(serverapp) -> None:
    from .config import from_server

    base = serverapp.web_app.settings["base_url"]
    settings = from_server(serverapp)
    settings.options()  # a bad c.MlflowMagic.start_flags is said at start, not on a click
    settings.export(os.environ)  # the kernels' defaults (they inherit this environment)
    serverapp.web_app.settings["mlflow_magic"] = settings
    serverapp.web_app.add_handlers(".*", [
        (url_path_join(base, PROXY_PATH, r"(\d+)(.*)"), LoopbackProxyHandler),
        (url_path_join(base, INFO_PATH), InfoHandler),
        (url_path_join(base, TILE_PATH) + "?", TileHandler),
    ])
