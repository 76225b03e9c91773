"""Two inference processes on one shared subscription split the audio: one result per chunk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from shared.mqtt import MqttBus
from shared.settings import MqttSettings
from tests.inference.helpers import chunk
from tests.inference.test_service import Listener
from tests.support.audio import tone
from tests.support.servers import process

pytestmark = pytest.mark.integration

DEVICES = ("yor", "pi2", "pi3", "pi4")
CHUNKS_PER_DEVICE = 10


async def test_two_workers_share_the_audio(
    mqtt_settings: MqttSettings, tiny_ast: Path, tmp_path: Path
) -> None:
    env = dict(
        os.environ,
        SOUNDSCAPE_MQTT_HOST="127.0.0.1",
        SOUNDSCAPE_MQTT_PORT=str(mqtt_settings.port),
        SOUNDSCAPE_MQTT_TOPIC_PREFIX=mqtt_settings.topic_prefix,
        SOUNDSCAPE_MQTT_STATUS_INTERVAL="0.5",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    workers = ("worker-a", "worker-b")
    listener = Listener(mqtt_settings)
    sensor = MqttBus(mqtt_settings, "sensor", "test")
    with contextlib.ExitStack() as stack:
        for node in workers:
            cmd = [
                sys.executable,
                "-m",
                "services.inference",
                "--model",
                str(tiny_ast),
                "--node-id",
                node,
                "--threads",
                "1",
                "--top-k",
                "3",
            ]
            stack.enter_context(process(cmd, env, tmp_path / f"{node}.log"))
        tasks = [asyncio.create_task(listener.bus.run()), asyncio.create_task(sensor.run())]
        try:
            await listener.until(
                "both online",
                lambda: all(
                    n in listener.statuses and listener.statuses[n].state == "online"
                    for n in workers
                ),
                wait_s=90,
            )
            for seq in range(CHUNKS_PER_DEVICE):
                for device in DEVICES:
                    sensor.publish(chunk(device, seq, tone(200 + 100 * seq, 1.0)))
                await asyncio.sleep(0.02)
            total = len(DEVICES) * CHUNKS_PER_DEVICE
            await listener.until("all results", lambda: len(listener.results) >= total, 60)

            def settled() -> bool:
                return (
                    sum(listener.statuses[n].counters.get("results", 0) for n in workers) >= total
                )

            await listener.until("worker counters", settled, 10)
            await asyncio.sleep(0.5)  # a duplicate would arrive by now
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    logs = {n: (tmp_path / f"{n}.log").read_text() for n in workers}
    per_key = Counter((r.device, r.seq) for r in listener.results)
    expected = {(d, s) for d in DEVICES for s in range(CHUNKS_PER_DEVICE)}
    assert set(per_key) == expected, logs
    assert set(per_key.values()) == {1}, "a chunk was classified twice"
    assert {r.model for r in listener.results} == {str(tiny_ast)}
    results = {n: listener.statuses[n].counters.get("results", 0) for n in workers}
    assert all(count > 0 for count in results.values()), results  # both did work
    assert sum(results.values()) == len(expected)
    for n in workers:
        assert listener.statuses[n].counters.get("dropped", 0) == 0
