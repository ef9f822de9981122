"""The server's gate, as pure logic: what gets in, what is refused, what MLflow's app sees."""

from __future__ import annotations

import json
import os
import time

import own_loop
import pytest

from mlflow_magic import contract
from mlflow_magic.security import keys
from mlflow_magic.server import gate as gate_module
from mlflow_magic.server.gate import Gate, GateError
from mlflow_magic.state import records

PORT = 5123


@pytest.fixture
def folder(tmp_path):
    data_dir = records.prepare_folder(tmp_path / "data")
    keys.folder_key(data_dir, create=True)
    return data_dir


@pytest.fixture
def gate(folder) -> Gate:
    return Gate(records.record_dir(folder))


def ask(gate: Gate, path: str = "/api/2.0/mlflow/experiments/search", query: str = "",
        method: str = "GET", port: int = PORT, **headers: str):
    sent = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    return gate.decide(method, path, query, lambda name: sent.get(name.lower()), port)


def test_only_health_is_open_and_the_key_lets_in(gate, folder):
    key = keys.folder_key(folder)
    assert ask(gate, "/health").allowed
    refused = ask(gate)
    assert not refused.allowed and refused.status == 401
    assert dict(refused.headers)[contract.GATE_HEADER]
    assert json.loads(refused.body)["error_code"] == "UNAUTHENTICATED"
    assert ask(gate, **{contract.KEY_HEADER: key}).allowed
    assert ask(gate, authorization=f"Bearer {key}").allowed  # MLFLOW_TRACKING_TOKEN
    assert not ask(gate, **{contract.KEY_HEADER: key[:-1] + "x"}).allowed
    assert not ask(gate, authorization=f"Basic {key}").allowed
    for path in ("/", "/version", "/graphql", "/get-artifact", "/ajax-api/2.0/x", "/metrics"):
        assert not ask(gate, path).allowed, path


def test_a_browser_gets_a_page_and_an_api_client_json(gate):
    page = ask(gate, "/", accept="text/html,application/xhtml+xml")
    assert b"This MLflow server is private" in page.body
    assert ("Content-Type", "text/html; charset=utf-8") in page.headers


def test_a_login_code_works_once_on_its_own_port_and_sets_a_session(gate, folder):
    code = keys.new_login(folder, PORT)
    entered = ask(gate, "/", f"{contract.LOGIN_PARAM}={code}&x=1")
    headers = dict(entered.headers)
    assert entered.status == 303 and headers["Location"] == "./?x=1"
    cookie = headers["Set-Cookie"]
    name, value = cookie.split(";")[0].split("=", 1)
    assert name == f"mlflow-magic-{PORT}" and "HttpOnly" in cookie and "Path" not in cookie
    assert ask(gate, cookie=f"{name}={value}; other=1").allowed
    # Used once: the same code again is refused, with a page that says what to do.
    again = ask(gate, "/", f"{contract.LOGIN_PARAM}={code}", accept="text/html")
    assert again.status == 401 and b"expired or was already used" in again.body
    # ... unless the browser already has its session: then the code just goes away.
    assert ask(gate, "/", f"{contract.LOGIN_PARAM}={code}", cookie=f"{name}={value}"
               ).status == 303
    # A code made for another port (a link a browser may have sent elsewhere) is useless.
    other = keys.new_login(folder, PORT + 1)
    assert ask(gate, "/", f"{contract.LOGIN_PARAM}={other}").status == 401


def test_sessions_and_codes_expire(gate, folder):
    stale = gate.session_value(PORT, now=time.time() - contract.SESSION_TTL - 1)
    assert not ask(gate, cookie=f"mlflow-magic-{PORT}={stale}").allowed
    fresh = gate.session_value(PORT)
    assert not ask(gate, cookie=f"mlflow-magic-{PORT + 1}={fresh}").allowed  # another port
    code = keys.new_login(folder, PORT)
    logins = records.record_dir(folder) / contract.LOGINS_DIR
    for made in logins.iterdir():
        old = time.time() - contract.LOGIN_TTL - 5
        os.utime(made, (old, old))
    assert ask(gate, "/", f"{contract.LOGIN_PARAM}={code}").status == 401
    keys.new_login(folder, PORT)
    assert len(list(logins.iterdir())) == 1  # expired codes are dropped


def test_no_key_no_server(tmp_path):
    with pytest.raises(GateError, match="key cannot be read"):
        Gate(tmp_path)


def test_mlflows_app_never_sees_the_key(gate, folder):
    key = keys.folder_key(folder)
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    scope = {"type": "http", "method": "GET", "path": "/api/2.0/x", "query_string": b"",
             "server": ("127.0.0.1", PORT),
             "headers": [(contract.KEY_HEADER.lower().encode(), key.encode()),
                         (b"cookie", f"mlflow-magic-{PORT}=v; mlflow_user=a".encode()),
                         (b"authorization", b"Basic YWRtaW46cHc=")]}
    own_loop.run(gate_module.asgi(app, gate)(scope, None, None))
    assert dict(seen["headers"]) == {b"cookie": b"mlflow_user=a",
                                     b"authorization": b"Basic YWRtaW46cHc="}

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "QUERY_STRING": "",
               "SERVER_PORT": str(PORT), "HTTP_AUTHORIZATION": f"Bearer {key}"}
    gate_module.wsgi(lambda env, start: [env], gate)(environ, None)
    assert "HTTP_AUTHORIZATION" not in environ


def test_the_wsgi_gate_refuses_with_a_status_line(gate):
    started = []
    body = gate_module.wsgi(lambda env, start: [b"app"], gate)(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_PORT": str(PORT)},
        lambda status, headers: started.append(status))
    assert started == ["401 Unauthorized"] and b"private" in body[0]


