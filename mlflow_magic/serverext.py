"""A Jupyter server extension: the MLflow UI behind JupyterHub (or any public host) with no flags.

jupyter-server-proxy forwards the browser's ``Host`` and ``Origin`` unchanged,
so behind ``https://hub.example.org`` MLflow's security middleware answers
"Invalid Host header" (its allowed hosts are localhost and private addresses)
and blocks the UI's own writes as cross-origin. Opening MLflow's port to the
public name would weaken it for everyone who can reach that port.

Instead, ``<base_url>mlflow-magic/proxy/<port>/`` is jupyter-server-proxy's own
authenticated proxy (every request needs a Jupyter login) that presents
MLflow with what it expects from a local client: ``Host: 127.0.0.1:<port>``,
and for requests Jupyter itself deems same-origin, a loopback ``Origin``.
A cross-origin write is refused here with 403; MLflow's own checks stay on,
unchanged, for everything that reaches its port directly. The route only
proxies to ports that answer like MLflow (``/health``), so it is no general
Host-rewriting proxy.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import LocalProxyHandler
from tornado import httpclient, web

ROUTE = "mlflow-magic"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Ports recently seen answering like MLflow, so the check costs one request a minute.
_VERIFIED: dict[int, float] = {}
VERIFY_EVERY = 60.0


class LoopbackProxyHandler(LocalProxyHandler):
    """``mlflow-magic/proxy/<port>/...``: to MLflow as a local client, after Jupyter's login."""

    _mlflow_port = 0

    async def prepare(self, *args, **kwargs):
        await super().prepare(*args, **kwargs)  # a Jupyter login is required, as for /proxy/
        if self._finished:  # redirected to the login page
            return
        port = int(self.path_args[0])
        if not await _answers_like_mlflow(port):
            raise web.HTTPError(404, f"no MLflow server answers on port {port}")
        if self.request.method not in SAFE_METHODS and not self._same_origin():
            raise web.HTTPError(403, "mlflow_magic: cross-origin request refused")
        self._mlflow_port = port

    def _same_origin(self) -> bool:
        """Jupyter's own rule for its API (Origin host = Host, or an allowed origin)."""
        if self.request.headers.get("Sec-Fetch-Site") == "cross-site":
            return False
        return self.check_origin()

    def proxy_request_headers(self):
        headers = super().proxy_request_headers()
        loopback = f"127.0.0.1:{self._mlflow_port}"
        headers["Host"] = loopback
        if "Origin" in headers and self._same_origin():
            headers["Origin"] = f"http://{loopback}"
        return headers


class TileHandler(JupyterHandler):
    """``mlflow-magic/tile/``: where the launcher's MLflow tile opens its tab.

    It reuses (or starts, detached and shared, as ``%mlflow_server start`` does)
    the server of ``$MLFLOW_PATH``, then sends the tab to the loopback route
    above, so the tile's UI can write behind a public host name as the inline
    UI can. (jupyter-server-proxy's own ``/mlflow/`` route, which the tile used,
    can only override headers with fixed values: it cannot tell a same-origin
    write from a cross-site one.)
    """

    @web.authenticated
    async def get(self) -> None:
        from . import manager
        from .config import ServerOptions, resolve
        from .errors import MlflowMagicError

        try:
            result = await asyncio.to_thread(lambda: manager.start(resolve(ServerOptions())))
        except MlflowMagicError as exc:
            self.set_status(500)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"The MLflow server could not start.\n\n{exc}")
            return
        port = urlsplit(result.url).port
        self.redirect(url_path_join(self.base_url, ROUTE, "proxy", str(port)) + "/")


class InfoHandler(APIHandler):
    """``mlflow-magic/api/info``: lets a kernel find out that this route exists."""

    @web.authenticated
    def get(self) -> None:
        from . import __version__

        self.finish({"version": __version__, "route": f"{ROUTE}/proxy/{{port}}/"})


async def _answers_like_mlflow(port: int) -> bool:
    if time.monotonic() - _VERIFIED.get(port, float("-inf")) < VERIFY_EVERY:
        return True
    try:
        answer = await httpclient.AsyncHTTPClient().fetch(
            f"http://127.0.0.1:{port}/health", request_timeout=3, raise_error=False)
    except Exception:  # refused, reset: nothing of ours listens there
        return False
    found = answer.code == 200 and answer.body.strip() == b"OK"
    if found:
        _VERIFIED[port] = time.monotonic()
    return found


def _load_jupyter_server_extension(serverapp) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*", [
        (url_path_join(base, ROUTE, r"proxy/(\d+)(.*)"), LoopbackProxyHandler,
         {"absolute_url": False}),
        (url_path_join(base, ROUTE, "api/info"), InfoHandler),
        (url_path_join(base, ROUTE, "tile/?"), TileHandler),
    ])
