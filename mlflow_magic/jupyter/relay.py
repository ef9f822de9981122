"""One HTTP request relayed to this user's own MLflow server, streamed both ways.

Both Jupyter-side ways to the UI use it: the server extension's route
(``mlflow-magic/proxy/<port>/``, :mod:`mlflow_magic.jupyter.extension`) and the launcher
tile's forwarder (:mod:`mlflow_magic.jupyter.forwarder`). For each request it:

- connects to ``127.0.0.1`` itself (jupyter-server-proxy connects to
  ``localhost``, which Debian resolves to ``::1`` first, where anyone may listen);
- sends none of Jupyter's credentials: no cookies but MLflow's own, no
  ``Authorization`` but MLflow's basic auth, no ``token=`` in the query;
- adds the folder's key, which the caller looked up only after checking that
  the port is held by that very server (:mod:`mlflow_magic.security.ports`);
- streams the request body up and the response down chunk by chunk, each
  chunk written only once the other side took the last one, so a 300 MB
  artifact never sits in Jupyter's memory, and a slow MLflow response holds
  up nothing else (every relay is its own coroutine);
- compresses the UI's HTML, JS, CSS and JSON for the browser, and sends an asset it
  keeps compressed once MLflow says it has not changed (compress.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, urlencode

from tornado import httputil, iostream
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.tcpclient import TCPClient

from ..contract import KEY_HEADER, SESSION_COOKIE
from . import compress

#: Headers of one hop, never passed on (RFC 9110 7.6.1), plus what we set ourselves.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "expect", "host",
                        KEY_HEADER.lower()})
#: Query parameters that are Jupyter's login, not MLflow's business.
JUPYTER_QUERY = frozenset({"token"})
CHUNK = 64 * 1024
#: Uploads through the relay have no size limit of Jupyter's (they are streamed).
MAX_BODY = 1 << 62
CONNECT_TIMEOUT = 10.0


def upstream_query(query: str) -> str:
    """The query without Jupyter's ``token=``."""
    if not query:
        return ""
    params = parse_qsl(query, keep_blank_values=True)
    kept = [(k, v) for k, v in params if k not in JUPYTER_QUERY]
    return query if len(kept) == len(params) else urlencode(kept)


def upstream_cookie(cookie: str | None) -> str | None:
    """Only MLflow's own cookies (``mlflow-request-header-*``, ``mlflow_user``): never
    Jupyter's, JupyterHub's or mlflow_magic's session cookie."""
    if not cookie:
        return None
    ours = SESSION_COOKIE.split("{", 1)[0]
    kept = [part.strip() for part in cookie.split(";")
            if part.strip().lower().startswith("mlflow") and not part.strip().startswith(ours)]
    return "; ".join(kept) or None


def upstream_headers(headers: httputil.HTTPHeaders, port: int, key: str | None,
                     loopback_origin: bool, condition: tuple[str, str] | None = None
                     ) -> httputil.HTTPHeaders:
    """The request's headers as MLflow gets them: as from a local client, with the key.

    ``loopback_origin`` (the caller found the request same-origin) turns the browser's
    ``Origin`` into the loopback one MLflow's CORS check expects. ``condition`` asks
    whether an asset kept compressed has changed (see :func:`kept_asset`).
    """
    sent = httputil.HTTPHeaders()
    for name, value in headers.get_all():
        lower = name.lower()
        if lower in HOP_BY_HOP:
            continue
        if lower == "cookie":
            value = upstream_cookie(value)  # type: ignore[assignment]
            if value is None:
                continue
        if lower == "authorization" and not value.lower().startswith("basic "):
            continue  # Jupyter's "token ..." / "Bearer ...": not MLflow's basic auth
        if lower == "origin" and loopback_origin:
            value = f"http://127.0.0.1:{port}"
        if lower in ("if-none-match", "if-match"):  # our encodings' ETags, as MLflow's
            value = compress.untagged(value)
        sent.add(name, value)
    sent["Host"] = f"127.0.0.1:{port}"
    if condition is not None:
        sent[condition[0]] = condition[1]
    if key:
        sent[KEY_HEADER] = key
    return sent


#: A browser's own conditions: then MLflow answers the browser, not the kept copy.
CONDITIONS = ("If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since",
              "If-Range", "Range")