def test_a_team_server_has_no_gate(monkeypatch):
    monkeypatch.delenv(contract.PRIVATE_DIR_ENV, raising=False)
    app = object()
    assert gate_module.from_environment(app, "asgi") is app


def test_a_kernel_pass_lets_a_frame_of_another_site_in_under_its_path(gate, folder):
    """``/mlflow-magic-pass/<pass>/...`` is MLflow's root for as long as the pass holds: no
    cookie, no key; the frame's own requests (same-origin) and its navigation from the
    embedding page get in; MLflow sees its own path, a loopback Host and no cross-site
    Origin; the response may be framed by the embedders only."""
    from mlflow_magic.state import passes

    token = passes.kernel_pass(records.record_dir(folder), PORT)
    colab = passes.kernel_pass(records.record_dir(folder), PORT, "abc.googleusercontent.com")
    base = f"/{contract.PASS_PATH}/{token}"
    own = {"sec_fetch_site": "same-origin", "sec_fetch_mode": "cors",
           "origin": f"http://127.0.0.1:{PORT}", "host": f"127.0.0.1:{PORT}"}
    verdict = ask(gate, f"{base}/ajax-api/2.0/mlflow/runs/update", method="POST", **own)
    assert verdict.allowed and verdict.path == "/ajax-api/2.0/mlflow/runs/update"
    framed = {"sec_fetch_site": "cross-site", "sec_fetch_mode": "navigate",
              "sec_fetch_dest": "iframe", "host": f"127.0.0.1:{PORT}"}
    assert ask(gate, f"{base}/", **framed).allowed
    # Anything else a page of another site sends through a pass is refused: a no-cors
    # fetch or sendBeacon, a form's post, an image, an old browser's cross-origin write,
    # and a name other than loopback or the pass's own (DNS rebinding).
    for method, marks in [
            ("POST", {"sec_fetch_site": "cross-site", "sec_fetch_mode": "no-cors",
                      "sec_fetch_dest": "empty", "origin": "https://evil.example"}),
            ("POST", {**framed, "origin": "https://evil.example"}),
            ("GET", {"sec_fetch_site": "cross-site", "sec_fetch_mode": "no-cors",
                     "sec_fetch_dest": "image"}),
            ("POST", {"origin": "https://evil.example", "host": f"127.0.0.1:{PORT}"}),
            ("GET", {"sec_fetch_site": "same-origin", "host": f"rebind.example:{PORT}"}),
            ("GET", {"sec_fetch_site": "same-origin",
                     "host": f"abc.googleusercontent.com:{PORT}"})]:
        assert ask(gate, f"{base}/ajax-api/2.0/mlflow/runs/update", method=method,
                   **marks).status == 401, (method, marks)
    assert ask(gate, f"/{contract.PASS_PATH}/{colab}/", sec_fetch_site="same-origin",
               host="abc.googleusercontent.com").allowed  # the forwarder it was made for
    assert ask(gate, f"{base}/").path == "/"
    slashless = ask(gate, base, query="a=1")
    assert slashless.status == 308 and ("Location", f"{token}/?a=1") in slashless.headers
    assert ask(gate, f"{base}/x", port=PORT + 1).status == 401  # a pass holds on its port
    ended = ask(gate, f"/{contract.PASS_PATH}/{token[:-1]}x/", accept="text/html")
    assert ended.status == 401 and b"belonged to a kernel that has ended" in ended.body

    seen, sent = {}, []

    async def app(scope, receive, send):
        seen.update(scope)
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(b"x-frame-options", b"SAMEORIGIN"), (b"location", b"/x")]})

    async def send(message):
        sent.append(message)

    base = f"/{contract.PASS_PATH}/{colab}"
    scope = {"type": "http", "method": "POST", "path": f"{base}/ajax-api/2.0/x",
             "raw_path": f"{base}/ajax-api/2.0/x".encode(), "query_string": b"",
             "server": ("127.0.0.1", PORT),
             "headers": [(b"host", b"abc.googleusercontent.com"),
                         (b"origin", b"https://abc.googleusercontent.com")]}
    own_loop.run(gate_module.asgi(app, gate)(scope, None, send))
    assert seen["path"] == "/ajax-api/2.0/x" and seen["raw_path"] == b"/ajax-api/2.0/x"
    assert dict(seen["headers"]) == {b"host": f"localhost:{PORT}".encode()}
    headers = dict(sent[0]["headers"])
    assert b"x-frame-options" not in headers
    assert headers[b"content-security-policy"].startswith(b"frame-ancestors 'self' ")
    assert b"vscode-webview:" in headers[b"content-security-policy"]
    assert headers[b"referrer-policy"] == b"same-origin"  # the pass stays off other sites
    assert headers[b"location"] == f"{base}/x".encode()  # a redirect stays under the pass

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"{base}/", "QUERY_STRING": "",
               "RAW_URI": f"{base}/?a=1", "SERVER_PORT": str(PORT),
               "HTTP_HOST": "abc.googleusercontent.com", "HTTP_ORIGIN": "https://a.b"}
    started = []
    gate_module.wsgi(lambda env, start: start("200 OK", [("X-Frame-Options", "DENY")]) or [],
                     gate)(environ, lambda status, headers, exc=None: started.append(headers))
    assert environ["PATH_INFO"] == "/" and environ["RAW_URI"] == "/?a=1"
    assert environ["HTTP_HOST"] == f"localhost:{PORT}" and "HTTP_ORIGIN" not in environ
    assert [k for k, _ in started[0]] == ["Content-Security-Policy", "Referrer-Policy"]
