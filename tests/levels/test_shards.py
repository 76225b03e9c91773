"""Two levels shards on the real broker: together they measure every device exactly once,
and neither measures (or even decodes) the other's devices."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from services.levels.app import LevelsService
from services.levels.settings import LevelsSettings
from shared.devices import DeviceRegistry
from shared.messages import AudioChunk, LevelsResult
from shared.mqtt import MqttBus
from shared.settings import MqttSettings
from shared.shard import shard_of
from tests.levels.test_service import Reader, running
from tests.test_publishing import wait_until

pytestmark = pytest.mark.integration
T0 = 1_764_399_960.0
RATE = 16000
DEVICES = [f"sim-{i:04d}" for i in range(1, 13)]
SECONDS = 3


@contextlib.asynccontextmanager
async def shards(mqtt: MqttSettings) -> AsyncIterator[list[LevelsService]]:
    services = [
        LevelsService(
            LevelsSettings(node_id=f"levels-{i}", shard=i, shards=2), mqtt, DeviceRegistry()
        )
        for i in range(2)
    ]
    tasks = [asyncio.create_task(svc.run()) for svc in services]
    try:
        async with asyncio.timeout(10):
            for svc in services:
                await svc.bus.connected.wait()
        yield services
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_a_shard_setting_outside_the_count_is_refused() -> None:
    with pytest.raises(ValueError, match="not below"):
        LevelsSettings(node_id="x", shard=2, shards=2)


async def test_two_shards_measure_every_device_exactly_once(mqtt_settings: MqttSettings) -> None:
    reader = Reader(mqtt_settings)
    writer = MqttBus(mqtt_settings, "sim", "test")
    owners = {d: shard_of(d, 2) for d in DEVICES}
    assert set(owners.values()) == {0, 1}  # both shards own some of these devices
    async with running(reader.bus, writer), shards(mqtt_settings) as (first, second):
        for seq in range(SECONDS):
            for i, device in enumerate(DEVICES):
                pcm = bytes([i % 7, 0]) * RATE  # a different constant for each device
                writer.publish(
                    AudioChunk(
                        device=device,
                        seq=seq,
                        start=T0 + seq,
                        rate=RATE,
                        width=2,
                        channels=1,
                        pcm=pcm,
                    )
                )
        await reader.wait_for(
            lambda: len(reader.of(LevelsResult)) >= len(DEVICES) * SECONDS, within=20
        )
        # Each shard's last skips of the other's chunks may come after every result is out.
        await wait_until(
            "every chunk counted by both shards",
            lambda: all(
                svc.stats["chunks"] + svc.stats["other_shards"] == len(DEVICES) * SECONDS
                for svc in (first, second)
            ),
        )
    measured = Counter((lv.device, lv.seq) for lv in reader.of(LevelsResult))
    assert measured == Counter({(d, s): 1 for d in DEVICES for s in range(SECONDS)})
    for index, svc in enumerate((first, second)):
        mine = [d for d, o in owners.items() if o == index]
        assert svc.stats["chunks"] == len(mine) * SECONDS
        # every other chunk was skipped from its topic, never decoded or rejected
        assert svc.stats["other_shards"] == (len(DEVICES) - len(mine)) * SECONDS
        assert svc.stats["rejected"] == 0
