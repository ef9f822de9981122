"""The gate in front of a folder's server: nobody but its owner gets in.

On a machine with several users, anything listening on 127.0.0.1 is open to all
of them: MLflow's own security middleware checks ``Host`` and, for browser
writes, ``Origin``, which curl never sends. So every worker of a server that
mlflow_magic starts on loopback wraps MLflow's app in this gate. A request
gets in if it comes from one of the owner's own programs, or carries the
folder's key.

A program of the owner's (``requests``, ``curl``, R, Java, another virtualenv)
is told by the connection itself (:mod:`mlflow_magic.server.peer`): the kernel
says which user owns the client's end of a loopback connection, as PostgreSQL's
``peer`` authentication asks it. A browser is never let in that way, though it
runs as the owner too: a page of any site could make it send requests. So a
request with a browser's marks (``Origin``, ``Sec-Fetch-*``, which browsers send
to loopback addresses and cannot leave out) or a ``Host`` that is not this
machine's loopback (DNS rebinding) needs the key, in one of three ways:

- the ``X-Mlflow-Magic-Key`` header (what the owner's MLflow calls, the Jupyter
  routes and mlflow_magic's own probes send);
- ``Authorization: Bearer <key>`` (``MLFLOW_TRACKING_TOKEN``, for clients of
  other environments);
- a session cookie, which a one-time login link (``?mlflow_magic_login=``)
  sets for a browser, as Jupyter's own ``?token=`` login does.

Only ``/health`` is open, for readiness checks. The key never reaches MLflow's
app: the gate removes it from the request. Everything else is refused with 401
and one paragraph saying how to get in.

Imports only the standard library, :mod:`mlflow_magic.contract`,
:mod:`~mlflow_magic.state.owned`, :mod:`~mlflow_magic.state.passes` and
:mod:`~mlflow_magic.server.peer`: it runs in every worker, before MLflow's app sees a
request.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import ipaddress
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from .. import contract
from ..state import owned, passes
from . import peer as peers

REFUSED = (
    "This MLflow server is private to the user who started it with mlflow_magic, and this "
    "request did not carry its data folder's key. Its owner's MLflow calls send the key by "
    "themselves (any Python environment with mlflow_magic installed), and so do the UI "
    "links that `%mlflow_server ui` and `mlflow-magic ui` show. The owner's other programs "
    "on this machine get in without it, unless they send a browser's headers; elsewhere "
    "(another machine, a container, macOS) set MLFLOW_TRACKING_TOKEN to the contents of "
    "the data folder's .mlflow_magic/key.")
PASS_ENDED = (
    "This link to the MLflow UI belonged to a kernel that has ended (a kernel pass holds "
    "only while its kernel runs). Run `%mlflow_server ui` in a running notebook, or "
    "`mlflow-magic ui` in a terminal, for a new one.")
EXPIRED = (
    "This one-time link to the MLflow UI has expired or was already used. Run "
    "`%mlflow_server ui` in a notebook, or `mlflow-magic ui` in a terminal, and open the "
    "new link it shows.")


class GateError(RuntimeError):
    """The folder's key cannot be read: the server must not start without its gate."""


@dataclass(frozen=True)
class Verdict:
    """What to do with a request: let it in, send the browser on, or refuse it."""

    allowed: bool
    status: int = 200
    #: response headers for a redirect or a refusal
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: let in through a kernel pass: the path MLflow sees (the pass taken off), and the
    #: request comes from a frame of another site (see :func:`framed_headers`)
    path: str | None = None