def kept_asset(request: httputil.HTTPServerRequest, port: int) -> compress.Kept | None:
    """The compressed copy kept of what a plain GET asks for, in the encoding the browser
    takes: MLflow is then asked only whether it changed."""
    encoding = compress.choose(request.headers.get("Accept-Encoding"))
    if request.method != "GET" or encoding is None or any(
            name in request.headers for name in CONDITIONS):
        return None
    return compress.ASSETS.get((port, request.uri, encoding))


class _ResponseRelay(httputil.HTTPMessageDelegate):
    """Hands MLflow's response to the browser as it arrives, at the browser's pace, and
    compressed where that pays (an asset is compressed once, then sent from the cache)."""

    def __init__(self, handler, rewrite_location: Callable[[str], str] | None,
                 port: int, kept: compress.Kept | None = None) -> None:
        self.handler = handler
        #: the copy MLflow was asked about: its 304 sends it
        self.kept = kept
        self.rewrite_location = rewrite_location
        request = handler.request
        self.encoding = compress.choose(request.headers.get("Accept-Encoding"))
        self.method, self.path, self.uri, self.port = (request.method, request.path,
                                                       request.uri, port)
        #: the browser revalidates an encoded copy it keeps: MLflow's 304 must say so too
        self.revalidating = compress.untagged(request.headers.get("If-None-Match", "")) != (
            request.headers.get("If-None-Match", ""))
        #: the status line has been handed on: an error now can only cut the response
        self.started = False
        #: "pass" as it comes, "stream" compressed as it comes, "asset" compressed whole
        #: and kept, "cached" (MLflow's body is dropped, the kept one sent)
        self.mode = "pass"
        self.key: tuple | None = None
        self.body: list[bytes] = []
        self.cached: bytes | None = None
        self.stream: compress.Stream | None = None
        #: the headers handed on, and MLflow's validator: what a kept asset keeps
        self.sent: list[tuple[str, str]] = []
        self.condition: tuple[str, str] | None = None

    def headers_received(self, start_line, headers: httputil.HTTPHeaders) -> None:
        self.started = True
        handler = self.handler
        handler.clear()  # tornado's defaults (Server, Date, Content-Type) go: MLflow's stay
        for name in ("Server", "Content-Type", "Date"):
            handler.clear_header(name)
        if start_line.code == 304 and self.kept is not None:  # unchanged: the kept copy
            handler.set_status(200)
            for name, value in self.kept.headers:
                handler.add_header(name, value)
            self.mode, self.cached = "cached", self.kept.data
            return
        handler.set_status(start_line.code, start_line.reason)
        compressible = compress.worth_it(self.method, self.path, start_line.code, headers)
        if compressible and self.encoding:
            self._choose_mode(headers)
        for name, value in headers.get_all():
            lower = name.lower()
            if lower in HOP_BY_HOP or (lower == "content-length" and self.mode != "pass"):
                continue
            if lower == "location" and self.rewrite_location is not None:
                value = self.rewrite_location(value)
            still_encoded = start_line.code == 304 and self.revalidating
            if lower == "etag" and self.encoding and (self.mode != "pass" or still_encoded):
                value = compress.tagged(value, self.encoding)
            self._send_header(name, value)
        if compressible or (start_line.code == 304 and self.revalidating):
            self._send_header("Vary", "Accept-Encoding")
        if self.mode != "pass":
            self._send_header("Content-Encoding", self.encoding)  # type: ignore[arg-type]

    def _send_header(self, name: str, value: str) -> None:
        self.handler.add_header(name, value)
        self.sent.append((name, value))

    def _choose_mode(self, headers: httputil.HTTPHeaders) -> None:
        size = headers.get("Content-Length")
        self.condition = compress.condition(headers)
        if self.condition and size is not None and int(size) <= compress.MAX_ASSET:
            self.key = (self.port, self.uri, self.encoding)
            kept = compress.ASSETS.get(self.key)
            if kept is not None and kept.condition == self.condition:
                self.mode, self.cached = "cached", kept.data
            else:
                self.mode = "asset"
        else:
            self.mode, self.stream = "stream", compress.Stream(self.encoding)  # type: ignore[arg-type]

    def data_received(self, chunk: bytes):
        if self.mode == "pass":
            self.handler.write(chunk)
            return self.handler.flush()  # awaited: the next chunk is read once this one left
        if self.mode == "stream":
            out = self.stream.feed(chunk)  # type: ignore[union-attr]
            if out:
                self.handler.write(out)
                return self.handler.flush()
        elif self.mode == "asset":
            self.body.append(chunk)
        return None

    def finish(self) -> None:
        pass

    async def send_rest(self) -> None:
        """What is left once MLflow's response has ended: the compressed asset, or the end of
        a compressed stream."""
        if self.mode == "stream":
            self.handler.write(self.stream.end())  # type: ignore[union-attr]
        elif self.mode in ("asset", "cached"):
            data = self.cached
            if data is None:  # compressed once, in a thread: Jupyter goes on meanwhile
                data = await asyncio.to_thread(compress.compress, b"".join(self.body),
                                               self.encoding)  # type: ignore[arg-type]
                kept = tuple((name, value) for name, value in self.sent  # no one's cookie
                             if name.lower() != "set-cookie")
                compress.ASSETS.put(self.key, compress.Kept(  # type: ignore[arg-type]
                    kept, self.condition, data))  # type: ignore[arg-type]
                compress.ASSETS.compressions += 1
            assert data is not None  # cached, or compressed just now
            self.handler.set_header("Content-Length", str(len(data)))
            self.handler.write(data)


