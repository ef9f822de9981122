"""server/peer.py and the gate's use of it: the kernel says which user owns the client end of
a loopback connection; the owner's own programs get in by it, another user and every
browser do not. Real sockets, a real second user (``nobody``); no server needed."""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import textwrap
from collections.abc import Iterator

import pytest
from conftest import OTHER_USER, SYSTEM_PYTHON, as_other_user, stop_group

from mlflow_magic.security import keys
from mlflow_magic.server import peer
from mlflow_magic.server.gate import Gate
from mlflow_magic.state import records


@contextlib.contextmanager
def connection(family: int = socket.AF_INET,
               host: str = "127.0.0.1") -> Iterator[tuple[tuple[str, int], int]]:
    """A loopback connection of this process: (the client's address as the server's socket
    reads it, the server's port)."""
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection((host, port)):
            accepted, client = listener.accept()
            with accepted:
                yield (client[0], client[1]), port


def test_the_kernel_names_the_user_of_a_loopback_connections_client():
    with connection() as (client, port):
        assert peer.client_uid(*client, "127.0.0.1", port) == os.geteuid()
        assert peer.client_uid(*client, None, port) == os.geteuid()  # the family's loopback
        assert peer.client_uid(f"::ffff:{client[0]}", client[1], None, port) == os.geteuid()
        # no such connection: the kernel knows none, which counts as nobody's
        assert peer.client_uid(*client, None, port - 1) == peer.NO_CONNECTION
        assert peer.client_uid(client[0], client[1] ^ 1, None, port) == peer.NO_CONNECTION
        assert peer.client_uid(*client, "127.0.0.2", port) == peer.NO_CONNECTION
        assert peer.client_uid("192.0.2.7", client[1], None, port) is None  # not loopback
        assert peer.client_uid("not an address", client[1], None, port) is None


def test_a_forged_client_address_naming_a_listening_port_is_nobodys():
    """A client address from a header (``X-Forwarded-For: 127.0.0.1:<port>``) names no
    connection; the kernel answers such a lookup with the socket listening on that port,
    whose user is the owner. That answer is not the client's."""
    with connection() as (_, port), socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        assert peer.client_uid("127.0.0.1", port, None, port) == peer.NO_CONNECTION
        assert peer.client_uid("127.0.0.1", other.getsockname()[1], None, port) == \
            peer.NO_CONNECTION


def test_an_ipv6_loopback_client_is_named_too():
    try:
        context = connection(socket.AF_INET6, "::1")
        with context as (client, port):
            assert peer.client_uid(*client, "::1", port) == os.geteuid()
    except OSError as exc:  # a machine without IPv6 on its loopback
        assert "Cannot assign" in str(exc) or "not supported" in str(exc), exc


@pytest.mark.integration
def test_another_users_connection_is_theirs():
    """``nobody`` connects to a port of ours: the table names nobody, not us."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = textwrap.dedent(f"""
            import socket, sys
            s = socket.create_connection(("127.0.0.1", {port}))
            sys.stdin.read()
        """)
        other = subprocess.Popen(as_other_user([SYSTEM_PYTHON, "-c", code]),
                                 stdin=subprocess.PIPE, start_new_session=True)
        try:
            listener.settimeout(30)
            accepted, client = listener.accept()
            with accepted:
                assert peer.client_uid(client[0], client[1], None, port) == \
                    pwd.getpwnam(OTHER_USER).pw_uid != os.geteuid()
        finally:
            stop_group(other, grace=5)


@pytest.fixture
def folder(tmp_path):
    data_dir = records.prepare_folder(tmp_path / "data")
    keys.folder_key(data_dir, create=True)
    return data_dir


def test_the_gate_lets_the_owners_programs_in_by_their_user_and_no_browser(folder):
    with connection() as (client, port):
        gate = Gate(records.record_dir(folder), port)

        def allowed(**headers: str | None) -> bool:
            sent = {"host": f"127.0.0.1:{port}",
                    **{k.replace("_", "-"): v for k, v in headers.items()}}
            return gate.decide("POST", "/api/2.0/mlflow/experiments/create", "",
                               lambda name: sent.get(name.lower()), port, client).allowed

        # requests, curl, R, Java: no browser headers, a loopback Host
        assert allowed()
        assert allowed(host=f"localhost:{port}") and allowed(host=f"[::1]:{port}")
        # a browser, whatever page it shows, needs the key or a login
        assert not allowed(origin="https://evil.example")
        assert not allowed(origin="null")
        for mark in ("sec_fetch_site", "sec_fetch_mode", "sec_fetch_dest"):
            assert not allowed(**{mark: "cross-site"}), mark
        # DNS rebinding: a name that resolved to this machine
        for host in (f"rebind.example:{port}", f"127.0.0.1.nip.io:{port}",
                     f"127.evil.example:{port}", None):
            assert not allowed(host=host), host
        # a connection the gate cannot place: none, another one, no port of its own
        assert not gate.decide("GET", "/", "", lambda name: None, port, None).allowed
        other = Gate(records.record_dir(folder), port + 1)
        assert not other.decide("GET", "/", "", lambda n: f"127.0.0.1:{port}"
                                if n == "host" else None, port, client).allowed
        unknown = Gate(records.record_dir(folder))
        assert not unknown.decide("GET", "/", "", lambda n: f"127.0.0.1:{port}"
                                  if n == "host" else None, port, client).allowed
