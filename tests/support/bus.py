"""A running `MqttBus` for tests: connected before the block, cancelled after it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from shared.mqtt import MqttBus


@contextlib.asynccontextmanager
async def running(bus: MqttBus, connect_s: float = 10.0) -> AsyncIterator[MqttBus]:
    """Run `bus` in this event loop; yield once it is connected; cancel it on exit."""
    task = asyncio.create_task(bus.run())
    try:
        async with asyncio.timeout(connect_s):
            await bus.connected.wait()
        yield bus
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
