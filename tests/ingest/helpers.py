"""Shared pieces of the ingest tests: results, a paho publisher, database checks."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from services.health import fetch_status
from services.ingest.core import Result, Triage
from shared.messages import (
    Calibration,
    GapReport,
    IndicesResult,
    LabelScore,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    Message,
    NoiseEvent,
    WindowMessage,
)
from shared.settings import MqttSettings

T0 = 1_764_400_000.0  # 2025-11-29T07:06:40Z
NOW = T0 + 10_000.0


def level(seq: int, device: str = "yor") -> LevelsResult:
    return LevelsResult(
        device=device,
        seq=seq,
        start=T0 + seq,
        duration=1.0,
        leq_db=50.0 + seq % 30,
        laeq_db=45.0,
        bands={"1000": 40.0, "2000": 38.5},
        calibration=Calibration(),
        uncalibrated=True,
    )


def labels(seq: int, device: str = "yor", k: int = 3) -> LabelsResult:
    names = ["Speech", "Hum", "Bird", "Car", "Wind"][:k]
    return LabelsResult(
        device=device,
        seq=seq,
        start=T0 + seq,
        duration=1.0,
        model="tiny-ast",
        labels=[LabelScore(label=n, score=0.9 - 0.1 * i) for i, n in enumerate(names)],
        speech_present=True,
        inference_ms=12.5,
    )


def summary(seq: int, device: str = "yor") -> LevelsSummary:
    return LevelsSummary(
        device=device,
        seq=seq,
        start=T0 + seq,
        duration=60.0,
        laeq_db=55.0,
        lamax_db=70.0,
        lamin_db=40.0,
        l10_db=60.0,
        l50_db=54.0,
        l90_db=45.0,
        coverage=1.0,
        uncalibrated=False,
    )


def indices(seq: int, device: str = "yor") -> IndicesResult:
    return IndicesResult(
        device=device,
        seq=seq,
        start=T0 + seq,
        duration=60.0,
        aci=150.5,
        adi=2.1,
        aei=0.3,
        bi=5.0,
        ndsi=-0.2,
        ht=0.9,
        hf=0.8,
        events=3,
        coverage=0.75,
    )


def event(seq: int, device: str = "yor") -> NoiseEvent:
    return NoiseEvent(
        device=device,
        seq=seq,
        start=T0 + seq,
        duration=12.0,
        threshold_db=65.0,
        laeq_db=71.0,
        lamax_db=80.5,
        classes=[LabelScore(label="Car", score=0.8)],
    )


def every_kind(seq: int, device: str = "yor") -> list[WindowMessage]:
    makers = (labels, level, summary, indices, event)
    return [make(seq, device) for make in makers]


def as_results(msgs: Iterable[WindowMessage | GapReport], prefix: str = "p") -> list[Result]:
    triage = Triage(prefix)
    out = []
    for msg in msgs:
        verdict = triage.message(msg.topic(prefix), msg.encode(), None, NOW)
        assert isinstance(verdict, Result), verdict
        out.append(verdict)
    return out


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def rows(dsn: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(query.encode(), params).fetchall())


def count(dsn: str, table: str) -> int:
    try:
        got = rows(dsn, f"SELECT count(*) FROM {table}")
    except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
        return -1
    value = got[0][0]
    assert isinstance(value, int)
    return value


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def spool_depth(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.Error:
        return -1


def wait_online(port: int, prefix: str, node: str, timeout: float = 30.0) -> None:
    """Until `node`'s retained status says online (ingest subscribes before saying so)."""
    settings = MqttSettings(host="127.0.0.1", port=port, topic_prefix=prefix)

    def online() -> bool:
        status = asyncio.run(fetch_status(settings, node, 0.5))
        return status is not None and status.state == "online"

    wait_for(f"{node} online", online, timeout)


def ingest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.ingest", *args]


def ingest_env(port: int, prefix: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SOUNDSCAPE_MQTT_HOST="127.0.0.1",
        SOUNDSCAPE_MQTT_PORT=str(port),
        SOUNDSCAPE_MQTT_TOPIC_PREFIX=prefix,
        SOUNDSCAPE_MQTT_RECONNECT_MIN="0.5",
        SOUNDSCAPE_MQTT_RECONNECT_MAX="1",
        SOUNDSCAPE_MQTT_STATUS_INTERVAL="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Publisher:
    """A QoS 1 publisher that survives broker restarts: it republishes until acknowledged.

    Republishing can deliver a result twice: storing it once is what ingest must do anyway.
    """

    def __init__(self, port: int, prefix: str, client_id: str) -> None:
        self.prefix = prefix
        self.connected = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(1, 1)
        self.client.connect_async("127.0.0.1", port, clean_start=True)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise TimeoutError("publisher could not connect")

    def raw(self, topic: str, payload: bytes, content_type: str | None = None) -> None:
        props = None
        if content_type:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = content_type
        self._send(topic, payload, props)

    def publish(self, msg: Message) -> None:
        self._send(msg.topic(self.prefix), msg.encode(), None)

    def _send(self, topic: str, payload: bytes, props: Properties | None) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.connected.wait(10):
                continue
            info = self.client.publish(topic, payload, qos=1, properties=props)
            try:
                info.wait_for_publish(5)
            except (RuntimeError, ValueError):
                time.sleep(0.1)
                continue
            if info.is_published():
                return
        raise TimeoutError(f"could not publish on {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
