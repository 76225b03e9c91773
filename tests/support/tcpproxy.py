"""A loopback TCP proxy that can stall or freeze: a link that silently stops, for fault tests.

    with TcpProxy("127.0.0.1", 5432) as proxy:      # listens on 127.0.0.1:proxy.port
        ...                                         # bytes flow both ways
        proxy.stall()                               # nothing moves; nothing is closed
        proxy.resume()                              # held bytes flow on
        proxy.stall_after(4096)                     # stall once 4 kB more went upstream
        proxy.freeze_upstream()                     # clients' bytes stay unread, for good

While stalled the proxy neither reads nor writes nor accepts, and closes nothing: each side's
kernel still acknowledges what fits in its buffers and keeps answering keepalive probes, so
to the client the link looks open but the server never answers. (This kernel has no packet
filter or netem; a stall is the closest a test gets to a dead link without root.)

Frozen upstream, only the client-to-server direction stops: what clients send (results,
pings, new CONNECTs) stays unread, on every connection, new ones too, as on an uplink that
stopped, while what the server sends (audio) still arrives. `close` then drops whatever was
left unread.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from types import TracebackType

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_TICK = 0.05  # how often a waiting thread looks at the stop flag, seconds


class TcpProxy:
    """Forwards every connection to 127.0.0.1:port to (host, upstream_port), one thread per
    direction."""

    def __init__(self, host: str, upstream_port: int) -> None:
        self.upstream = (host, upstream_port)
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closing = threading.Event()
        self._budget: int | None = None  # upstream bytes still allowed before a stall
        self._lock = threading.Lock()
        # freeze_upstream: the flag, and how many upstream pumps are reading or forwarding.
        self._idle = threading.Condition(self._lock)
        self._frozen = False
        self._forwarding_up = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_TICK)
        self.port: int = self._listener.getsockname()[1]
        self._spawn(self._accept, "tcpproxy-accept")

    # --- control ----------------------------------------------------------------------------
    def stall(self) -> None:
        """Stop moving bytes (and accepting) without closing anything."""
        self._forwarding.clear()

    def stall_after(self, nbytes: int) -> None:
        """Stall once `nbytes` more bytes went from clients to the server (mid-transfer)."""
        with self._lock:
            self._budget = nbytes

    def resume(self) -> None:
        """Move bytes again, those held during the stall first."""
        with self._lock:
            self._budget = None
        self._forwarding.set()

    def freeze_upstream(self, timeout_s: float = 5.0) -> None:
        """Stop reading from clients, on every connection (new ones too), for good; returns
        once no pump is forwarding any more, so nothing a client sends from now on gets
        through. The server-to-client direction keeps flowing."""
        with self._idle:
            self._frozen = True
            if not self._idle.wait_for(lambda: self._forwarding_up == 0, timeout_s):
                raise TimeoutError(f"an upstream pump still forwards after {timeout_s} s")

    @property
    def stalled(self) -> bool:
        """True between `stall` and `resume`."""
        return not self._forwarding.is_set()

    def close(self) -> None:
        """Close every socket and wait for the threads."""
        self._closing.set()
        self._forwarding.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._listener.close()
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- threads ----------------------------------------------------------------------------
    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _wait_forwarding(self) -> bool:
        """Block while stalled; False once the proxy closes."""
        while not self._forwarding.wait(_TICK):
            pass
        return not self._closing.is_set()

    def _accept(self) -> None:
        while self._wait_forwarding():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError as exc:
                log.warning("tcpproxy: upstream %s:%d refused: %s", *self.upstream, exc)
                client.close()
                continue
            for sock in (client, server):
                sock.settimeout(None)
            with self._lock:
                if self._closing.is_set():
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
                self.connections += 1
            self._spawn(self._pump, "tcpproxy-up", client, server, True)
            self._spawn(self._pump, "tcpproxy-down", server, client, False)

    def _allowed(self, data: bytes, upstream: bool) -> tuple[bytes, bytes]:
        """(what may go now, what waits for the resume); stalls when the budget runs out."""
        if not upstream:
            return data, b""
        with self._lock:
            if self._budget is None:
                return data, b""
            now, later = data[: self._budget], data[self._budget :]
            self._budget -= len(now)
            if self._budget == 0:
                self._budget = None
                self._forwarding.clear()
            return now, later

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        """Copy src to dst; on EOF half-close dst, on an error shut both."""
        with selectors.DefaultSelector() as sel:
            try:
                sel.register(src, selectors.EVENT_READ)
            except (OSError, ValueError):
                return
            while self._wait_forwarding():
                if upstream and self._frozen:
                    self._closing.wait(_TICK)  # leave the client's bytes unread
                    continue
                if not sel.select(_TICK):
                    continue
                if not upstream:
                    if not self._forward(src, dst, upstream):
                        return
                    continue
                with self._idle:
                    if self._frozen:
                        continue
                    self._forwarding_up += 1
                try:
                    if not self._forward(src, dst, upstream):
                        return
                finally:
                    with self._idle:
                        self._forwarding_up -= 1
                        self._idle.notify_all()

    def _forward(self, src: socket.socket, dst: socket.socket, upstream: bool) -> bool:
        """Move what src has to dst; False once this direction has ended."""
        try:
            data = src.recv(_CHUNK)
        except OSError:
            data = None
        if not data:
            # EOF (b"") passes on as a half-close; a reset (None) shuts both sides.
            self._end(src, dst, half=data is not None)
            return False
        while data:
            # Bytes taken before a stall wait for the resume.
            if not self._wait_forwarding():
                return False
            now, data = self._allowed(data, upstream)
            try:
                dst.sendall(now)
            except OSError:
                self._end(src, dst, half=False)
                return False
        return True

    @staticmethod
    def _end(src: socket.socket, dst: socket.socket, *, half: bool) -> None:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR if half else socket.SHUT_RDWR)
        if not half:
            with contextlib.suppress(OSError):
                src.shutdown(socket.SHUT_RDWR)
