"""Who holds a local port: real sockets of this user's and of another user's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import psutil
import pytest
from conftest import OTHER_USER, free_port, lure_at, wait_for

from mlflow_magic.security import ownership
from mlflow_magic.server import serve
from mlflow_magic.state import processes


@pytest.fixture
def listening():
    """A process of this user's listening on a port: (process, port)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import socket, time
        s = socket.socket()
        s.bind(("127.0.0.1", {port}))
        s.listen()
        time.sleep(60)
    """)])
    wait_for(lambda: ownership.port_owner(port) is not None)
    yield psutil.Process(proc.pid), port
    proc.kill()
    proc.wait()


def test_the_listener_is_found_and_followed(listening):
    proc, port = listening
    listener = ownership.find_listener([proc], port)
    assert listener is not None and listener.pid == proc.pid and listener.inode > 0
    assert ownership.still_listening(listener)
    assert ownership.Listener.from_dict(listener.to_dict()) == listener
    assert ownership.find_listener([psutil.Process()], port) is None  # not this process
    proc.kill()
    proc.wait()
    assert not ownership.still_listening(listener)


def test_a_port_owner_is_its_listeners_user(listening, shared_tmp):
    _, port = listening
    assert ownership.port_owner(port) == os.geteuid()
    assert ownership.port_owner(free_port()) is None
    other = free_port()
    with lure_at(other, shared_tmp):
        uid = ownership.port_owner(other)
        assert uid is not None and uid != os.geteuid()
        assert processes.user_name(uid) == OTHER_USER


def test_wildcard_and_mapped_listeners_cover_loopback():
    assert ownership._covers_loopback("0100007F")  # 127.0.0.1
    assert ownership._covers_loopback("00000000")  # 0.0.0.0
    assert ownership._covers_loopback("0200007F")  # 127.0.0.2
    assert not ownership._covers_loopback("0202000A")  # 10.0.2.2
    assert ownership._covers_loopback("0" * 32)  # ::
    assert ownership._covers_loopback("0" * 24 + "01000000")  # ::1
    assert ownership._covers_loopback("0000000000000000FFFF00000100007F")  # ::ffff:127.0.0.1
    assert not ownership._covers_loopback("000080FE00000000FF005452FEA31F3B")  # fe80::...


def test_an_ipv6_only_listener_is_seen():
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback; the test needs ::1")
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        sock.listen()
        assert ownership.port_owner(sock.getsockname()[1]) == os.geteuid()


@pytest.mark.parametrize(("cmd", "target", "kind"), [
    (["py", "-m", "uvicorn", "--port", "1", "mlflow.server.fastapi_app:app"],
     "mlflow.server.fastapi_app:app", "asgi"),
    (["py", "-m", "uvicorn", "--factory", "mlflow.server.auth:create_app"],
     "mlflow.server.auth:create_app()", "asgi"),
    (["py", "-m", "gunicorn", "-b", "x", "mlflow.server.auth:create_app()"],
     "mlflow.server.auth:create_app()", "wsgi"),
    (["py", "-m", "gunicorn", "-b", "x", "mlflow.server:app"], "mlflow.server:app", "wsgi"),
    (["py", "-m", "waitress", "--call", "mlflow.server.auth:create_app"],
     "mlflow.server.auth:create_app()", "wsgi"),
])
def test_every_launch_serves_the_gated_app(cmd, target, kind):
    served = serve.with_served_app(cmd, {})
    assert served is not None
    new_cmd, env = served
    assert new_cmd[-1] == "mlflow_magic.server.app:app"
    assert "--factory" not in new_cmd and "--call" not in new_cmd
    assert env == {"MLFLOW_MAGIC_APP": target, "MLFLOW_MAGIC_APP_KIND": kind}


def test_an_unknown_launch_of_a_private_server_does_not_start(monkeypatch, capsys):
    assert serve.with_served_app(["py", "-m", "hypercorn", "mlflow.x:app"], {}) is None
    monkeypatch.setenv("MLFLOW_MAGIC_PRIVATE_DIR", "/x")
    with pytest.raises(SystemExit):
        serve._refuse_if_private("its web server command is hypercorn")
    assert serve.GATE_MISSING in capsys.readouterr().err
