"""A loopback TCP proxy that can stall or freeze: a link that silently stops, for fault tests.

    with TcpProxy("127.0.0.1", 5432) as proxy:      # listens on 127.0.0.1:proxy.port
        ...                                         # bytes flow both ways
        proxy.stall()                               # nothing moves; nothing is closed
        proxy.resume()                              # held bytes flow on
        proxy.stall_after(4096)                     # stall once 4 kB more went upstream
        proxy.freeze_upstream()                     # clients' bytes stay unread
        proxy.freeze_downstream()                   # the server's bytes stay unread
        proxy.thaw()                                # both directions read again
        proxy.cut()                                 # close every connection, as a reset

    TcpProxy("127.0.0.1", 1883, delay_s=0.15)      # each direction 150 ms late: RTT 300 ms

While stalled the proxy neither reads nor writes nor accepts, and closes nothing: each side's
kernel still acknowledges what fits in its buffers and keeps answering keepalive probes, so
to the client the link looks open but the server never answers. (This kernel has no packet
filter or netem; a stall is the closest a test gets to a dead link without root.)

Frozen upstream, only the client-to-server direction stops: what clients send (results,
pings, new CONNECTs) stays unread, on every connection, new ones too, as on an uplink that
stopped, while what the server sends (audio) still arrives. `close` then drops whatever was
left unread. Frozen downstream is the mirror image: the server's answers (acknowledgements)
stay unread while what clients send still reaches it.

With `delay_s`, each chunk read from one side is written to the other `delay_s` seconds
later (in order; the bandwidth is loopback's): a long, fat link such as GSM or a remote
broker. A stall holds the delayed bytes too.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import deque
from types import TracebackType

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_TICK = 0.05  # how often a waiting thread looks at the stop flag, seconds


class TcpProxy:
    """Forwards every connection to 127.0.0.1:port to (host, upstream_port), one thread per
    direction."""

    def __init__(self, host: str, upstream_port: int, delay_s: float = 0.0) -> None:
        self.upstream = (host, upstream_port)
        self.delay_s = delay_s
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closing = threading.Event()
        self._budget: int | None = None  # upstream bytes still allowed before a stall
        self._lock = threading.Lock()
        # freeze_*: the flags, and how many pumps of each direction (True: upstream) are
        # reading or forwarding.
        self._idle = threading.Condition(self._lock)
        self._frozen = {True: False, False: False}
        self._busy = {True: 0, False: 0}
        self._sockets: list[socket.socket] = []
        self._cut: list[socket.socket] = []
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
        """Stop reading from clients, on every connection (new ones too), until `thaw`;
        returns once no pump is forwarding any more, so nothing a client sends from now on
        gets through. The server-to-client direction keeps flowing."""
        self._freeze(True, timeout_s)

    def freeze_downstream(self, timeout_s: float = 5.0) -> None:
        """Stop reading from the server, on every connection, until `thaw`: its answers
        (acknowledgements) stay unread while what clients send still reaches it."""
        self._freeze(False, timeout_s)

    def thaw(self) -> None:
        """Read both directions again (what was left unread flows on)."""
        with self._idle:
            self._frozen = {True: False, False: False}

    def cut(self) -> None:
        """Close every open connection at once (both sides see it end), as a link reset
        does; new connections are accepted as before."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self._cut += sockets  # closed by `close`, once their pumps are gone
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _freeze(self, upstream: bool, timeout_s: float) -> None:
        with self._idle:
            self._frozen[upstream] = True
            if not self._idle.wait_for(lambda: self._busy[upstream] == 0, timeout_s):
                raise TimeoutError(f"a pump still forwards after {timeout_s} s")

    @property
    def stalled(self) -> bool:
        """True between `stall` and `resume`."""
        return not self._forwarding.is_set()

    def close(self) -> None:
        """Close every socket and wait for the threads."""
        self._closing.set()
        self._forwarding.set()
        with self._lock:
            sockets, self._sockets = self._sockets + self._cut, []
            self._cut = []
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

    # --- one direction of one connection ----------------------------------------------------

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
        """Copy src to dst (through a delay line when `delay_s`); on EOF half-close dst, on
        an error shut both."""
        line = _DelayLine(self, src, dst, upstream) if self.delay_s > 0 else None
        with selectors.DefaultSelector() as sel:
            try:
                sel.register(src, selectors.EVENT_READ)
            except (OSError, ValueError):
                return
            while self._wait_forwarding():
                if self._frozen[upstream]:
                    self._closing.wait(_TICK)  # leave the bytes unread
                    continue
                if not sel.select(_TICK):
                    continue
                with self._idle:
                    if self._frozen[upstream]:
                        continue
                    self._busy[upstream] += 1
                try:
                    data = self._read(src)
                    if line is not None:
                        line.put(data)
                        if not data:
                            return
                    elif not self._deliver(src, dst, data, upstream):
                        return
                finally:
                    with self._idle:
                        self._busy[upstream] -= 1
                        self._idle.notify_all()
        if line is not None:
            line.put(None)

    @staticmethod
    def _read(src: socket.socket) -> bytes | None:
        """What src has: bytes, b"" at EOF, None after a reset."""
        try:
            return src.recv(_CHUNK)
        except OSError:
            return None

    def _deliver(
        self, src: socket.socket, dst: socket.socket, data: bytes | None, upstream: bool
    ) -> bool:
        """Move `data` to dst; False once this direction has ended."""
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


class _DelayLine:
    """Writes what one pump read `delay_s` after it was read, in order, from its own thread."""

    def __init__(
        self, proxy: TcpProxy, src: socket.socket, dst: socket.socket, upstream: bool
    ) -> None:
        self.proxy, self.src, self.dst, self.upstream = proxy, src, dst, upstream
        self._queue: deque[tuple[float, bytes | None]] = deque()
        self._ready = threading.Condition()
        proxy._spawn(self._run, "tcpproxy-delay")

    def put(self, data: bytes | None) -> None:
        """Queue `data` (b"": EOF, None: reset or the proxy closing) for its due time."""
        with self._ready:
            self._queue.append((time.monotonic() + self.proxy.delay_s, data))
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    if self.proxy._closing.is_set():
                        return
                    self._ready.wait(_TICK)
                due, data = self._queue.popleft()
            wait = due - time.monotonic()
            if wait > 0 and self.proxy._closing.wait(wait):
                return
            if not self.proxy._deliver(self.src, self.dst, data, self.upstream):
                return