class Gate:
    """The decision, shared by the ASGI and the WSGI wrapper."""

    def __init__(self, private_dir: Path, port: int | None = None) -> None:
        self.private_dir = private_dir
        #: the port this server listens on, from its own settings (never from a request)
        self.port = port
        self.owner = os.geteuid()
        #: passes found to hold, until when (monotonic): a pass is checked every few seconds,
        #: not on each of the UI's requests
        self._passes: dict[tuple[str, int, str], float] = {}
        try:
            key = owned.read_owned(private_dir / contract.KEY_FILE).strip()
        except OSError as exc:
            raise GateError(f"mlflow_magic: the folder's key cannot be read ({exc}); "
                            "the server does not start without it") from None
        if len(key) < 32:
            raise GateError("mlflow_magic: the folder's key is too short; delete "
                            f"{private_dir / contract.KEY_FILE} and start again")
        self.key = key.encode()

    # --- credentials --------------------------------------------------------------------

    def _is_key(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(value.strip().encode(), self.key)  # type: ignore[union-attr]

    def session_value(self, port: int, now: float | None = None) -> str:
        """A cookie value good for :data:`~contract.SESSION_TTL` on this server's port."""
        expires = int((now or time.time()) + contract.SESSION_TTL)
        return f"{expires}.{self._sign(port, expires)}"

    def _sign(self, port: int, expires: int) -> str:
        return hmac.new(self.key, f"session:{port}:{expires}".encode(),
                        hashlib.sha256).hexdigest()[:40]

    def _valid_session(self, value: str | None, port: int) -> bool:
        expires, _, signature = (value or "").partition(".")
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(signature.encode(), self._sign(port, int(expires)).encode())

    def consume_login(self, code: str, port: int) -> bool:
        """True once for a code the owner made for this port within
        :data:`~contract.LOGIN_TTL`.

        A code is a file named by its digest, holding the port it was made for;
        removing it is what makes it one-time (of two requests with one code, one
        removal succeeds), also across workers.
        """
        if not code or len(code) > 200:
            return False
        path = self.private_dir / contract.LOGINS_DIR / hashlib.sha256(code.encode()).hexdigest()
        try:
            with os.fdopen(owned.open_owned(path)) as fh:
                made, meant_for = os.fstat(fh.fileno()).st_mtime, fh.read().strip()
            path.unlink()
        except OSError:
            return False
        return meant_for == str(port) and time.time() - made <= contract.LOGIN_TTL

    # --- the decision -------------------------------------------------------------------

    def decide(self, method: str, path: str, query: str, header: Callable[[str], str | None],
               port: int, client: tuple[str, int] | None = None,
               server_host: str | None = None) -> Verdict:
        """Let in, redirect (a login link) or refuse one request. ``client``: the address
        of the accepted connection's other end, ``server_host`` its own end's address, as
        the web server read them off the socket."""
        if path.startswith(_PASS_PREFIX):
            # A pass read off a disk by another user, or sent by a page of another site
            # other than as the frame's own navigation: refused, and the pass stays.
            if self.from_another_user(client, server_host) or _not_the_frame(method, header):
                return _refusal(REFUSED, header("accept"))
            return self._through_pass(path, query, self.port or port, header)
        if path in contract.OPEN_PATHS or self._is_key(header(contract.KEY_HEADER)):
            return Verdict(True)
        scheme, _, token = (header("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and self._is_key(token):
            return Verdict(True)
        # A login code and a session cookie are the owner's: another user who opens the
        # printed link first, or copies the cookie, gets nothing, and the code stays good.
        if self.from_another_user(client, server_host):
            return _refusal(REFUSED, header("accept"))
        session = _cookie(header("cookie"), contract.SESSION_COOKIE.format(port=port))
        has_session = self._valid_session(session, port)
        params = parse_qsl(query, keep_blank_values=True)
        codes = [v for k, v in params if k == contract.LOGIN_PARAM]
        if codes and method in ("GET", "HEAD"):
            return self._login(codes[-1], has_session, path, params, port, header("accept"))
        if has_session or self.from_owner(header, client, server_host):
            return Verdict(True)
        return _refusal(REFUSED, header("accept"))

    def from_owner(self, header: Callable[[str], str | None], client: tuple[str, int] | None,
                   server_host: str | None = None) -> bool:
        """A request of one of the owner's own programs on this machine, not a browser's."""
        if _from_a_browser(header) or not _loopback_host(header("host")):
            return False
        uid = self._client_uid(client, server_host)
        return uid is not None and uid == self.owner

    def from_another_user(self, client: tuple[str, int] | None,
                          server_host: str | None) -> bool:
        """The connection is not known to be the owner's: a loopback client whose user the
        kernel names as another, or whose connection the kernel does not know
        (:data:`~mlflow_magic.server.peer.NO_CONNECTION`). Where the kernel cannot be asked,
        or the client is not on loopback, nothing is known: False."""
        uid = self._client_uid(client, server_host)
        return uid is not None and uid != self.owner

    def _client_uid(self, client: tuple[str, int] | None,
                    server_host: str | None) -> int | None:
        """The user of the connection's client end, asked about this server's own port (its
        settings: a WSGI server may take the request's ``Host`` for ``SERVER_PORT``)."""
        if client is None or self.port is None:
            return None
        return peers.client_uid(client[0], client[1], server_host, self.port)

    def _through_pass(self, path: str, query: str, port: int,
                      header: Callable[[str], str | None]) -> Verdict:
        """A request under ``/<PASS_PATH>/<pass>/``: MLflow's path behind it, if the pass
        holds on this port for the request's ``Host`` (this machine's loopback, or the
        address the pass was made for: a name that resolves elsewhere, as in DNS rebinding,
        gets nothing)."""
        token, slash, rest = path[len(_PASS_PREFIX):].partition("/")
        host = _host_name(header("host"))
        now, known = time.monotonic(), (token, port, host)
        if self._passes.get(known, 0.0) < now:
            if not passes.holds(self.private_dir, token, port):
                self._passes.pop(known, None)
                return _refusal(PASS_ENDED, header("accept"))
            if header("host") is not None and not _loopback_host(header("host")) \
                    and host not in passes.hosts(self.private_dir, token):
                return _refusal(REFUSED, header("accept"))
            self._passes[known] = now + PASS_RECHECK
        if not slash:  # the UI's relative URLs need the pass's folder: ``<pass>/``
            return Verdict(False, 308, [("Location", f"{token}/" + (f"?{query}" if query
                                                                     else ""))])
        return Verdict(True, path="/" + rest)

    def _login(self, code: str, has_session: bool, path: str,
               params: list[tuple[str, str]], port: int, accept: str | None) -> Verdict:
        """A login link: set the session cookie, then show the page without the code."""
        fresh = self.consume_login(code, port)
        if not fresh and not has_session:
            return _refusal(EXPIRED, accept)
        rest = urlencode([(k, v) for k, v in params if k != contract.LOGIN_PARAM])
        # Relative: behind a proxy prefix the browser stays under it. No Path on the cookie:
        # it then covers the folder of this page (the prefix), not the whole origin.
        location = "./" + (path.rsplit("/", 1)[-1] if not path.endswith("/") else "")
        headers = [("Location", location + (f"?{rest}" if rest else "")),
                   ("Cache-Control", "no-store")]
        if fresh:
            headers.append(("Set-Cookie", f"{contract.SESSION_COOKIE.format(port=port)}="
                                          f"{self.session_value(port)}; HttpOnly; "
                                          "SameSite=Lax"))
        return Verdict(False, 303, headers)

    def cleaned_cookie(self, cookie: str | None, port: int) -> str | None:
        """The request's Cookie header without the gate's own session cookie."""
        if not cookie:
            return cookie
        name = contract.SESSION_COOKIE.format(port=port)
        kept = [part for part in cookie.split(";") if part.split("=", 1)[0].strip() != name]
        return ";".join(kept).strip() or None


_PASS_PREFIX = f"/{contract.PASS_PATH}/"
#: How long a pass found to hold is taken as holding (s): a kernel that ended is refused
#: within this long.
PASS_RECHECK = 2.0
#: Who may frame what a pass lets in (clickjacking: no other page).
_FRAME_POLICY = "frame-ancestors " + " ".join(contract.FRAME_ANCESTORS)


def framed_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A response to a request through a pass: framable by the embedders of
    :data:`~contract.FRAME_ANCESTORS` only, in place of MLflow's ``SAMEORIGIN``; and no
    link it holds tells another site the page's address (the pass is in its path)."""
    kept = [(k, v) for k, v in headers if k.lower() not in (
        "x-frame-options", "content-security-policy", "referrer-policy")]
    return [*kept, ("Content-Security-Policy", _FRAME_POLICY),
            ("Referrer-Policy", "same-origin")]


#: Headers a browser sends with every request to a loopback address (a secure context),
#: and that a page cannot remove: ``Origin`` on every cross-origin and every write,
#: ``Sec-Fetch-*`` on all (Chromium 76, Firefox 90, Safari 16.4 and later).
_BROWSER_MARKS = ("origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest")


def _from_a_browser(header: Callable[[str], str | None]) -> bool:
    return any(header(name) is not None for name in _BROWSER_MARKS)


#: What a frame's own navigation is (``Sec-Fetch-Dest``): the only cross-site request a pass
#: lets in (a link opened in a tab of its own is a ``document``).
_FRAME_DESTS = ("iframe", "frame", "document")


def _not_the_frame(method: str, header: Callable[[str], str | None]) -> bool:
    """A request through a pass that a page of another site made otherwise than by
    navigating to it: a no-cors fetch, ``sendBeacon``, a form's post, an ``<img>``.

    The frame's own requests are ``same-origin``; its first load from the embedding page
    is a cross-site GET navigation. A browser without fetch metadata still sends
    ``Origin`` on a write: one of another origin than the request's is refused.
    """
    site = header("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return not (method in ("GET", "HEAD") and header("sec-fetch-mode") == "navigate"
                    and header("sec-fetch-dest") in _FRAME_DESTS)
    origin = header("origin")
    if site is None and origin is not None and method not in ("GET", "HEAD"):
        return _host_name(origin.partition("://")[2]) != _host_name(header("host"))
    return False


def _host_name(host: str | None) -> str:
    """The name in a ``Host`` header (``name:port``, ``[::1]:port``), lower case."""
    if not host:
        return ""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.strip("[]").lower()


def _loopback_host(host: str | None) -> bool:
    """``Host`` names this machine's loopback (a name that resolves elsewhere, as in DNS
    rebinding, does not)."""
    if host is None:
        return False
    name = _host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a name, which may resolve to anything


def _cookie(header: str | None, name: str) -> str | None:
    if not header:
        return None
    try:
        jar = SimpleCookie(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _refusal(message: str, accept: str | None) -> Verdict:
    """401 with the message: a page for a browser, MLflow's JSON error for its clients."""
    headers = [(contract.GATE_HEADER, "refused"), ("Cache-Control", "no-store"),
               ("WWW-Authenticate", 'Bearer realm="mlflow_magic"')]
    if accept and "text/html" in accept:
        body = ("<!doctype html><meta charset=utf-8><title>MLflow: private server</title>"
                "<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
                f"<h2>This MLflow server is private</h2><p>{html.escape(message)}</p>")
        return Verdict(False, 401, [*headers, ("Content-Type", "text/html; charset=utf-8")],
                       body.encode())
    body = json.dumps({"error_code": "UNAUTHENTICATED", "message": message})
    return Verdict(False, 401, [*headers, ("Content-Type", "application/json")], body.encode())


# --- the wrappers ------------------------------------------------------------------------

_STRIPPED = {contract.KEY_HEADER.lower().encode()}


def asgi(app, gate: Gate):
    """``app`` (ASGI: uvicorn's FastAPI app) behind ``gate``."""

    async def gated(scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await app(scope, receive, send)
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        port = (scope.get("server") or ("", 0))[1] or 0

        def header(name: str) -> str | None:
            value = headers.get(name.lower().encode())
            return value.decode("latin-1") if value is not None else None

        client, server = scope.get("client"), scope.get("server")
        verdict = gate.decide(scope.get("method", "GET"), scope.get("path", ""),
                              scope.get("query_string", b"").decode("latin-1"), header, port,
                              (client[0], int(client[1])) if client else None,
                              server[0] if server else None)
        if verdict.allowed and verdict.path is not None:
            return await _through_pass(app, scope, receive, send, verdict.path, gate, port)
        if verdict.allowed:
            return await app({**scope, "headers": _clean(scope["headers"], gate, port)},
                             receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await send({"type": "http.response.start", "status": verdict.status,
                    "headers": [(k.lower().encode(), v.encode("latin-1"))
                                for k, v in [*verdict.headers,
                                             ("Content-Length", str(len(verdict.body)))]]})
        await send({"type": "http.response.body", "body": verdict.body})

    return gated


async def _through_pass(app, scope, receive, send, path: str, gate: Gate, port: int):
    """Pass MLflow a request that came through a kernel pass, as if sent to its root from
    this machine: MLflow's checks of ``Host`` and of a cross-site ``Origin`` are for
    requests with no credential, and this one carries the pass (which no other page can
    know). The response may be framed by the embedders only."""
    prefix = scope["path"][:len(scope["path"]) - len(path)]
    raw = scope.get("raw_path") or scope["path"].encode()
    headers = [(k, v) for k, v in _clean(scope["headers"], gate, port)
               if k not in (b"host", b"origin")]
    headers.append((b"host", f"localhost:{port}".encode()))

    async def framed(message):
        if message["type"] == "http.response.start":
            found = [(k.decode("latin-1"), v.decode("latin-1"))
                     for k, v in message.get("headers", [])]
            message = {**message, "headers": [
                (k.lower().encode(), v.encode("latin-1"))
                for k, v in framed_headers(_under(found, prefix))]}
        await send(message)

    inner = {**scope, "path": path, "raw_path": raw[len(prefix.encode()):] or b"/",
             "headers": headers}
    return await app(inner, receive, framed)


def _under(headers: list[tuple[str, str]], prefix: str) -> list[tuple[str, str]]:
    """A redirect to a root-absolute path stays under the pass."""
    return [(k, prefix + v if k.lower() == "location" and v.startswith("/")
             and not v.startswith("//") else v) for k, v in headers]


def _clean(headers: Iterable[tuple[bytes, bytes]], gate: Gate,
           port: int) -> list[tuple[bytes, bytes]]:
    """The request's headers without the key: MLflow's app never sees it."""
    kept = []
    for name, value in headers:
        if name in _STRIPPED:
            continue
        if name == b"authorization" and gate._is_key(value.decode("latin-1").partition(" ")[2]):
            continue
        if name == b"cookie":
            cookie = gate.cleaned_cookie(value.decode("latin-1"), port)
            if cookie is None:
                continue
            value = cookie.encode("latin-1")
        kept.append((name, value))
    return kept


def wsgi(app, gate: Gate):
    """``app`` (WSGI: Flask, under gunicorn or waitress) behind ``gate``."""

    def gated(environ, start_response):
        port = int(environ.get("SERVER_PORT") or 0)

        def header(name: str) -> str | None:
            return environ.get("HTTP_" + name.upper().replace("-", "_"))

        verdict = gate.decide(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""),
                              environ.get("QUERY_STRING", ""), header, port,
                              *_wsgi_ends(environ))
        if verdict.allowed and verdict.path is not None:
            start_response = _wsgi_through_pass(environ, start_response, verdict.path, port)
        if verdict.allowed:
            environ.pop("HTTP_" + contract.KEY_HEADER.upper().replace("-", "_"), None)
            if gate._is_key(environ.get("HTTP_AUTHORIZATION", "").partition(" ")[2]):
                environ.pop("HTTP_AUTHORIZATION")
            cookie = gate.cleaned_cookie(environ.get("HTTP_COOKIE"), port)
            if cookie is None:
                environ.pop("HTTP_COOKIE", None)
            else:
                environ["HTTP_COOKIE"] = cookie
            return app(environ, start_response)
        reason = {303: "See Other", 308: "Permanent Redirect",
                  401: "Unauthorized"}.get(verdict.status, "")
        start_response(f"{verdict.status} {reason}",
                       [*verdict.headers, ("Content-Length", str(len(verdict.body)))])
        return [verdict.body]

    return gated


def _wsgi_through_pass(environ: dict, start_response, path: str, port: int):
    """The WSGI side of :func:`_through_pass`: ``environ`` rewritten in place, and the
    ``start_response`` that makes the response framable by the embedders only."""
    prefix = environ.get("PATH_INFO", "")[:len(environ.get("PATH_INFO", "")) - len(path)]
    environ["PATH_INFO"] = path
    for name in ("RAW_URI", "REQUEST_URI"):
        if str(environ.get(name, "")).startswith(prefix):
            environ[name] = environ[name][len(prefix):] or "/"
    environ["HTTP_HOST"] = f"localhost:{port}"
    environ.pop("HTTP_ORIGIN", None)

    def framed(status, headers, exc_info=None):
        return start_response(status, framed_headers(_under(list(headers), prefix)), exc_info)

    return framed


def _wsgi_ends(environ: dict) -> tuple[tuple[str, int] | None, str | None]:
    """The client's address and the server's own, as the WSGI server read them off the
    socket (gunicorn hands over the socket itself; waitress its peer's address)."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            peer, own = sock.getpeername(), sock.getsockname()
            return (peer[0], int(peer[1])), own[0]
    host, port = environ.get("REMOTE_ADDR"), str(environ.get("REMOTE_PORT", ""))
    return ((host, int(port)) if host and port.isdigit() else None), None


def from_environment(app, kind: str):
    """``app`` behind the gate if this server is private (the manager says so in
    :data:`~contract.PRIVATE_DIR_ENV`); as it is for a team server."""
    private_dir = os.environ.get(contract.PRIVATE_DIR_ENV)
    if not private_dir:
        return app
    gate = Gate(Path(private_dir), _own_port())
    return asgi(app, gate) if kind == "asgi" else wsgi(app, gate)


def _own_port() -> int | None:
    """The port this server serves (its process says it in
    :data:`~contract.SERVED_PORT_ENV`, from its flags): what the gate asks the kernel about,
    whatever a request's ``Host`` says."""
    port = os.environ.get(contract.SERVED_PORT_ENV, "")
    return int(port) if port.isdigit() else None
