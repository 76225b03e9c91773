"""Process lifecycle shared by the asyncio services: logging, signals, one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any

from shared.metrics import ServiceMetrics
from shared.mqtt import MqttBus

log = logging.getLogger(__name__)


def setup_logging(level: str | None = None) -> None:
    """Plain line logging to stderr; level from `SOUNDSCAPE_LOG_LEVEL` (default INFO)."""
    logging.basicConfig(
        level=(level or os.environ.get("SOUNDSCAPE_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def serve(
    bus: MqttBus, *workers: Coroutine[Any, Any, None], metrics: ServiceMetrics | None = None
) -> None:
    """Run the bus and the workers in one TaskGroup until SIGINT/SIGTERM or a worker ends.

    `/metrics` (the bus's status counters and outbox, and whatever the service added to
    `metrics`) is served meanwhile when `SOUNDSCAPE_METRICS_PORT` is set.

    On a signal, or when every worker has returned (a finite file replay), the bus gets the
    chance to flush its outbox and publish `offline` before it is cancelled.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    metrics = metrics or ServiceMetrics(bus.service)
    metrics.watch_bus(bus)
    metrics.start_from_env()

    async def _workers() -> None:
        async with asyncio.TaskGroup() as inner:
            for work in workers:
                inner.create_task(work)

    async with asyncio.TaskGroup() as tg:
        bus_task = tg.create_task(bus.run())
        work_task = tg.create_task(_workers())
        stop_task = tg.create_task(stop.wait())
        await asyncio.wait({work_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if work_task.done() and work_task.exception() is None:
            log.info("%s: work finished, flushing", bus.service)
        work_task.cancel()
        stop_task.cancel()
        finished = work_task.done() and not stop.is_set()
        if finished and not bus.connected.is_set():
            # A finished replay's tail is still queued: give a reconnect a chance to send it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30.0):
                    await bus.connected.wait()
        if bus.connected.is_set():
            await bus.close(wait_s=30.0 if finished else 2.0)
        bus_task.cancel()
    metrics.stop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(sig)
