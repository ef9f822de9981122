"""Who is on the other end of a loopback connection: the user that owns the client's socket,
as the kernel reports it.

For a connection from this machine to a server of this machine, the kernel holds both ends,
and knows the user that owns each (``ss -tne`` shows it). Linux answers the question for
one exact connection through netlink's ``sock_diag`` (``SOCK_DIAG_BY_FAMILY`` without
``NLM_F_DUMP``: one hash lookup in the kernel, a few microseconds, however many sockets the
machine has; reading ``/proc/net/tcp`` instead formats every socket, milliseconds on a
busy host). That is what PostgreSQL's ``peer`` login and RFC 1413's ``ident`` decide by, and
what lets the gate (:mod:`mlflow_magic.server.gate`) let the owner's own programs in with no
key.

The client's address and port come from the socket the server accepted (the web servers
run with forwarding headers ignored: :func:`mlflow_magic.server.serve.without_forwarding`),
and the server's port from its own settings. The kernel's answer counts only if it is that
very connection: the kernel also answers a lookup of any address to the server's port with
the server's own *listening* socket (whose user is the owner), so an answer that is not an
established connection with exactly the ends asked about is :data:`NO_CONNECTION`, as is no
answer: a lookup that finds nothing proves nothing, and counts as someone else. Where the
kernel cannot be asked (macOS, a sandbox without netlink), the answer is None, and the key
applies as before.

Imports only the standard library: it runs in every worker, before MLflow's app.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

#: <linux/sock_diag.h>, <linux/inet_diag.h>, <linux/netlink.h>
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
_NO_COOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF
#: struct nlmsghdr, then struct inet_diag_req_v2 (its inet_diag_sockid in network order)
_HEADER = struct.Struct("=IHHII")
_REQUEST = struct.Struct("=BBBxI")
_SOCKID = struct.Struct("!HH16s16s")
_TAIL = struct.Struct("=III")
#: In the answer (struct inet_diag_msg after the header): the state, the ends, the uid.
_STATE_AT = _HEADER.size + 1
_SOCKID_AT = _HEADER.size + 4
_UID_AT = _HEADER.size + 4 + _SOCKID.size + _TAIL.size + 12
#: TCP states of <net/tcp_states.h> a client's end of a served connection can be in.
_ESTABLISHED, _FIN_WAIT1, _FIN_WAIT2, _CLOSE_WAIT = 1, 4, 5, 8
_CONNECTED = (_ESTABLISHED, _FIN_WAIT1, _FIN_WAIT2, _CLOSE_WAIT)
#: The kernel knows no connection with these ends: nobody's, not the owner's.
NO_CONNECTION = -1

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(host: str) -> Address | None:
    """An address, an IPv4-mapped IPv6 one as IPv4; None if ``host`` is not one."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_uid(client_host: str, client_port: int, server_host: str | None,
               server_port: int) -> int | None:
    """The uid owning the client end of the loopback connection from
    ``client_host:client_port`` to this machine's ``server_host:server_port`` (None for the
    server's address: the loopback address of the client's family); :data:`NO_CONNECTION`
    if the kernel knows no such connection. None if the client is not on this machine's
    loopback, or the kernel cannot be asked."""
    client = _address(client_host)
    if client is None or not client.is_loopback:
        return None
    if client_port == server_port:  # a client's end never shares the server's port
        return NO_CONNECTION
    server = _address(server_host) if server_host else None
    if server is None or server.version != client.version:
        server = ipaddress.ip_address("127.0.0.1" if client.version == 4 else "::1")
    return _ask_kernel(client, client_port, server, server_port)


def _ask_kernel(local: Address, local_port: int, remote: Address,
                remote_port: int) -> int | None:
    """One ``sock_diag`` question: the owner of the TCP socket whose local end is
    ``local:local_port`` and whose remote end is ``remote:remote_port``."""
    family = socket.AF_INET if local.version == 4 else socket.AF_INET6
    request = (_REQUEST.pack(family, socket.IPPROTO_TCP, 0, _ALL_STATES)
               + _SOCKID.pack(local_port, remote_port, local.packed.ljust(16, b"\0"),
                              remote.packed.ljust(16, b"\0"))
               + _TAIL.pack(0, _NO_COOKIE, _NO_COOKIE))
    message = _HEADER.pack(_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST,
                           1, 0) + request
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as link:
            link.sendto(message, (0, 0))
            answer = link.recv(4096)
    except (OSError, AttributeError):  # no netlink here (AttributeError: not Linux)
        return None
    if len(answer) < _HEADER.size or _HEADER.unpack_from(answer)[1] != SOCK_DIAG_BY_FAMILY \
            or len(answer) < _UID_AT + 4:
        return NO_CONNECTION  # NLMSG_ERROR: no such connection (it closed, or never was)
    sport, dport, src, dst = _SOCKID.unpack_from(answer, _SOCKID_AT)
    size = len(local.packed)
    if answer[_STATE_AT] not in _CONNECTED or (sport, dport) != (local_port, remote_port) \
            or src[:size] != local.packed or dst[:size] != remote.packed:
        return NO_CONNECTION  # another socket (the server's listening one): not this peer
    return struct.unpack_from("=I", answer, _UID_AT)[0]
