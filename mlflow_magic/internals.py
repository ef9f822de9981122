"""Other projects' private details that mlflow_magic relies on, in one place.

Each function here reads something a library does not promise to keep. Each
one degrades safely when the detail moves (returns None, or does nothing), and
a test on real MLflow fails loudly when it does (see CONTRIBUTING.md for the
list of what is used, why, and which versions were checked).
"""

from __future__ import annotations

import sys

#: MLflow's module that sends every REST request (tracking, registry, artifacts, traces).
_REST_MODULE = "mlflow.utils.rest_utils"
#: How far up from a request-header provider MLflow's ``http_request`` frame sits
#: (provider -> resolve_request_headers -> http_request), with room to spare.
_FRAMES_UP = 8


def mlflow_request_url() -> str | None:
    """The URL of the REST request MLflow is preparing, seen from a request-header provider.

    MLflow asks its header providers for headers without saying where the request
    goes (``resolve_request_headers()`` takes no URL). Its ``http_request`` has
    computed ``url`` before it asks (MLflow 3.13 to 3.17, checked), so the frame
    that called the providers knows. None if that frame cannot be found: then no
    credential is added anywhere, which fails closed.
    """
    frame = sys._getframe(1)
    for _ in range(_FRAMES_UP):
        frame = frame.f_back  # type: ignore[assignment]
        if frame is None:
            return None
        if frame.f_code.co_name == "http_request" \
                and frame.f_globals.get("__name__") == _REST_MODULE:
            url = frame.f_locals.get("url")
            return url if isinstance(url, str) else None
    return None
