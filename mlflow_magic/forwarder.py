"""The process behind JupyterLab's MLflow launcher tile.

jupyter-server-proxy runs ``python -m mlflow_magic.forwarder --port {port}``
on the first request to ``/mlflow/`` and proxies to ``{port}``. Starting a
second MLflow server there would put two servers on one SQLite file, so this
process starts nothing of its own: it reuses (or starts, detached and shared,
exactly like ``%mlflow_server start``) the server of ``$MLFLOW_PATH`` and
forwards each TCP connection to it. Whichever comes first, the magic or the
tile, both show the same server, and it survives a Jupyter restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from urllib.parse import urlsplit

from . import manager
from .config import ServerOptions, resolve
from .errors import MlflowMagicError

CHUNK = 65536


class Forwarder:
    """Forward connections to the data folder's server, (re)starting it when needed."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self._lock = asyncio.Lock()
        self._target: tuple[str, int] | None = None

    def _ensure_server(self) -> tuple[str, int]:
        """Reuse the folder's server if it is alive, else start it (blocking)."""
        url = urlsplit(manager.start(resolve(self.options)).server.url)
        return url.hostname or "127.0.0.1", url.port or 80

    async def target(self) -> tuple[str, int]:
        async with self._lock:
            if self._target is None or not await self._reachable(self._target):
                self._target = await asyncio.to_thread(self._ensure_server)
            return self._target

    @staticmethod
    async def _reachable(target: tuple[str, int]) -> bool:
        try:
            _, writer = await asyncio.open_connection(*target)
        except OSError:
            return False
        writer.close()
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            host, port = await self.target()
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except (MlflowMagicError, OSError) as exc:
            await _answer_error(writer, str(exc))
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _answer_error(writer: asyncio.StreamWriter, message: str) -> None:
    """Show why the server could not start, in the JupyterLab tab, as plain text."""
    body = f"mlflow_magic could not start the MLflow server:\n\n{message}\n".encode()
    writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                 + body)
    with contextlib.suppress(Exception):
        await writer.drain()
        writer.close()


async def serve(port: int, options: ServerOptions) -> None:
    forwarder = Forwarder(options)
    server = await asyncio.start_server(forwarder.handle, "127.0.0.1", port)
    # Start (or find) the MLflow server right away, not on the first connection.
    warm_up = asyncio.create_task(forwarder.target())
    async with server:
        await server.serve_forever()
    warm_up.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlflow_magic.forwarder")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", help="data folder (default: $MLFLOW_PATH or ~/mlflow_data)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, ServerOptions(path=args.path)))


if __name__ == "__main__":
    main()
