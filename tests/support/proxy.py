"""A TCP proxy on loopback whose client-to-server direction can be frozen: what clients send
(results, pings, new CONNECTs) then stays unread, as on an uplink that stopped, while what the
server sends (audio) still arrives. Closing it drops whatever was left unread."""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class FreezableProxy:
    """Forward 127.0.0.1:`port` to 127.0.0.1:`target`, one pair of threads per connection."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._closed = threading.Event()
        self._socks: list[socket.socket] = []
        self._parked: list[threading.Event] = []  # one per client-to-server pump
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._start(self._accept)

    def freeze(self) -> None:
        """Stop reading from clients, on every connection (new ones too); returns once no
        pump is forwarding any more, so nothing a client sends from now on gets through."""
        self._frozen.set()
        with self._lock:
            parked = list(self._parked)
        for event in parked:
            event.wait(5)

    def close(self) -> None:
        """Close every connection without forwarding what clients sent while frozen."""
        self._closed.set()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for thread in threads:
            thread.join(5)
        for sock in [self._listener, *socks]:
            sock.close()

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            parked = threading.Event()
            with self._lock:
                self._socks += [client, server]
                self._parked.append(parked)
            self._start(self._pump, client, server, parked)
            self._start(self._pump, server, client, None)

    def _pump(self, src: socket.socket, dst: socket.socket, parked: threading.Event | None) -> None:
        """Copy src to dst; with `parked` (client to server), stop reading while frozen."""
        try:
            while not self._closed.is_set():
                if parked is not None and self._frozen.is_set():
                    parked.set()
                    self._closed.wait(0.05)
                    continue
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:  # the other side went away (a killed client): end this connection
            pass
        finally:
            if parked is not None:
                parked.set()
            for sock in (src, dst):
                with contextlib.suppress(OSError):  # already shut down by the other pump
                    sock.shutdown(socket.SHUT_RDWR)
