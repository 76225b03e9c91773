"""Delivery through Apprise, off the event loop: one worker thread and one bounded queue per
target, so a slow or dead target never delays the pipeline or the other targets.

A failed attempt is retried after a backoff (`retry_min` doubling up to `retry_max`, at most
`retries` times); a notification that still fails is counted (`failed`) and dropped. A full
queue drops the new notification (`dropped`). Nothing here blocks the caller.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import apprise

from services.notify.core import Notification
from shared.errors import ConfigError

log = logging.getLogger(__name__)

_TYPES = {
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "failure": apprise.NotifyType.FAILURE,
}


@dataclass(frozen=True)
class Policy:
    """How hard to try."""

    queue_size: int = 100
    retries: int = 3
    retry_min: float = 2.0
    retry_max: float = 60.0


class Target:
    """One Apprise URL, its queue and its worker thread."""

    def __init__(
        self,
        index: int,
        url: str,
        policy: Policy,
        stats: Counter[str],
        lock: threading.Lock,
        timing: Callable[[float], None] | None = None,
    ) -> None:
        self.name = f"target {index}"  # never the URL: it may hold a token or password
        self.apprise = apprise.Apprise()
        if not self.apprise.add(url):
            raise ConfigError(f"notify {self.name}: not an Apprise URL Apprise can use")
        self.policy = policy
        self.stats = stats
        self.lock = lock
        self.timing = timing
        self.queue: queue.Queue[Notification | None] = queue.Queue(policy.queue_size)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._work, name=f"notify-{index}", daemon=True)

    def _count(self, name: str) -> None:
        with self.lock:
            self.stats[name] += 1

    def submit(self, note: Notification) -> None:
        """Queue without waiting; a full queue drops `note` (counted)."""
        try:
            self.queue.put_nowait(note)
        except queue.Full:
            self._count("dropped")
            log.warning("notify %s: queue full, dropped a notification", self.name)

    def _attempt(self, note: Notification) -> bool:
        began = time.monotonic()
        try:
            ok = bool(
                self.apprise.notify(
                    body=note.body, title=note.title, notify_type=_TYPES[note.severity]
                )
            )
        except Exception as exc:  # a plugin's bug must not end the worker
            log.warning("notify %s: Apprise raised %s: %s", self.name, type(exc).__name__, exc)
            ok = False
        if self.timing is not None:
            self.timing(time.monotonic() - began)
        return ok

    def _work(self) -> None:
        while True:
            note = self.queue.get()
            if note is None:
                return
            delay = self.policy.retry_min
            for attempt in range(self.policy.retries + 1):
                if self._attempt(note):
                    self._count("sent")
                    break
                if attempt == self.policy.retries or self.stopping.is_set():
                    self._count("failed")
                    log.warning(
                        "notify %s: could not deliver %r after %d attempts",
                        self.name,
                        note.title,
                        attempt + 1,
                    )
                    break
                self._count("retries")
                if self.stopping.wait(delay):
                    self._count("failed")
                    break
                delay = min(self.policy.retry_max, delay * 2)


class Sender:
    """Every target; `submit` hands a notification to each."""

    def __init__(
        self,
        urls: list[str],
        policy: Policy | None = None,
        timing: Callable[[float], None] | None = None,
    ) -> None:
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        policy = policy or Policy()
        self.targets = [
            Target(i, url, policy, self.stats, self._lock, timing) for i, url in enumerate(urls)
        ]

    def start(self) -> None:
        """Start the worker threads."""
        for target in self.targets:
            target.thread.start()

    def submit(self, note: Notification) -> None:
        """Queue `note` for every target; never blocks."""
        for target in self.targets:
            target.submit(note)

    def depth(self) -> int:
        """Notifications waiting, all targets together."""
        return sum(t.queue.qsize() for t in self.targets)

    def counters(self) -> dict[str, int]:
        """sent, failed, retries, dropped: per delivery to one target."""
        with self._lock:
            return dict(self.stats)

    def stop(self, wait_s: float = 5.0) -> None:
        """Let queued notifications go out for up to `wait_s` seconds; stop retrying."""
        deadline = time.monotonic() + wait_s
        for target in self.targets:
            try:
                target.queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
            except queue.Full:
                target.stopping.set()
        for target in self.targets:
            target.thread.join(max(0.0, deadline - time.monotonic()))
            target.stopping.set()
