"""ingest, running: the broker link, the spool writer and the sync, under one TaskGroup.

Three threads do the blocking work, each for a reason: paho's network thread (paho is not
asyncio; we need its manual acks, see link.py), one spool-writer thread (SQLite commits with
fsync) and one sync thread (psycopg's COPY of up to `batch_size` results). The asyncio loop
only moves deliveries from paho to the writer, paces the syncs and publishes the status, so
a slow fsync or a long COPY never delays the others.

    paho thread --deliver--> inbox (the loop woken once per burst) --after spool_linger,
        a batch--> writer thread: decode, validate, spool.put (one commit), then PUBACK
    sync thread, every sync_interval: spool --COPY--> PostgreSQL (commit), then spool delete

Besides the results (gap reports included), ingest reads three of the broker's `$SYS` topics
(`core.SYS_TOPICS`): the drop counter, whose rises become gap rows (`core.BrokerDrops`), the
broker's uptime (to notice its restarts) and its stored-message count (in the status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from services.ingest.core import SYS_TOPICS, BrokerDrops, Rejection, Result, Triage, sync_interval
from services.ingest.link import Delivery, Link
from services.ingest.settings import IngestSettings
from services.ingest.spool import Spool
from services.ingest.sync import Stats, Syncer
from shared.devices import DeviceRegistry
from shared.errors import ConfigError
from shared.messages import RESULT_TYPES, Status
from shared.metrics import ServiceMetrics, observe_sync
from shared.settings import MqttSettings

log = logging.getLogger(__name__)


class Ingest:
    """One ingest process. Build inside the running loop; `await run(stop)`."""

    def __init__(
        self, settings: IngestSettings, mqtt: MqttSettings, registry: DeviceRegistry
    ) -> None:
        if settings.database_url is None:
            raise ValueError("ingest needs a database URL")
        self.settings = settings
        self.mqtt = mqtt
        self.interval = sync_interval(
            settings.sync_interval,
            settings.device,
            {d.id: d.sync_interval for d in registry.devices.values()},
        )
        self.stats = Stats()
        self.triage = Triage(
            mqtt.topic_prefix,
            registry,
            require_known_device=settings.require_known_device,
            device=settings.device,
            max_future_s=settings.max_future_s,
        )
        try:
            self.spool = Spool(settings.spool, settings.spool_max)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the spool {settings.spool}: {exc}") from exc
        self.syncer = Syncer(
            self.spool,
            settings.database_url.get_secret_value(),
            source=settings.status_source,
            batch_size=settings.batch_size,
            registry=registry,
            connect_timeout=settings.connect_timeout,
            db_timeout=settings.db_timeout,
            stats=self.stats,
            maintenance_dsn=None
            if settings.maintenance_url is None
            else settings.maintenance_url.get_secret_value(),
            keep_days=settings.keep_days,
            maintenance_interval=settings.maintenance_interval,
        )
        self._loop = asyncio.get_running_loop()
        #: Deliveries from paho's thread, not yet handed to the writer; `_arrived` is set
        #: (once per burst, not per delivery) when the inbox stops being empty.
        self._inbox: deque[Delivery] = deque()
        self._inbox_lock = threading.Lock()
        self._signalled = False
        self._arrived = asyncio.Event()
        self._stopping = threading.Event()
        self.broker = BrokerDrops()
        self.link = Link(
            mqtt,
            client_id=settings.client_id,
            node=settings.node_id,
            topics=[
                *(
                    cls.subscription(mqtt.topic_prefix, settings.device)
                    for cls in RESULT_TYPES.values()
                ),
                *(SYS_TOPICS if settings.broker_drops else ()),
            ],
            session_expiry=settings.session_expiry,
            receive_maximum=settings.receive_maximum,
            on_delivery=self._deliver,
            status=self.status,
        )
        self.metrics = ServiceMetrics("ingest", settings.node_id)
        self.metrics.status_from(lambda: self.status("online"))
        self.metrics.queue("spool", self.spool.depth)
        self.metrics.queue("deliveries", lambda: len(self._inbox))

    # --- status -----------------------------------------------------------------------------
    def status(self, state: str) -> Status:
        """This node's status: `degraded` while the database refuses or cannot be reached."""
        counters = self.stats.snapshot()
        try:
            counters["spool_depth"] = self.spool.depth()
        except sqlite3.Error:
            counters["spool_depth"] = -1  # unreadable: spool_errors says more
        if self.broker.dropped is not None:
            counters["broker_dropped"] = self.broker.dropped
        if self.broker.stored is not None:
            counters["broker_stored"] = self.broker.stored
        counters["broker_drops_recorded"] = self.broker.recorded
        link = getattr(self, "link", None)  # None while the link itself is being built
        if link is not None and link.receive_errors:
            counters["receive_errors"] = link.receive_errors
        detail = None
        if state == "online" and not self.syncer.healthy:
            state, detail = "degraded", (self.syncer.last_error or "sync failing")[:500]
        return Status(
            device=self.settings.node_id,
            service="ingest",
            state=state,  # type: ignore[arg-type]
            detail=detail,
            counters=counters,
        )

    # --- running ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Receive, spool and sync until `stop` is set; then a final sync, then offline."""
        writer = ThreadPoolExecutor(1, thread_name_prefix="ingest-spool")
        syncing = ThreadPoolExecutor(1, thread_name_prefix="ingest-sync")
        log.info(
            "ingest: %s results from %s, spool %s (max %d), sync every %.1f s",
            self.settings.device or "every device's",
            self.mqtt.topic_prefix,
            self.settings.spool,
            self.settings.spool_max,
            self.interval,
        )
        self.link.start()
        self.metrics.start_from_env()
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._receive(writer)),
                    tg.create_task(self._sync_loop(syncing)),
                    tg.create_task(self._heartbeat()),
                ]
                await stop.wait()
                log.info("ingest: stopping; final sync")
                self._stopping.set()
                for task in tasks:
                    task.cancel()
            # Whatever the writer has started is committed and acknowledged first.
            await self._loop.run_in_executor(writer, _nothing)
            final = self._loop.run_in_executor(syncing, self.syncer.sync)
            try:
                async with asyncio.timeout(self.settings.shutdown_timeout):
                    await asyncio.shield(final)
            except TimeoutError:
                log.warning(
                    "final sync still running after %.0f s: cancelled; the rest waits in "
                    "the spool for the next start",
                    self.settings.shutdown_timeout,
                )
                self.syncer.cancel()
                await final
        finally:
            writer.shutdown(wait=True)
            self.link.stop(self.status("offline"))
            syncing.shutdown(wait=True)
            self.syncer.close()
            self.spool.close()
            self.metrics.stop()

    def _deliver(self, delivery: Delivery) -> None:
        """paho's thread: hand over to the loop, never block (receive-maximum bounds it).
        The loop is woken once per burst: a wake-up per delivery would cost more than the
        delivery."""
        with self._inbox_lock:
            self._inbox.append(delivery)
            if self._signalled:
                return
            self._signalled = True
        try:
            self._loop.call_soon_threadsafe(self._arrived.set)
        except RuntimeError:
            # The loop has closed (shutdown): not acknowledged, so the broker keeps it.
            log.debug("delivery on %s after shutdown; the broker will redeliver", delivery.topic)

    def _take(self, limit: int) -> list[Delivery]:
        """Up to `limit` deliveries, oldest first; re-arms the wake-up once the inbox is empty."""
        with self._inbox_lock:
            batch = [self._inbox.popleft() for _ in range(min(limit, len(self._inbox)))]
            if not self._inbox:
                self._signalled = False
                self._arrived.clear()
        return batch

    async def _receive(self, writer: ThreadPoolExecutor) -> None:
        limit = self.settings.receive_maximum
        linger = self.settings.spool_linger
        while True:
            await self._arrived.wait()
            # Let a batch gather (one commit for all of it), unless half the broker's window
            # is here already: the broker sends no more than `limit` unacknowledged.
            if linger > 0 and len(self._inbox) < max(1, limit // 2):
                await asyncio.sleep(linger)
            batch = self._take(limit)
            if batch:
                await self._loop.run_in_executor(writer, self._spool_batch, batch)

    def _spool_batch(self, batch: list[Delivery]) -> None:
        """Writer thread: validate, commit to the spool, then acknowledge every delivery."""
        now = time.time()
        results: list[Result] = []
        for delivery in batch:
            verdict = self._triage(delivery, now)
            if verdict is None:
                continue
            if isinstance(verdict, Rejection):
                log.warning("rejected %s: %s", verdict.topic, verdict.reason)
                self.stats.add("rejected")
                self.stats.add(verdict.counter)
            else:
                results.append(verdict)
        while True:
            try:
                outcome = self.spool.put(results, now)
                break
            except sqlite3.Error as exc:
                self.stats.add("spool_errors")
                if self._stopping.is_set():
                    log.error("spool %s: %s; not acknowledged", self.settings.spool, exc)
                    return
                log.error("spool %s: %s; retrying in 1 s", self.settings.spool, exc)
                time.sleep(1.0)
        broker = sum(d.topic.startswith("$SYS/") for d in batch)
        self.stats.add("received", len(batch) - broker)
        self.stats.add("broker_received", broker)
        self.stats.add("spool_commits")
        self.stats.add("spooled", outcome.stored)
        self.stats.add("duplicates", outcome.duplicates)
        self.stats.add("dropped", outcome.dropped)
        for gap in outcome.gaps:
            log.warning(
                "spool full (%d results): dropped %d oldest %s results of %s (%.3f..%.3f)",
                self.settings.spool_max,
                gap.count,
                gap.result,
                gap.device,
                gap.first_start,
                gap.last_start,
            )
        # the broker's own messages are acknowledged too, but only results count as acked
        acked = sum(self.link.ack(d) and not d.topic.startswith("$SYS/") for d in batch)
        self.stats.add("acked", acked)

    def _triage(self, delivery: Delivery, now: float) -> Result | Rejection | None:
        """Triage one delivery (None: a `$SYS` reading that records nothing); a failure of ours
        is a rejection too (counted `rejected_error`, then acknowledged), so that no message
        can stop ingest and come back at every start."""
        try:
            if not delivery.topic.startswith("$SYS/"):
                return self.triage.message(
                    delivery.topic, delivery.payload, delivery.content_type, now
                )
            verdict = self.broker.message(delivery.topic, delivery.payload, now)
            if isinstance(verdict, Result):
                log.warning(
                    "the broker dropped %d message(s) since %.0f (its inflight or queue "
                    "limits); recorded as a gap",
                    verdict.rows[0][5],
                    verdict.start,
                )
            return verdict
        except Exception as exc:
            first = not self.stats.snapshot().get("rejected_error")
            log.error(
                "triage of a message on %s failed: %s", delivery.topic[:200], exc, exc_info=first
            )
            return Rejection(delivery.topic, f"{type(exc).__name__}: {str(exc)[:200]}", "error")

    async def _sync_loop(self, syncing: ThreadPoolExecutor) -> None:
        while True:
            began = time.monotonic()
            report = await self._loop.run_in_executor(syncing, self.syncer.sync)
            observe_sync(self.metrics, time.monotonic() - began, report.results)
            await asyncio.sleep(self.interval)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.mqtt.status_interval)
            # Not while the link is down: paho would queue every heartbeat (no bound) and send
            # them all, stale, on reconnect; the link says `online` itself once subscribed.
            if self.link.connected.is_set():
                self.link.publish_status(self.status("online"))


def _nothing() -> None:
    """A no-op to wait for a single-thread executor's earlier work."""


async def serve(settings: IngestSettings, mqtt: MqttSettings, registry: DeviceRegistry) -> None:
    """Run ingest until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await Ingest(settings, mqtt, registry).run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