class Relay:
    """A mixin for a ``@web.stream_request_body`` tornado handler: call :meth:`open_relay`
    in ``prepare`` (before the body arrives), :meth:`relay_response` in the verb method."""

    _upstream: HTTP1Connection | None = None
    _port = 0
    _kept: compress.Kept | None = None

    async def open_relay(self, port: int, path: str, key: str | None,
                         loopback_origin: bool) -> None:
        """Connect to the server on 127.0.0.1 and send the request line and headers."""
        request = self.request  # type: ignore[attr-defined]
        self._port = port
        self._kept = kept_asset(request, port)
        stream = await TCPClient().connect("127.0.0.1", port, timeout=CONNECT_TIMEOUT,
                                           max_buffer_size=4 * CHUNK)
        stream.set_nodelay(True)
        self._upstream = HTTP1Connection(stream, True, HTTP1ConnectionParameters(
            no_keep_alive=True, chunk_size=CHUNK, max_body_size=MAX_BODY, decompress=False))
        query = upstream_query(request.query)
        target = quote(path if path.startswith("/") else f"/{path}",
                       safe="/:@!$&'()*+,;=-._~%")
        await self._upstream.write_headers(
            httputil.RequestStartLine(request.method, target + (f"?{query}" if query else ""),
                                      "HTTP/1.1"),
            upstream_headers(request.headers, port, key, loopback_origin,
                             self._kept.condition if self._kept is not None else None))
        request.connection.set_max_body_size(MAX_BODY)

    def data_received(self, chunk: bytes):
        """A piece of the request body: passed on before the next one is read."""
        if self._upstream is not None:
            return self._upstream.write(chunk)
        return None

    async def relay_response(self, rewrite_location: Callable[[str], str] | None = None
                             ) -> None:
        """Finish the request to the server and stream its response to the browser."""
        upstream, handler = self._upstream, self
        if upstream is None:
            return
        response = _ResponseRelay(handler, rewrite_location, self._port, self._kept)
        try:
            upstream.finish()
            await upstream.read_response(response)
            await response.send_rest()
        except (iostream.StreamClosedError, httputil.HTTPInputError,
                httputil.HTTPOutputError) as exc:
            if not response.started:
                self.upstream_failed(exc)
            return  # mid-response: the browser sees a cut download, as from MLflow itself
        finally:
            upstream.close()
        handler.finish()  # type: ignore[attr-defined]

    def upstream_failed(self, exc: Exception) -> None:
        """The server closed the connection before it answered (it stopped meanwhile)."""
        self.send_error(502, reason="The MLflow server closed the connection")  # type: ignore[attr-defined]

    def on_connection_close(self) -> None:
        """The browser went away: so does the request to MLflow."""
        if self._upstream is not None:
            self._upstream.close()
        super().on_connection_close()  # type: ignore[misc]
