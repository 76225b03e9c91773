"""The I/O adapter of inference: MQTT audio in, micro-batches on a model thread, labels out.

The event loop only decodes chunks and queues windows; the model runs on one dedicated
thread (torch and ONNX Runtime release the GIL and use their own intra-op threads), so the
MQTT connection stays responsive while a batch is classified.

What inference loses is published as `GapReport`s: windows dropped on overload
(`inference_overload`) or in a failed batch (`inference_failed`) and, when it is the sole
worker for its devices, chunks that never arrived (`audio_missing`) and, after a restart, what
arrived while it was down (`service_down`, from the positions saved in
`state_dir/<node>-streams.sqlite3` at most once a second and at shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from services.inference.core import (
    LabelOptions,
    RecentDevices,
    ResultsBackend,
    Window,
    WindowAssembler,
    WindowQueue,
    batch_ready,
    classify,
    queue_limit,
    speech_indices,
)
from services.inference.settings import InferenceSettings
from shared.continuity import GapCollector, Lost
from shared.contracts import Classifier, Publisher
from shared.errors import MessageError
from shared.messages import AudioChunk, GapCause, GapReport, WindowMessage
from shared.metrics import ServiceMetrics, observe_batch
from shared.mqtt import Incoming, MqttBus, Subscription
from shared.outbox import Outbox
from shared.settings import MqttSettings
from shared.streamstore import PositionSaver, open_store

log = logging.getLogger(__name__)

#: Seconds between two warnings about dropped windows or failed batches (each is counted
#: regardless); also how long after the last drop the status stays `degraded`.
DROP_LOG_INTERVAL = 10.0

#: Seconds between two looks at finished gap reports and changed stream positions.
TICK = 1.0

#: Sets the service's health in its retained status: (state, detail).
Health = Callable[[str, str | None], None]


def audio_subscriptions(settings: InferenceSettings, prefix: str) -> list[Subscription]:
    """The audio topic filters: every device or the listed ones, shared or not (QoS 0)."""
    devices: list[str | None] = list(settings.devices) or [None]
    filters = [AudioChunk.subscription(prefix, device) for device in devices]
    if settings.shared_subscription:
        filters = [f"$share/{settings.share_group}/{f}" for f in filters]
    return [Subscription(f, 0) for f in filters]


class InferenceService:
    """Windows from incoming chunks, micro-batches to the classifier, results to `publisher`.

    Build it inside the running event loop.
    """

    def __init__(
        self,
        settings: InferenceSettings,
        classifier: Classifier,
        prefix: str,
        publisher: Publisher | None = None,
        health: Health | None = None,
    ):
        self.settings = settings
        self.health = health
        self.classifier = classifier
        self.prefix = prefix
        self.publisher = publisher
        self.assembler = WindowAssembler(
            settings.window_seconds, settings.hop, settings.max_devices, settings.sole_worker
        )
        self.gaps = GapCollector(settings.node_id)
        store = open_store(settings.state_dir, settings.node_id) if settings.sole_worker else None
        if store is not None:
            self.assembler.streams.restore(store.load(), time.time())
        self.positions = PositionSaver(store)
        self.recent = RecentDevices()
        self.queue = WindowQueue(self._queue_limit())
        self.options = LabelOptions(
            model_id=classifier.model_id,
            top_k=settings.top_k,
            speech_indices=tuple(speech_indices(classifier.labels, settings.speech_labels)),
            speech_threshold=settings.speech_threshold,
        )
        #: Batch -> results: the backend's own (species), or labels from its scores.
        self._results: Callable[[list[Window]], Sequence[WindowMessage]] = (
            classifier.results
            if isinstance(classifier, ResultsBackend)
            else partial(classify, classifier, options=self.options)
        )
        if not self.options.speech_indices and not isinstance(classifier, ResultsBackend):
            log.warning(
                "%s has none of the speech labels: speech_present stays unset",
                classifier.model_id,
            )
        self.stats: Counter[str] = Counter()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inference-model")
        self._last_drop_log = float("-inf")
        self._drops_logged = 0
        self._last_drop = float("-inf")
        self._last_fail_log = float("-inf")
        self._failing = False
        self.metrics = ServiceMetrics("inference", settings.node_id)
        self.metrics.queue("windows", lambda: len(self.queue))

    # --- input ------------------------------------------------------------------------------
    async def handle(self, msg: Incoming) -> None:
        """Decode one audio message and queue the windows it completes; reject bad input."""
        try:
            chunk = AudioChunk.from_mqtt(self.prefix, msg.topic, msg.payload, msg.content_type)
        except MessageError as exc:
            self.stats["rejected"] += 1
            log.warning("rejected audio on %s: %s", msg.topic, exc)
            return
        self.stats["chunks"] += 1
        now = time.monotonic()
        known = chunk.device in self.recent
        self.recent.seen(chunk.device, now)
        if not known:
            self.queue.resize(self._queue_limit())  # one more device: grows, drops nothing
        for window in self.assembler.add(chunk):
            self.stats["windows"] += 1
            dropped = self.queue.put(window, now)
            if dropped is not None:
                self._log_drop(now)
                self._lost([_window_lost(dropped, "inference_overload")])
        self._lost(self.assembler.take_lost())
        self._arrived.set()

    def _queue_limit(self) -> int:
        """The queue's bound: `queue_seconds` of windows for each device heard lately."""
        return queue_limit(self.settings.queue_seconds, self.settings.hop, len(self.recent))

    def _resize_queue(self, now: float) -> None:
        """Fit the queue to the devices heard lately (a fleet that shrank frees memory)."""
        self.recent.prune(now)
        dropped = self.queue.resize(self._queue_limit())
        if dropped:
            self._log_drop(now)
            self._lost([_window_lost(w, "inference_overload") for w in dropped])

    def _lost(self, losses: list[Lost]) -> None:
        if losses:
            self._publish_gaps(self.gaps.add_all(losses, time.monotonic()))

    def _publish_gaps(self, reports: list[GapReport]) -> None:
        for report in reports:
            if self.publisher is not None:
                self.publisher.publish(report)
            self.stats["gap_reports"] += 1

    async def _tick(self) -> None:
        """Publish finished gap reports and save changed stream positions, every TICK."""
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self._resize_queue(now)
            self._publish_gaps(self.gaps.due(now))
            self.positions.maybe_save(self.assembler.streams, now)

    def _log_drop(self, now: float) -> None:
        self._last_drop = now
        if not self._failing:
            self._set_health("degraded", "overloaded: dropping the oldest waiting windows")
        if now - self._last_drop_log >= DROP_LOG_INTERVAL:
            log.warning(
                "overloaded: dropped %d waiting windows so far (%d since the last warning); "
                "queue of %d full",
                self.queue.dropped,
                self.queue.dropped - self._drops_logged,
                self.queue.maxlen,
            )
            self._last_drop_log = now
            self._drops_logged = self.queue.dropped

    # --- classification ---------------------------------------------------------------------
    async def _next_batch(self) -> list[Window]:
        wait_s = self.settings.max_wait_ms / 1000.0
        while True:
            now = time.monotonic()
            oldest = self.queue.oldest_since()
            if batch_ready(
                len(self.queue),
                oldest,
                now,
                self.settings.batch_size,
                wait_s,
                self.queue.maxlen,
            ):
                return self.queue.take(self.settings.batch_size)
            self._arrived.clear()
            timeout = None if oldest is None else max(0.0, oldest + wait_s - now)
            with contextlib.suppress(TimeoutError):  # the oldest has waited long enough
                async with asyncio.timeout(timeout):
                    await self._arrived.wait()

    async def work(self) -> None:
        """Classify batches until cancelled; publish one result per window."""
        loop = asyncio.get_running_loop()
        ticker = asyncio.create_task(self._tick())
        try:
            while True:
                batch = await self._next_batch()
                began = time.monotonic()
                try:
                    results = await loop.run_in_executor(self._executor, self._results, batch)
                except Exception as exc:  # a model failure must not stop the service
                    self._failed(len(batch), exc)
                    self._lost([_window_lost(w, "inference_failed") for w in batch])
                    continue
                self._succeeded()
                self.stats["batches"] += 1
                observe_batch(self.metrics, time.monotonic() - began, results)
                if self.publisher is not None:
                    with self.publisher.batch():  # one commit to the outbox per batch
                        for result in results:
                            self.publisher.publish(result)
                self.stats["results"] += len(results)
        finally:
            ticker.cancel()
            self._publish_gaps(self.gaps.flush())
            self.positions.save_all(self.assembler.streams)
            self.positions.close()
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _failed(self, windows: int, exc: Exception) -> None:
        """Count and report a failed batch: logged (the first with its traceback, then at
        most every DROP_LOG_INTERVAL s) and the status `degraded` with the reason."""
        first = not self.stats["failed"]
        self.stats["failed"] += windows
        now = time.monotonic()
        if first or now - self._last_fail_log >= DROP_LOG_INTERVAL:
            log.error(
                "classifying %d windows failed (%d windows so far): %s",
                windows,
                self.stats["failed"],
                exc,
                exc_info=first,
            )
            self._last_fail_log = now
        self._failing = True
        reason = str(exc).strip().splitlines()
        self._set_health(
            "degraded",
            f"classification failed: {type(exc).__name__}: {reason[0] if reason else ''}",
        )

    def _succeeded(self) -> None:
        """A batch went through: back to `online`, unless windows were dropped lately."""
        self._failing = False
        if time.monotonic() - self._last_drop < DROP_LOG_INTERVAL:
            self._set_health("degraded", "overloaded: dropping the oldest waiting windows")
        else:
            self._set_health("online", None)

    def _set_health(self, state: str, detail: str | None) -> None:
        if self.health is not None:
            self.health(state, detail)

    # --- status -----------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """Monotonic counters for the retained status."""
        out = dict(self.stats)
        out.update(self.assembler.counters)
        out["dropped"] = self.queue.dropped
        out["queue_limit"] = self.queue.maxlen
        return out


def _window_lost(window: Window, cause: GapCause) -> Lost:
    return Lost(window.device, window.start, window.start + window.duration, cause, 1)


def wire(
    settings: InferenceSettings,
    mqtt: MqttSettings,
    classifier: Classifier,
    outbox: Outbox | None = None,
) -> tuple[MqttBus, InferenceService]:
    """The bus (subscribed to audio) and the service, connected to each other; results wait
    in `outbox` (durable) until the broker acknowledged them, when given.

    Call inside the running loop; then run `bus.run()` and `service.work()`.
    """
    bus = MqttBus(
        mqtt,
        settings.node_id,
        "inference",
        subscriptions=audio_subscriptions(settings, mqtt.topic_prefix),
        durable_outbox=outbox,
    )
    service = InferenceService(settings, classifier, mqtt.topic_prefix, bus, bus.set_health)
    bus.handler = service.handle
    bus.counters = lambda: {**service.counters(), "outbox": bus.pending}
    return bus, service
