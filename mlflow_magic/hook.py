"""What runs in every MLflow process of the environment, before each of its REST requests.

MLflow asks every request-header provider registered under the
``mlflow.request_header_provider`` entry point before each request
(``mlflow/tracking/request_header/registry.py``): the kernel, ``!python
train.py``, a fresh terminal, MLflow's own CLI. :class:`RequestHook` is
mlflow_magic's, and does three things, in order:

1. waits for a server start still under way (:mod:`mlflow_magic.lifecycle.pending`);
2. adds the data folder's key to a request for this user's own private server,
   once that server is verified to hold its port, and stops a request for a
   local port that another user holds (:mod:`mlflow_magic.security.ports`);
3. brings a folder's server back on its port when it is down and nobody stopped
   it (its keeper died in a reboot or with kill -9), with its own settings.

A request to any other address gets nothing and costs a URL parse: the key is
never sent to a ``connect``-ed or remote server. Imports stay light: MLflow
loads this module with its entry points, in processes that may never talk to
a server of ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .internals import mlflow_request_url, rewrite_printed_links
from .lifecycle import pending
from .settings.config import is_loopback
from .tracking import browser_links, mlflow_tracking_uri

if TYPE_CHECKING:
    from .security.ports import ServerNotRunning


class RequestHook:
    """MLflow's request-header provider interface: asked before every REST request."""

    #: MLflow's "View run at" links lead where this notebook's browser finds the UI
    #: (:func:`mlflow_magic.tracking.browser_links`), set up on the first request
    _links = False

    def in_context(self) -> bool:
        if not RequestHook._links:  # MLflow is loaded by now: its printed links can be found
            RequestHook._links = True
            rewrite_printed_links(browser_links)
        pending.wait_for_server(mlflow_tracking_uri)
        return True

    def request_headers(self) -> dict[str, str]:
        url = mlflow_request_url()
        if url is None or not is_loopback(urlsplit(url).hostname):
            return {}
        from .security.ports import ServerNotRunning, headers_for_url  # requests to here only

        try:
            return headers_for_url(url, wait=True)
        except ServerNotRunning as down:
            if not down.revivable:
                raise
            bring_back(down)
            return headers_for_url(url, wait=True)


def bring_back(down: ServerNotRunning) -> None:
    """Start a folder's server again on its port, with its own settings: its keeper died (a
    reboot, kill -9) and nobody stopped it. A start that cannot is said in one paragraph,
    and the call is not sent (a ``BaseException``: MLflow drops an ``Exception`` of a hook,
    and the request would then meet the gate's 401)."""
    from .errors import CellMessage, MlflowMagicError
    from .lifecycle.start import revive

    try:
        revive(down.data_dir, down.port)
    except MlflowMagicError as exc:
        raise CellMessage(
            f"This MLflow call was not sent: the MLflow server of the data folder "
            f"{down.data_dir} (port {down.port}) was down (a reboot, or its processes were "
            f"killed), and starting it again failed: {exc}") from None
