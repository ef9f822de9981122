"""Check a tracking server elsewhere (a team's) before the kernel uses it: ``connect``."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..errors import ConnectError
from ..results import Connected
from ..security import ports
from ..settings.masking import mask_uri
from . import rest


def check(uri: str, registry_uri: str | None = None, timeout: float = 10.0,
          again: str = "connect again") -> Connected:
    """Check that ``uri`` is a live MLflow tracking server before the kernel uses it (or a
    push copies to it: ``again`` is what the messages end with)."""
    scheme = urlsplit(uri).scheme
    if scheme not in ("http", "https"):
        raise ConnectError(
            f"{mask_uri(uri)} is not the address of a tracking server. `connect` takes its "
            "http(s) URL, e.g. `%mlflow_server connect http://mlflow.example.org:5000`; to run "
            "a server on a database, use `%mlflow_server start --backend-store-uri URI`."
        )
    user, password = (os.environ.get("MLFLOW_TRACKING_USERNAME"),
                      os.environ.get("MLFLOW_TRACKING_PASSWORD"))
    try:  # a local address of ours gets the folder's key; one of another user's, nothing
        headers = ports.headers_for_url(uri)
    except ports.PortTaken as exc:
        raise ConnectError(str(exc).replace("This MLflow call was not sent", "Not connected")
                           ) from None
    found = rest.probe(uri, timeout=timeout, headers=headers,
                       auth=(user, password) if user and password is not None else None)
    if found.login_required:
        raise ConnectError(
            f"The MLflow server at {mask_uri(uri)} asks for a login and "
            + ("refused the user name or password in MLFLOW_TRACKING_USERNAME and "
               "MLFLOW_TRACKING_PASSWORD: check them" if user else
               "none was given: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
               "in the environment (e.g. `%env MLFLOW_TRACKING_USERNAME=alice`)")
            + f", then {again}.")
    if found.status == 403:
        raise ConnectError(
            f"The MLflow server at {mask_uri(uri)} answered 403 Forbidden: "
            + (f"the user {user!r} may not read from it (ask its admin for a permission), or "
               if user else "")
            + "it refuses the host name you reach it by (its admin starts it with "
            "--allowed-hosts naming that host). Then " + again + ".")
    if not found.healthy:
        raise ConnectError(
            f"No MLflow tracking server answers at {mask_uri(uri)}: {found.error}. "
            "Check the address and that the server runs (`mlflow server ...` on that "
            f"machine), then {again}.")
    return Connected(mask_uri(uri) or uri, found.version or "unknown",
                     mask_uri(registry_uri))
