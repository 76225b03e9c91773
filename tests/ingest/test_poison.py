"""A message that makes ingest's own code fail is logged, counted and acknowledged: it can
never stop ingest, nor come back after a restart to stop it again (a crash loop)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.ingest.core import Rejection, Result, Triage
from services.ingest.link import Delivery
from services.ingest.service import Ingest
from services.ingest.settings import IngestSettings
from shared.devices import DeviceRegistry
from shared.settings import MqttSettings
from tests.ingest.helpers import Publisher, count, level, wait_for
from tests.support.retained import clear_retained

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running(s: IngestSettings, mqtt: MqttSettings) -> AsyncIterator[Ingest]:
    stop = asyncio.Event()
    ingest = Ingest(s, mqtt, DeviceRegistry())
    task = asyncio.create_task(ingest.run(stop))
    try:
        await asyncio.to_thread(ingest.link.connected.wait, 10)
        assert ingest.link.connected.is_set()
        yield ingest
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.mark.allow_log_exceptions
async def test_a_poison_message_is_counted_acknowledged_and_never_redelivered(
    tmp_path: Path,
    mqtt_settings: MqttSettings,
    database: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_triage = Triage.message

    def triage(
        self: Triage, topic: str, payload: bytes, ctype: str | None, now: float
    ) -> Result | Rejection:
        if payload == b"poison-triage":
            raise RecursionError("a bug deep in triage")
        return real_triage(self, topic, payload, ctype, now)

    monkeypatch.setattr(Triage, "message", triage)
    settings = IngestSettings(
        database_url=database,
        sync_interval=0.3,
        spool=tmp_path / "spool.sqlite3",
        client_id=f"test-poison-{uuid.uuid4().hex[:8]}",
        node_id="test-poison",
    )
    pub = await asyncio.to_thread(Publisher, mqtt_settings.port, prefix, f"pub-{uuid.uuid4()}")
    topic = f"{prefix}/yor/levels"
    try:
        async with running(settings, mqtt_settings) as ingest:
            handover = ingest.link._on_delivery

            def fragile(delivery: Delivery) -> None:
                if delivery.payload == b"poison-link":
                    raise MemoryError("could not hand it over")
                handover(delivery)

            ingest.link._on_delivery = fragile
            for payload in (b"poison-triage", b"poison-link", level(1).encode()):
                await asyncio.to_thread(pub.raw, topic, payload)
            await asyncio.to_thread(
                wait_for, "the valid result stored", lambda: count(database, "levels") == 1
            )
            await asyncio.to_thread(
                wait_for, "both acknowledged", lambda: ingest.stats.snapshot().get("acked") == 2
            )
            counters = ingest.status("online").counters
            assert counters["rejected"] == counters["rejected_error"] == 1
            assert counters["receive_errors"] == 1
        # The same session again: nothing comes back, both poisons were acknowledged.
        async with running(settings, mqtt_settings) as again:
            await asyncio.sleep(1.5)
            assert again.stats.snapshot().get("received", 0) == 0
            assert again.link.receive_errors == 0
        assert count(database, "levels") == 1
    finally:
        await asyncio.to_thread(pub.close)
        await asyncio.to_thread(clear_retained, mqtt_settings.port, prefix)
