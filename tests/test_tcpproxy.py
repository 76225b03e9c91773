"""The test proxy's freeze (tests/support/tcpproxy.py): once `freeze_upstream` returns, nothing
a client sends reaches the server, on old or new connections, while the server's bytes still
reach the clients."""

from __future__ import annotations

import contextlib
import socket

from tests.support.tcpproxy import TcpProxy


def recv(sock: socket.socket, timeout: float) -> bytes:
    """What arrives on `sock` within `timeout` s (b"" if nothing)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1024)
    except TimeoutError:
        return b""


def test_a_frozen_upstream_forwards_nothing_and_still_delivers_downstream() -> None:
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        proxy = stack.enter_context(TcpProxy("127.0.0.1", listener.getsockname()[1]))
        client = stack.enter_context(socket.create_connection(("127.0.0.1", proxy.port)))
        server = stack.enter_context(listener.accept()[0])
        client.sendall(b"before")
        assert recv(server, 5) == b"before"

        proxy.freeze_upstream()
        client.sendall(b"after")
        server.sendall(b"audio")
        assert recv(client, 5) == b"audio"
        # A new connection is accepted and connected, and frozen from the start.
        late = stack.enter_context(socket.create_connection(("127.0.0.1", proxy.port)))
        late_server = stack.enter_context(listener.accept()[0])
        late.sendall(b"connect")
        late_server.sendall(b"more audio")
        assert recv(late, 5) == b"more audio"
        assert recv(server, 0.5) == b"" and recv(late_server, 0.2) == b""

        proxy.close()  # what the clients sent while frozen is dropped, never forwarded
        assert recv(server, 5) == b"" and recv(late_server, 5) == b""
