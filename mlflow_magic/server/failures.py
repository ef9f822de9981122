"""Server-side failures a user can fix, said clearly to the client that met them.

When the data folder's disk fills up, MLflow answers a write with 500 or 503 and a
database or OS error, and its client retries for a while, then reports "too many
503 error responses". Nothing was stored (SQLite rolls the transaction back; MLflow
3.x writes an uploaded artifact to a staging file it removes, and where an older
MLflow copies it into place and leaves the cut-off copy, that copy is removed
here), and nothing needs restarting once space is free. So such an answer is
turned into one that says that: ``507 Insufficient Storage`` (which MLflow's
client does not retry) with MLflow's own error shape, ``RESOURCE_EXHAUSTED`` and
one paragraph.

Only error responses (5xx, small) are looked at; every other response passes
untouched, as it streams.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from .. import contract, internals

#: What MLflow's and the OS's messages say when the disk is full.
DISK_FULL = (b"database or disk is full", b"No space left on device", b"[Errno 28]",
             b"disk I/O error")
#: The routes MLflow's client uploads an artifact with (``PUT <route><path>``).
UPLOAD_ROUTES = ("/api/2.0/mlflow-artifacts/artifacts/",
                 "/ajax-api/2.0/mlflow-artifacts/artifacts/")
#: Less free space than this on the data folder's disk, at a failed write: a full disk
#: (MLflow's artifact routes answer a bare 500 that does not say why).
NEARLY_FULL = 2**20


def _data_folder() -> Path | None:
    private = os.environ.get(contract.PRIVATE_DIR_ENV)
    return Path(private).parent if private else None


def disk_is_full() -> bool:
    folder = _data_folder()
    if folder is None:
        return False
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < NEARLY_FULL


def disk_full_message() -> str:
    folder = _data_folder()
    where = f" ({folder})" if folder else ""
    return (f"The disk of this MLflow server's data folder{where} is full, so this write "
            "was not stored (nothing of it was kept). Free some space on that disk, then "
            "run the call again: the server goes on by itself, nothing needs restarting.")


def uploaded_file(scope: dict) -> Path | None:
    """The local file an artifact upload writes, or None (not an upload, or artifacts not
    in a local folder): the file to remove when the disk filled up while it was written."""
    path = scope.get("path", "")
    route = next((r for r in UPLOAD_ROUTES if path.startswith(r)), None)
    folder = internals.served_artifacts_folder()
    if scope.get("method") != "PUT" or route is None or folder is None:
        return None
    root = Path(folder).resolve()
    target = (root / path[len(route):]).resolve()
    return target if target.is_relative_to(root) and target != root else None


def _remove_cut_off(target: Path | None) -> None:
    if target is not None:
        with contextlib.suppress(OSError):  # the client is told the write failed anyway
            target.unlink(missing_ok=True)


def asgi(app):
    """``app`` with its disk-full failures said clearly (see the module's docstring)."""

    async def said_clearly(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        held: list[dict] = []
        writing = scope.get("method") in ("POST", "PUT", "PATCH", "DELETE")

        async def watch(message):
            if message["type"] == "http.response.start" and message["status"] >= 500:
                held.append(message)
                return None
            if held:  # an error's body: kept until it is whole, then looked at
                held.append(message)
                if message.get("more_body"):
                    return None
                return await _answer(send, held, writing, scope)
            return await send(message)

        await app(scope, receive, watch)

    return said_clearly


async def _answer(send, held: list[dict], writing: bool, scope: dict) -> None:
    body = b"".join(m.get("body", b"") for m in held[1:])
    if not any(sign in body for sign in DISK_FULL) and not (writing and disk_is_full()):
        for message in held:
            await send(message)
        return
    _remove_cut_off(uploaded_file(scope))
    text = json.dumps({"error_code": "RESOURCE_EXHAUSTED",
                       "message": disk_full_message()}).encode()
    await send({"type": "http.response.start", "status": 507,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})
