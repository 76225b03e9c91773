"""`soundscape levels`: the MQTT adapter around the levels core.

Audio chunks (QoS 0) go into a bounded queue; one task measures them in order, off the event
loop, and publishes levels and finished summaries; another computes acoustic indices, also off
the loop. Labels from inference feed the noise-event linker. A bad payload is logged with its
topic and reason, counted (`rejected`) and skipped. A chunk seen again is dropped
(`duplicates`); a late one gives its levels only (`late_chunks`): see `core`.

Results wait in the durable outbox (`state_dir/<node_id>-outbox.sqlite3`, see `shared.outbox`)
until the broker acknowledged them: the chunks waiting (up to MEASURE_BATCH) are measured in
one trip to the worker thread and their results committed together, before the next are
measured.

Audio levels never measured is published as `GapReport`s: chunks dropped because the queue was
full (`levels_overload`), chunks that never arrived (`audio_missing`) and, after a restart,
what arrived while levels was down (`service_down`, from the stream positions saved in
`state_dir/<node>-streams.sqlite3` at most once a second and at shutdown).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from services.levels.core import ChunkOutput, Flushed, LevelsCore
from services.levels.events import EventLinker
from services.levels.indices import IndicesJob, compute
from services.levels.memory import keep_freed_memory
from services.levels.settings import LevelsSettings
from shared.continuity import GapCollector, Lost
from shared.devices import DeviceRegistry
from shared.errors import ConfigError, MessageError
from shared.messages import AudioChunk, LabelsResult, Message
from shared.metrics import ServiceMetrics
from shared.mqtt import Incoming, MqttBus, Subscription
from shared.outbox import Outbox, open_outbox
from shared.runtime import serve, setup_logging
from shared.settings import MqttSettings, RegistrySettings
from shared.streamstore import PositionSaver, open_store

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How often idle devices and waiting noise events are looked at, seconds.
TICK = 1.0
#: Indices windows waiting to be computed; beyond, dropped and counted.
INDICES_QUEUE = 64
#: Most waiting chunks measured in one trip to the worker thread, as one batch (the chunks of
#: many devices filtered together, `LevelsCore.process_all`), their results committed to the
#: outbox together (profiled: one commit per chunk was what fell behind first).
MEASURE_BATCH = 32


class LevelsService:
    """The levels service: subscriptions, queues, workers and counters."""

    def __init__(
        self,
        settings: LevelsSettings,
        mqtt: MqttSettings,
        registry: DeviceRegistry,
        outbox: Outbox | None = None,
    ) -> None:
        cal, uncalibrated = settings.default_calibration()
        self.settings = settings
        self.core = LevelsCore(
            registry=registry,
            summary_seconds=settings.summary_seconds,
            indices_seconds=settings.indices_seconds,
            indices_min_coverage=settings.indices_min_coverage,
            default_calibration=cal,
            default_uncalibrated=uncalibrated,
            default_threshold_db=settings.noise_threshold_db,
            max_devices=settings.max_devices,
        )
        self.linker = EventLinker(
            min_seconds=settings.event_min_seconds,
            wait=settings.event_labels_wait,
            classes=settings.event_classes,
            history_size=settings.label_history,
            max_devices=settings.max_devices,
        )
        self.stats: Counter[str] = Counter()
        self.shard = settings.device_shard
        prefix = mqtt.topic_prefix
        self.prefix = prefix
        self.bus = MqttBus(
            mqtt,
            node=settings.node_id,
            service="levels",
            subscriptions=[
                Subscription(AudioChunk.subscription(prefix), 0),
                Subscription(LabelsResult.subscription(prefix), 1),
            ],
            handler=self.handle,
            counters=self.counters,
            durable_outbox=outbox,
        )
        self.chunks: asyncio.Queue[tuple[AudioChunk, float]] = asyncio.Queue(settings.queue_size)
        self.queued_bytes = 0  # PCM bytes in `chunks`
        self.max_queued_bytes = int(settings.queue_megabytes * 1e6)
        self.jobs: asyncio.Queue[IndicesJob] = asyncio.Queue(INDICES_QUEUE)
        self.gaps = GapCollector(settings.node_id)
        store = open_store(settings.state_dir, settings.node_id)
        if store is not None:
            self.core.streams.restore(store.load(), time.time())
        self.positions = PositionSaver(store)
        self.metrics = ServiceMetrics("levels", settings.node_id)
        self.metrics.queue("chunks", self.chunks.qsize)
        self.metrics.queue("indices", self.jobs.qsize)
        self.latency = self.metrics.histogram("soundscape_result_latency_seconds")

    def counters(self) -> dict[str, int]:
        """Counters for the retained status."""
        return {
            **self.stats,
            "devices": self.core.devices,
            "queued": self.chunks.qsize(),
            "outbox": self.bus.pending,
        }

    # --- incoming -----------------------------------------------------------------------------
    def reject(self, topic: str, reason: str) -> None:
        """Log and count a message that cannot be used."""
        self.stats["rejected"] += 1
        log.warning("rejected message on %s: %s", topic, reason)

    async def handle(self, msg: Incoming) -> None:
        """Dispatch one incoming message; never raises for a bad payload. Another shard's
        device is skipped from its topic alone, before its payload is decoded."""
        if not self.shard.owns_topic(msg.topic, self.prefix):
            self.stats["other_shards"] += 1
            return
        try:
            if msg.topic.endswith("/" + AudioChunk.LEAF):
                chunk = AudioChunk.from_mqtt(self.prefix, msg.topic, msg.payload, msg.content_type)
                if chunk.seconds > self.settings.max_chunk_seconds:
                    raise MessageError(
                        f"chunk of {chunk.seconds:g} s is longer than max_chunk_seconds="
                        f"{self.settings.max_chunk_seconds:g}"
                    )
                self._enqueue(chunk)
            elif msg.topic.endswith("/" + LabelsResult.LEAF):
                labels = LabelsResult.from_mqtt(
                    self.prefix, msg.topic, msg.payload, msg.content_type
                )
                self.stats["labels"] += 1
                self.linker.on_labels(labels)
                self._publish_events(self.linker.due(time.monotonic()))
            else:
                self.reject(msg.topic, "not an audio or labels topic")
        except MessageError as exc:
            self.reject(msg.topic, str(exc))

    def _enqueue(self, chunk: AudioChunk) -> None:
        size = len(chunk.pcm)
        try:
            if self.queued_bytes + size > self.max_queued_bytes and not self.chunks.empty():
                raise asyncio.QueueFull
            self.chunks.put_nowait((chunk, time.monotonic()))
        except asyncio.QueueFull:
            self.stats["dropped"] += 1
            self._lost(Lost(chunk.device, chunk.start, chunk.end, "levels_overload", 1))
            self.core.streams.skip(chunk.device, chunk.seq)
            if self.stats["dropped"] % 100 == 1:
                log.warning(
                    "measurement queue full (%d chunks, %.1f MB): dropped %d chunks so far",
                    self.chunks.qsize(),
                    self.queued_bytes / 1e6,
                    self.stats["dropped"],
                )
        else:
            self.queued_bytes += size

    # --- outgoing -----------------------------------------------------------------------------
    def _publish(self, msg: Message, counter: str) -> None:
        self.bus.publish(msg)
        self.stats[counter] += 1

    def _lost(self, lost: Lost) -> None:
        self._publish_gaps(self.gaps.add(lost, time.monotonic()))

    def _publish_gaps(self, reports: Sequence[Message]) -> None:
        for report in reports:
            self._publish(report, "gap_reports")

    def _publish_events(self, events: Sequence[Message]) -> None:
        for ev in events:
            self._publish(ev, "events")

    def _publish_output(self, out: ChunkOutput, now: float) -> None:
        if out.lost is not None:
            self._lost(out.lost)
        self._publish(out.levels, "levels")
        lv = out.levels
        self.latency.observe(max(0.0, time.time() - lv.end))
        if out.late:  # measured on its own; the stream's intervals and events go on without it
            self.stats["late_chunks"] += 1
            log.debug("late chunk of %s: seq %d at %.3f", lv.device, lv.seq, lv.start)
            return
        self.linker.on_level(
            lv.device,
            lv.seq,
            lv.start,
            lv.duration,
            lv.laeq_db if lv.laeq_db is not None else lv.leq_db,
            out.lafmax_db,
            out.threshold_db,
            out.continuous,
            now,
        )
        for summary in out.summaries:
            self._publish(summary, "summaries")
        self._queue_jobs(out.jobs)

    def _publish_flushed(self, flushed: list[Flushed], now: float, jobs: bool = True) -> None:
        for item in flushed:
            self.linker.close(item.device, now)
            for summary in item.summaries:
                self._publish(summary, "summaries")
            if jobs:
                self._queue_jobs(item.jobs)

    def _queue_jobs(self, jobs: list[IndicesJob]) -> None:
        for job in jobs:
            try:
                self.jobs.put_nowait(job)
            except asyncio.QueueFull:
                self.stats["indices_dropped"] += 1
                log.warning(
                    "indices queue full: dropped the window of %s at %.0f", job.device, job.start
                )

    # --- workers ------------------------------------------------------------------------------
    async def _offload(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a thread; if cancelled meanwhile, let it finish before re-raising."""
        task = asyncio.ensure_future(asyncio.to_thread(fn))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
            raise

    async def _measure_chunks(self, items: list[tuple[AudioChunk, float]]) -> None:
        """Measure the waiting chunks in one trip to the worker thread and publish what they
        give in one outbox commit (not one commit and one thread hand-off per chunk)."""
        outcomes = await self._offload(functools.partial(self.core.process_all, items))
        now = time.monotonic()
        with self.bus.batch():  # these chunks' results are on disk before the next are measured
            for (chunk, _), outcome in zip(items, outcomes, strict=True):
                if outcome is None:
                    self.stats["duplicates"] += 1
                    log.debug(
                        "dropped a repeated chunk of %s: seq %d at %.3f",
                        chunk.device,
                        chunk.seq,
                        chunk.start,
                    )
                elif isinstance(outcome, MessageError):
                    self.reject(AudioChunk.topic_for(self.prefix, chunk.device), str(outcome))
                else:
                    self.stats["chunks"] += 1
                    self._publish_output(outcome, now)

    async def _measure_chunk(self, chunk: AudioChunk, received: float) -> None:
        """Measure one chunk and publish what it gives."""
        await self._measure_chunks([(chunk, received)])

    async def measure(self) -> None:
        """Measure chunks in arrival order; publish levels, summaries and due noise events."""
        last_tick = time.monotonic()
        try:
            while True:
                items: list[tuple[AudioChunk, float]] = []
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK):
                        items.append(await self.chunks.get())
                while items and len(items) < MEASURE_BATCH and not self.chunks.empty():
                    items.append(self.chunks.get_nowait())
                if items:
                    self.queued_bytes -= sum(len(chunk.pcm) for chunk, _ in items)
                    await self._measure_chunks(items)
                now = time.monotonic()
                if now - last_tick >= TICK:
                    last_tick = now
                    idle = self.core.flush_idle(now, self.settings.idle_seconds)
                    with self.bus.batch():
                        self._publish_flushed(idle, now)
                        self._publish_gaps(self.gaps.due(now))
                    self.positions.maybe_save(self.core.streams, now)
                self._publish_events(self.linker.due(now))
        except asyncio.CancelledError:
            # Shutdown: what was measured is published (partial intervals show their coverage);
            # open indices windows are dropped, computing them would delay the exit.
            now = time.monotonic()
            with self.bus.batch():
                self._publish_flushed(self.core.flush_all(), now, jobs=False)
                self._publish_events(self.linker.flush(now))
                self._publish_gaps(self.gaps.flush())
            self.positions.save_all(self.core.streams)
            self.positions.close()
            raise

    async def indices(self) -> None:
        """Compute the acoustic indices of completed windows, one at a time, off the loop."""
        while True:
            job = await self.jobs.get()
            try:
                result = await self._offload(functools.partial(compute, job))
            except (ValueError, ArithmeticError, IndexError) as exc:
                self.stats["indices_failed"] += 1
                log.warning("indices of %s at %.0f failed: %s", job.device, job.start, exc)
                continue
            if result is None:
                self.stats["indices_skipped"] += 1
            else:
                self._publish(result, "indices")

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM."""
        await serve(self.bus, self.measure(), self.indices(), metrics=self.metrics)


async def run(
    settings: LevelsSettings,
    mqtt: MqttSettings,
    registry: DeviceRegistry,
    outbox: Outbox | None = None,
) -> None:
    """Build the service inside the running loop and serve."""
    await LevelsService(settings, mqtt, registry, outbox).run()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `soundscape levels`."""
    parser = argparse.ArgumentParser(
        prog="soundscape levels",
        description="Calibrated sound levels, Fast-weighted statistics, acoustic indices and "
        "noise events from the audio topics. Settings: SOUNDSCAPE_LEVELS_* (docs/levels.md).",
    )
    parser.add_argument("--summary-seconds", type=float, help="LAeq/L10/L50/L90 interval, s")
    parser.add_argument("--indices-seconds", type=float, help="acoustic-indices window, s")
    parser.add_argument("--event-min-seconds", type=float, help="shortest noise event, s")
    parser.add_argument("--node-id", help="node id of the retained status")
    parser.add_argument("--devices-file", type=Path, help="TOML device registry")
    parser.add_argument("--shard", type=int, help="this worker's shard, 0 .. shards-1")
    parser.add_argument("--shards", type=int, help="levels workers splitting the devices")
    args = parser.parse_args(argv)
    overrides = {
        k: v
        for k, v in (
            ("summary_seconds", args.summary_seconds),
            ("indices_seconds", args.indices_seconds),
            ("event_min_seconds", args.event_min_seconds),
            ("node_id", args.node_id),
            ("shard", args.shard),
            ("shards", args.shards),
        )
        if v is not None
    }
    try:
        settings = LevelsSettings(**overrides)
        mqtt = MqttSettings()
        reg = RegistrySettings()
        registry = DeviceRegistry.load(args.devices_file or reg.devices_file)
    except (ValidationError, ConfigError) as exc:
        print(f"soundscape levels: {exc}", file=sys.stderr)
        return 2
    setup_logging()
    if not keep_freed_memory():
        log.info("levels: this C library keeps no freed memory for reuse; measuring is slower")
    try:
        outbox = open_outbox(
            settings.state_dir, settings.node_id, settings.outbox_megabytes, "levels"
        )
    except (OSError, sqlite3.Error) as exc:
        log.error("cannot open the result outbox in %s: %s", settings.state_dir, exc)
        return 2
    log.info(
        "levels: summary %gs, indices %gs, %d devices in the registry, shard %s",
        settings.summary_seconds,
        settings.indices_seconds,
        len(registry.devices),
        settings.device_shard,
    )
    try:
        asyncio.run(run(settings, mqtt, registry, outbox))
    finally:
        outbox.close()
    return 0
