"""A client-side deadline for one database step of a sync: past it, the link is dropped.

Why the TCP and server timeouts are not enough (measured on this kernel, psycopg 3.3, libpq
18, through a loopback proxy that stops forwarding without closing either side): with
`tcp_user_timeout` 3 s, keepalives after 1 s and `statement_timeout` 3 s, a `SELECT 1` sent
after the stall and a COPY of 40 MB during it were both still blocked after 25 s. The
proxy's kernel acknowledges every byte until its buffers fill and then answers zero-window
and keepalive probes, so TCP sees a live peer; the server never receives the statement, or
its timeout error never arrives. A dead radio link, a frozen server host or a stuck
middlebox behave the same way. Shutting the socket down from another thread ended both at
once with `OperationalError` ("server closed the connection unexpectedly"): that is what
the watchdog does. (libpq's `connect_timeout`, which psycopg enforces itself, did end a
connection attempt through the stalled proxy on time.)

The socket is duplicated when a step starts and shut down through the duplicate, so the
watchdog never touches a file descriptor number that libpq may have closed and the process
reused meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import psycopg


class StepTimeout(Exception):
    """A database step ran past its deadline (or was cut short): its link was dropped."""


class _Guard:
    """The link of one running step, and whether it was dropped."""

    def __init__(self, fd: int) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = socket.socket(fileno=os.dup(fd))
        self.fired = False

    def fire(self) -> None:
        with self._lock:
            if self._sock is None:
                return  # the step ended first
            self.fired = True
            with contextlib.suppress(OSError):  # already shut by the peer
                self._sock.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class Watchdog:
    """Drops a connection's link when one step takes longer than `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._running: _Guard | None = None

    @contextlib.contextmanager
    def step(self, conn: psycopg.Connection, what: str) -> Iterator[None]:
        """Run one step on `conn`; past the deadline the step fails with StepTimeout."""
        guard = _Guard(conn.fileno())
        timer = threading.Timer(self.seconds, guard.fire)
        timer.daemon = True
        with self._lock:
            self._running = guard
        timer.start()
        try:
            yield
        except Exception as exc:
            if guard.fired:
                raise StepTimeout(
                    f"{what}: no answer from the database within {self.seconds:g} s; link dropped"
                ) from exc
            raise
        finally:
            timer.cancel()
            guard.disarm()
            with self._lock:
                if self._running is guard:
                    self._running = None

    def drop(self) -> bool:
        """From another thread: drop the link of the step running now; False if none."""
        with self._lock:
            guard = self._running
        if guard is None:
            return False
        guard.fire()
        return guard.fired
