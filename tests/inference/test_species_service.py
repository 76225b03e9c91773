"""Species end to end: 48 kHz chunks of a generated Great Tit song go through the broker to a
BirdNET inference worker, its species results through the broker to ingest, into PostgreSQL
(stored once, even when delivered twice)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from services.inference.backends.birdnet import BirdNet, SpeciesOptions
from services.inference.service import wire
from services.inference.settings import InferenceSettings
from services.ingest.service import Ingest
from services.ingest.settings import IngestSettings
from shared.devices import DeviceRegistry
from shared.messages import SpeciesResult
from shared.mqtt import Incoming, MqttBus, Subscription
from shared.settings import MqttSettings
from tests.inference.helpers import chunk
from tests.ingest.helpers import rows, wait_for
from tests.support.birdsong import great_tit_song

pytestmark = pytest.mark.integration

RATE = 48_000
REGISTRY = '[[device]]\nid = "yor"\nlatitude = 53.959\nlongitude = -1.081\n'


@contextlib.asynccontextmanager
async def tasks(*coros: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    running = [asyncio.create_task(c) for c in coros]
    try:
        yield
    finally:
        for t in running:
            t.cancel()
        for t in running:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def test_species_go_from_audio_to_postgresql_once(
    birdnet_dir: Path, tmp_path: Path, mqtt_settings: MqttSettings, database: str
) -> None:
    registry = DeviceRegistry.parse(REGISTRY)
    model = BirdNet.from_folder(birdnet_dir, 1, SpeciesOptions(), registry)
    settings = InferenceSettings(
        backend="birdnet", node_id="test-birdnet", threads=1, max_wait_ms=100
    )
    assert settings.share_group == "birdnet" and settings.window_seconds == 3.0
    bus, service = wire(settings, mqtt_settings, model)
    prefix = mqtt_settings.topic_prefix
    heard: list[SpeciesResult] = []

    async def collect(msg: Incoming) -> None:
        heard.append(SpeciesResult.from_mqtt(prefix, msg.topic, msg.payload, msg.content_type))

    listener = MqttBus(
        mqtt_settings,
        "listener",
        "test",
        subscriptions=[Subscription(SpeciesResult.subscription(prefix), 1)],
        handler=collect,
    )
    sensor = MqttBus(mqtt_settings, "sensor", "test")
    ingest_settings = IngestSettings(
        database_url=database,
        sync_interval=0.3,
        spool=tmp_path / "spool.sqlite3",
        client_id=f"test-ingest-{uuid.uuid4().hex[:8]}",
        node_id="test-ingest",
    )
    ingest = Ingest(ingest_settings, mqtt_settings, registry)
    stop = asyncio.Event()
    song = great_tit_song(3.0, RATE)
    silence = np.zeros(3 * RATE, np.float32)
    audio = np.concatenate([song, silence])
    async with tasks(bus.run(), service.work(), listener.run(), sensor.run(), ingest.run(stop)):
        async with asyncio.timeout(15):
            for b in (bus, listener, sensor):
                await b.connected.wait()
        await asyncio.to_thread(ingest.link.connected.wait, 10)
        for seq in range(6):
            sensor.publish(chunk("yor", seq, audio[seq * RATE : (seq + 1) * RATE], RATE))
        await asyncio.to_thread(wait_for, "species stored", lambda: _stored(database) > 0, 30.0)
        assert len(heard) == 1  # the silent window published nothing
        sensor.publish(heard[0])  # delivered twice: stored once
        await asyncio.sleep(1.0)
        stop.set()
    result = heard[0]
    assert result.model == "BirdNET_GLOBAL_6K_V2.4" and result.location_filtered
    stored = rows(
        database,
        "SELECT scientific_name, common_name, score, rank, extract(epoch FROM window_start), "
        "window_duration, model FROM species ORDER BY rank",
    )
    assert [r[0] for r in stored] == [d.scientific_name for d in result.detections]
    assert ("Parus major", "Great Tit") in [(r[0], r[1]) for r in stored]
    assert [r[3] for r in stored] == list(range(1, len(stored) + 1))
    assert float(str(stored[0][4])) == pytest.approx(result.start) and stored[0][5] == 3.0
    assert stored[0][2] == pytest.approx(result.detections[0].score, rel=1e-6)


def _stored(dsn: str) -> int:
    try:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM species").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0]) if row else 0
