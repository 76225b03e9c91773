"""A local HTTP server that records the JSON bodies POSTed to it (an Apprise json:// target)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Webhook:
    """Received bodies, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.port = 0

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies)

    def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """At least `n` bodies (or what arrived within `timeout`)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.bodies) >= n, timeout)
            return list(self.bodies)


@contextmanager
def webhook() -> Iterator[Webhook]:
    """A running webhook on a free local port."""
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with hook.arrived:
                hook.bodies.append(json.loads(body))
                hook.arrived.notify_all()
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
