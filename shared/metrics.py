"""Prometheus `/metrics` for every service (prometheus-client), off until a port is set.

One source of truth: the counters a service already puts in its retained status are read
from the same function when Prometheus scrapes (`soundscape_status_counter_total{name=...}`
and, for the few that are levels rather than counts, `soundscape_status_level{name=...}`).
Beside them: queue depths (callbacks read at scrape time) and a few histograms that no
status can carry (inference time per batch, chunk-end-to-publish latency, ingest syncs).

Every metric family is declared once, in `FAMILIES`; `python -m shared.metrics_doc` renders
the table in docs/metrics.md from it, and a service cannot create a histogram that is not
declared there. Each service has its own registry (`ServiceMetrics`), so two services in one
process (tests) never mix their numbers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages import Status, WindowMessage

if TYPE_CHECKING:
    from shared.mqtt import MqttBus

log = logging.getLogger(__name__)

# `_created` series double every histogram's families for a value nobody graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Status counters that are levels (they go up and down), exposed as gauges.
LEVEL_COUNTERS: Final = frozenset(
    {"queued", "outbox", "devices", "spool_depth", "pending", "broker_stored", "targets"}
)
#: Latency buckets, seconds: a live chunk's results take tens of milliseconds; a replayed or
#: backlogged one minutes.
LATENCY_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SIZE_BUCKETS: Final = (1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000)


class MetricsSettings(BaseSettings):
    """The `/metrics` endpoint of a service. Environment prefix `SOUNDSCAPE_METRICS_`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_METRICS_", extra="ignore")

    port: int | None = Field(
        None, ge=1, le=65535, description="TCP port of the Prometheus endpoint; unset or empty: off"
    )
    host: str = Field("0.0.0.0", description="Address the endpoint listens on")

    @field_validator("port", mode="before")
    @classmethod
    def _empty_is_off(cls, value: Any) -> Any:
        return None if value == "" else value


@dataclass(frozen=True)
class Family:
    """One metric family: what docs/metrics.md lists."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    help: str
    services: str
    buckets: tuple[float, ...] = ()


#: Every metric family any service exposes (the exposed name adds `_total`, `_bucket`...).
FAMILIES: Final[dict[str, Family]] = {
    f.name: f
    for f in (
        Family(
            "soundscape_service_info",
            "gauge",
            ("service", "node"),
            "Always 1: which service and node this endpoint belongs to",
            "all",
        ),
        Family(
            "soundscape_state",
            "gauge",
            ("state",),
            "1 for the service's current state (online, degraded, offline), else 0",
            "all",
        ),
        Family(
            "soundscape_status_counter",
            "counter",
            ("name",),
            "Each monotonic counter of the service's retained status, by its name there",
            "all",
        ),
        Family(
            "soundscape_status_level",
            "gauge",
            ("name",),
            "Each status counter that is a level, not a count: "
            + ", ".join(sorted(LEVEL_COUNTERS)),
            "all",
        ),
        Family(
            "soundscape_queue_depth",
            "gauge",
            ("queue",),
            "Items waiting: outbox (every service but ingest), chunks and indices (levels), "
            "windows (inference), spool and deliveries (ingest), notifications (notify)",
            "all",
        ),
        Family(
            "soundscape_inference_batch_seconds",
            "histogram",
            (),
            "Time the classifier took for one batch, seconds",
            "inference",
            DURATION_BUCKETS,
        ),
        Family(
            "soundscape_inference_batch_windows",
            "histogram",
            (),
            "Windows in one classified batch",
            "inference",
            SIZE_BUCKETS,
        ),
        Family(
            "soundscape_result_latency_seconds",
            "histogram",
            (),
            "From the end of a chunk's audio (its start + duration) to its result being queued "
            "for publishing, seconds (levels: levels results; inference: labels)",
            "levels, inference",
            LATENCY_BUCKETS,
        ),
        Family(
            "soundscape_ingest_sync_seconds",
            "histogram",
            (),
            "Duration of one sync of the spool to PostgreSQL, seconds (failed ones too)",
            "ingest",
            DURATION_BUCKETS,
        ),
        Family(
            "soundscape_ingest_sync_results",
            "histogram",
            (),
            "Results moved to PostgreSQL by one sync that moved any",
            "ingest",
            SIZE_BUCKETS,
        ),
        Family(
            "soundscape_notify_send_seconds",
            "histogram",
            (),
            "Time one notification attempt to one Apprise target took, seconds",
            "notify",
            DURATION_BUCKETS,
        ),
    )
}

_STATES: Final = ("online", "degraded", "offline")


class ServiceMetrics:
    """One service's metrics: its own registry, its status, queues and histograms."""

    def __init__(self, service: str, node: str | None = None) -> None:
        self.service = service
        self.node = node or service
        self.registry = CollectorRegistry()
        self._status: Callable[[], Status] | None = None
        self._queues: dict[str, Callable[[], float]] = {}
        self._histograms: dict[str, Histogram] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds

    # --- what is measured -------------------------------------------------------------------
    def status_from(self, status: Callable[[], Status]) -> None:
        """Read the status counters (and state) from `status` at every scrape."""
        self._status = status

    def queue(self, name: str, depth: Callable[[], float]) -> None:
        """Expose `depth()` as `soundscape_queue_depth{queue=name}` at every scrape."""
        self._queues[name] = depth

    def watch_bus(self, bus: MqttBus) -> None:
        """The bus's status (its counters and the service's) and its outbox depth."""
        self.node = bus.node
        self.status_from(lambda: bus.status(bus.health_state, bus.health_detail))
        self.queue("outbox", lambda: bus.pending)

    def histogram(self, name: str) -> Histogram:
        """The histogram `name` (declared in FAMILIES), created on first use."""
        with self._lock:
            found = self._histograms.get(name)
            if found is None:
                family = FAMILIES[name]
                if family.kind != "histogram":
                    raise KeyError(f"{name} is not a histogram")
                found = Histogram(name, family.help, buckets=family.buckets, registry=self.registry)
                self._histograms[name] = found
            return found

    def text(self) -> str:
        """What a scrape returns, as text."""
        return generate_latest(self.registry).decode()

    # --- serving ----------------------------------------------------------------------------
    def start(self, settings: MetricsSettings) -> int | None:
        """Serve `/metrics` on the settings' port (in a thread); the port, or None when off or
        when the port cannot be bound (logged: monitoring never stops a service)."""
        if settings.port is None:
            return None
        try:
            self._server, self._thread = start_http_server(
                settings.port, settings.host, self.registry
            )
        except OSError as exc:
            log.error(
                "%s: cannot serve metrics on %s:%d: %s",
                self.service,
                settings.host,
                settings.port,
                exc,
            )
            return None
        log.info("%s: metrics on http://%s:%d/metrics", self.service, settings.host, settings.port)
        return settings.port

    def start_from_env(self) -> int | None:
        """`start` with the environment's MetricsSettings (a bad value is logged, not fatal)."""
        try:
            settings = MetricsSettings()
        except ValidationError as exc:
            log.error("%s: metrics off: %s", self.service, exc)
            return None
        return self.start(settings)

    def stop(self) -> None:
        """Stop serving (a no-op when not serving)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def observe_batch(
    metrics: ServiceMetrics, seconds: float, results: Sequence[WindowMessage]
) -> None:
    """One classified batch: its time, its size and each result's latency."""
    metrics.histogram("soundscape_inference_batch_seconds").observe(seconds)
    metrics.histogram("soundscape_inference_batch_windows").observe(len(results))
    latency = metrics.histogram("soundscape_result_latency_seconds")
    now = time.time()
    for result in results:
        latency.observe(max(0.0, now - result.end))


