"""The server's side of ``--sync-to``: each write it answers with success is one line in
the folder's journal (:mod:`mlflow_magic.state.journal`), so the sync copies exactly what
changed instead of reading the whole folder every few seconds.

A line names what changed (a run, with the points and bytes it brought; an experiment; a
logged or registered model; a trace), taken from the route, the request's JSON and, for a
new run, the answer. Reads sent as POST (the searches) are no change. The cost is one small
append per write (~10 us), next to milliseconds for the write itself; a server of a folder
that does not sync has no journal and no such layer.
"""

from __future__ import annotations

import contextlib
import io
import os
import re

from .. import contract
from ..state import journal

#: The route prefixes MLflow's REST API is served under (its UI uses ``ajax-api``).
_API = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/", "/api/3.0/mlflow/",
        "/ajax-api/3.0/mlflow/")
_ARTIFACTS = ("/api/2.0/mlflow-artifacts/", "/ajax-api/2.0/mlflow-artifacts/")
_OTLP = "/v1/traces"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Bodies larger than this are not looked into (a run id is near the start of small ones).
_BODY_CAP = 1 << 20
_RUN_ID = re.compile(rb'"run_(?:id|uuid)"\s*:\s*"([0-9A-Za-z_-]+)"')
_EXPERIMENT_ID = re.compile(rb'"experiment_id"\s*:\s*"?([0-9A-Za-z_-]+)')
_POINT = b'"timestamp"'
#: Route families that are not about one run, by their first segment.
_FAMILIES = {"experiments": journal.EXPERIMENT, "registered-models": journal.REGISTRY,
             "model-versions": journal.REGISTRY, "logged-models": journal.MODEL,
             "traces": journal.TRACE}


def is_write(method: str, path: str) -> bool:
    """A request that may change what the folder holds (a search sent as POST does not)."""
    if method not in _WRITES:
        return False
    if path.startswith(_ARTIFACTS) or path == _OTLP:
        return True
    route = _route(path)
    if route is None:
        return False
    last = route.rstrip("/").rsplit("/", 1)[-1]
    return not (last == "search" or last.startswith("get") or last == "batch-get")


def wants_body(path: str) -> bool:
    """Only the API's JSON is read (an artifact's bytes never)."""
    return _route(path) is not None


def classify(path: str, body: bytes, answer: bytes, length: int) -> dict[str, object]:
    """The journal line of a successful write to ``path``."""
    if path == _OTLP:
        return {"k": journal.TRACE}
    if path.startswith(_ARTIFACTS):
        return _artifact_line(path, length)
    route = _route(path) or ""
    family = route.split("/", 1)[0]
    experiment = _first(_EXPERIMENT_ID, body)
    if route.startswith("runs/create"):
        return _line(journal.NEW_RUN, r=_first(_RUN_ID, answer), e=experiment)
    if family in ("runs", "metrics"):
        run = _first(_RUN_ID, body)
        if run is None:
            return {"k": journal.OTHER}
        points = body.count(_POINT) if route.startswith("runs/log-batch") else int(
            route.startswith("runs/log-metric"))
        return _line(journal.RUN, r=run, n=points)
    if family in _FAMILIES:
        return _line(_FAMILIES[family], e=experiment)
    return {"k": journal.OTHER}


def _route(path: str) -> str | None:
    for prefix in _API:
        if path.startswith(prefix):
            return path[len(prefix):]
    return None


def _artifact_line(path: str, length: int) -> dict[str, object]:
    """``.../artifacts/<experiment>/<run>/artifacts/<file>`` (or ``mpu/create/...``); a
    logged model's files live under ``<experiment>/models/``, a trace's under ``traces/``."""
    rest = re.sub(r"^/(?:ajax-)?api/2\.0/mlflow-artifacts/(?:artifacts|mpu/\w+)/", "", path)
    parts = rest.split("/")
    if len(parts) >= 3 and parts[1] == "models":
        return _line(journal.MODEL, e=parts[0])
    if len(parts) >= 2 and parts[1] == "traces":
        return _line(journal.TRACE, e=parts[0])
    if len(parts) >= 3 and parts[2] == "artifacts":
        return _line(journal.ARTIFACT, r=parts[1], b=length)
    return {"k": journal.OTHER}


def _line(kind: str, **fields: object) -> dict[str, object]:
    return {"k": kind, **{k: v for k, v in fields.items() if v}}


def _first(pattern: re.Pattern[bytes], data: bytes) -> str | None:
    found = pattern.search(data)
    return found.group(1).decode() if found else None


def _note(where: str, path: str, body: bytes, answer: bytes, length: int) -> None:
    with contextlib.suppress(OSError):  # a full disk must not fail the write itself
        journal.append(where, classify(path, body, answer, length))


def asgi(app, where: str):
    async def journaled(scope, receive, send):
        path, method = scope.get("path", ""), scope.get("method", "")
        if scope["type"] != "http" or not is_write(method, path):
            return await app(scope, receive, send)
        read_body = wants_body(path)
        body: list[bytes] = []
        answer: list[bytes] = []
        status = [0]

        async def received():
            message = await receive()
            if read_body and message["type"] == "http.request" \
                    and sum(map(len, body)) < _BODY_CAP:
                body.append(message.get("body", b""))
            return message

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and read_body \
                    and sum(map(len, answer)) < _BODY_CAP:
                answer.append(message.get("body", b""))
            await send(message)

        await app(scope, received, sending)
        if 200 <= status[0] < 300:
            length = next((int(v) for k, v in scope.get("headers", ())
                           if k == b"content-length" and v.isdigit()), 0)
            _note(where, path, b"".join(body), b"".join(answer), length)

    return journaled


def wsgi(app, where: str):
    def journaled(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if not is_write(method, path):
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = b""
        if wants_body(path) and 0 < length <= _BODY_CAP:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
        status = [0]

        def starting(code, headers, *rest):
            status[0] = int(str(code).split(" ", 1)[0])
            return start_response(code, headers, *rest)

        if not wants_body(path):  # an artifact: streamed through untouched
            result = app(environ, starting)
            if 200 <= status[0] < 300:
                _note(where, path, body, b"", length)
            return result
        answer = b"".join(app(environ, starting))  # a small JSON answer
        if 200 <= status[0] < 300:
            _note(where, path, body, answer, length)
        return [answer]

    return journaled


def from_environment(app, kind: str):
    """``app`` that journals its writes, if the folder syncs (the starter names the journal
    in :data:`~mlflow_magic.contract.JOURNAL_ENV`); as it is otherwise."""
    where = os.environ.get(contract.JOURNAL_ENV)
    if not where:
        return app
    return asgi(app, where) if kind == "asgi" else wsgi(app, where)