def observe_sync(metrics: ServiceMetrics, seconds: float, results: int) -> None:
    """One ingest sync: its duration and, when it moved any, how many results."""
    metrics.histogram("soundscape_ingest_sync_seconds").observe(seconds)
    if results:
        metrics.histogram("soundscape_ingest_sync_results").observe(results)


class _Collector(Collector):
    """The families read at scrape time: info, state, status counters, queue depths."""

    def __init__(self, owner: ServiceMetrics) -> None:
        self.owner = owner

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        return list(self._families(read=True))

    def _families(self, read: bool = False) -> Iterator[Metric]:
        owner = self.owner
        info = GaugeMetricFamily(
            "soundscape_service_info",
            FAMILIES["soundscape_service_info"].help,
            labels=["service", "node"],
        )
        state = GaugeMetricFamily(
            "soundscape_state", FAMILIES["soundscape_state"].help, labels=["state"]
        )
        counters = CounterMetricFamily(
            "soundscape_status_counter",
            FAMILIES["soundscape_status_counter"].help,
            labels=["name"],
        )
        levels = GaugeMetricFamily(
            "soundscape_status_level", FAMILIES["soundscape_status_level"].help, labels=["name"]
        )
        queues = GaugeMetricFamily(
            "soundscape_queue_depth", FAMILIES["soundscape_queue_depth"].help, labels=["queue"]
        )
        if read:
            info.add_metric([owner.service, owner.node], 1.0)
            status = None
            if owner._status is not None:
                try:  # read from the scrape's thread while the service runs
                    status = owner._status()
                except Exception as exc:  # a failed read must not fail the whole scrape
                    log.warning("%s: status unreadable for metrics: %s", owner.service, exc)
            if status is not None:
                for name in _STATES:
                    state.add_metric([name], 1.0 if status.state == name else 0.0)
                for name, value in sorted(status.counters.items()):
                    target = levels if name in LEVEL_COUNTERS else counters
                    target.add_metric([name], float(value))
            for name, depth in sorted(owner._queues.items()):
                try:
                    queues.add_metric([name], float(depth()))
                except Exception as exc:  # one unreadable queue must not fail the scrape
                    log.warning("%s: queue %s unreadable: %s", owner.service, name, exc)
        yield from (info, state, counters, levels, queues)
