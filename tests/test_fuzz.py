"""Fuzz the running services: at least 10,000 hostile payloads per topic (hypothesis), then
every service is alive, every rejection counted, memory bounded, nothing stored, and a valid
message sent afterwards is still processed and stored.

inference (the tiny AST), levels and ingest run as child processes against a broker of this
test's own, sized like the deployment's (`max_packet_size` = MAX_PACKET_BYTES) and with no
limit on queued messages, so that every payload reaches every subscriber and the counts are
exact. Every payload is first decoded here too: any that the message class would accept is
left out (so "nothing stored" is a fair check), and the decoder must raise nothing but
MessageError. Nothing subscribes to device status topics; their hostile payloads are checked
here only, and published to show that they disturb no service.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from services.health import fetch_status
from services.ingest.schema import TABLES
from shared.errors import MessageError
from shared.messages import (
    MAX_PACKET_BYTES,
    AudioChunk,
    IndicesResult,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    Message,
    NoiseEvent,
    Status,
)
from shared.settings import MqttSettings
from tests.support.hostile import T0, Hostile, batch, hostile, specials, valid, variants
from tests.support.servers import ingest_command, process, soundscape, start_mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLASSES: list[type[Message]] = [
    AudioChunk,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    IndicesResult,
    NoiseEvent,
    Status,
]
RESULTS: list[type[Message]] = [
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    IndicesResult,
    NoiseEvent,
]
PER_TOPIC = 10_000
#: Hypothesis draws per topic; `variants` makes five payloads of each.
DRAWN = 2_200
#: Payloads larger than this (a few, up to 16 MiB) are sent one at a time, after the others.
BIG = 1024 * 1024
#: Publishes in flight at once.
WINDOW = 5_000
DEVICE = "fuzz"
PREFIX = "fuzz/soundscape"
NODES = ("fuzz-ingest", "fuzz-levels", "fuzz-inference")
#: Peak resident memory a service may gain (MB) while the payloads up to BIG arrive, and then
#: while the few of up to 16 MiB arrive one at a time. paho holds a 16 MiB packet several
#: times while it reads it (its buffer grows by concatenation): about 90 MB measured. Before
#: decoding was bounded, the 16 MiB array bomb decoded to 16 M items, 128 MB more.
SMALL_GROWTH_MB = 50
RSS_GROWTH_MB = 160


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident) of a process, kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def status(settings: MqttSettings, node: str) -> Status | None:
    return asyncio.run(fetch_status(settings, node, 1.0))


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def rows(dsn: str, table: str, device: str | None = None) -> int:
    query = f"SELECT count(*) FROM {table}" + (" WHERE device = %s" if device else "")
    with psycopg.connect(dsn) as conn:
        try:
            got = conn.execute(query.encode(), (device,) if device else ()).fetchone()
        except psycopg.errors.UndefinedTable:
            return -1
    return int(got[0]) if got else 0


def payloads(cls: type[Message]) -> list[Hostile]:
    """Hypothesis-drawn hostile payloads for `cls` and their variants, plus the specials,
    each checked here: the class rejects it with a MessageError (and nothing else)."""
    out = []
    for h in variants(batch(hostile(cls, DEVICE), DRAWN)) + specials(cls, DEVICE):
        topic = cls.topic_for(PREFIX, h.device)
        try:
            cls.from_mqtt(PREFIX, topic, h.payload, h.content_type)
        except MessageError:
            out.append(h)
    assert len(out) >= PER_TOPIC, (cls.__name__, len(out))
    return out


@dataclass
class Sender:
    """A paho QoS 1 publisher that waits for every acknowledgement."""

    client: mqtt.Client

    @classmethod
    def connect(cls, port: int) -> Sender:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="fuzzer",
            protocol=mqtt.MQTTv5,
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", port)
        client.loop_start()
        return cls(client)

    def send(self, items: list[tuple[str, bytes, str | None]], timeout: float = 120) -> None:
        """Publish everything; at most WINDOW unacknowledged (paho's packet ids wrap at 65535)."""
        deadline = time.monotonic() + timeout
        infos: deque[mqtt.MQTTMessageInfo] = deque()
        for topic, payload, ctype in items:
            props = None
            if ctype is not None:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.ContentType = ctype
            infos.append(self.client.publish(topic, payload, qos=1, properties=props))
            while len(infos) > WINDOW or (infos and infos[0].is_published()):
                self._wait(infos.popleft(), deadline)
        while infos:
            self._wait(infos.popleft(), deadline)

    @staticmethod
    def _wait(info: mqtt.MQTTMessageInfo, deadline: float) -> None:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert info.is_published(), "the broker did not acknowledge every payload"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Stack:
    port: int
    dsn: str
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]]


@pytest.fixture
def stack(tmp_path: Path, database: str, tiny_ast: Path) -> Iterator[Stack]:
    """A broker of this test's own; ingest, levels and inference running against it."""
    broker = start_mosquitto(
        tmp_path / "broker",
        f"max_packet_size {MAX_PACKET_BYTES}\nmax_queued_messages 0\nmax_queued_bytes 0\n",
    )
    env = dict(os.environ)
    env.update(
        SOUNDSCAPE_MQTT_HOST="127.0.0.1",
        SOUNDSCAPE_MQTT_PORT=str(broker.port),
        SOUNDSCAPE_MQTT_TOPIC_PREFIX=PREFIX,
        SOUNDSCAPE_MQTT_STATUS_INTERVAL="1",
        SOUNDSCAPE_INGEST_NODE_ID="fuzz-ingest",
        SOUNDSCAPE_LEVELS_NODE_ID="fuzz-levels",
        SOUNDSCAPE_INFERENCE_NODE_ID="fuzz-inference",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    ingest = ingest_command(database, tmp_path / "spool.sqlite3", "fuzz-ingest")
    inference = soundscape(
        "inference", "--backend", "transformers", "--model", str(tiny_ast), "--top-k", "3"
    )
    try:
        with ExitStack() as procs:
            running = {
                "fuzz-ingest": procs.enter_context(process(ingest, env, logs / "ingest.log")),
                "fuzz-levels": procs.enter_context(
                    process(soundscape("levels"), env, logs / "levels.log")
                ),
                "fuzz-inference": procs.enter_context(
                    process(inference, env, logs / "inference.log")
                ),
            }
            yield Stack(broker.port, database, logs, running)
    finally:
        broker.stop()


def test_hostile_payloads_on_every_topic(stack: Stack) -> None:
    port, dsn, logs, procs = stack.port, stack.dsn, stack.logs, stack.procs
    settings = MqttSettings(host="127.0.0.1", port=port, topic_prefix=PREFIX)

    started = time.monotonic()
    fuzz = {cls: payloads(cls) for cls in CLASSES}  # while the services start
    generated = time.monotonic() - started

    for node in NODES:
        wait_until(f"{node} online", functools.partial(_online, settings, node), 120)
    online = time.monotonic() - started
    before = {}
    for node, proc in procs.items():
        pid = proc.pid
        before[node] = memory_kb(pid)["VmRSS"]
        if not reset_peak(pid):
            pytest.fail("cannot reset the peak RSS of a child process (/proc/PID/clear_refs)")

    # Round-robin over the topics, so that every service is busy at once; the few payloads
    # of many MB one at a time after them, so that the peak RSS shows what one costs.
    big = {cls: [h for h in fuzz[cls] if len(h.payload) > BIG] for cls in CLASSES}
    small = {cls: [h for h in fuzz[cls] if len(h.payload) <= BIG] for cls in CLASSES}
    queue = [
        (cls.topic_for(PREFIX, h.device), h.payload, h.content_type)
        for i in range(max(map(len, small.values())))
        for cls in CLASSES
        for h in small[cls][i : i + 1]
    ]
    n = dict.fromkeys(CLASSES, 0)
    counters: dict[str, dict[str, int]] = {}

    def all_counted() -> bool:
        expected = {
            "fuzz-inference": n[AudioChunk],
            "fuzz-levels": n[AudioChunk] + n[LabelsResult],
            "fuzz-ingest": sum(n[cls] for cls in RESULTS),
        }
        for node in NODES:
            got = status(settings, node)
            if got is None:
                return False
            counters[node] = got.counters
        acked = counters["fuzz-ingest"].get("acked", 0)  # after the batch's rejections
        ok = all(counters[node].get("rejected", 0) == expected[node] for node in NODES)
        return ok and acked == expected["fuzz-ingest"]

    def counted(what: str) -> None:
        try:
            wait_until(what, all_counted, 120)
        except TimeoutError:
            seen = {node: counters.get(node, {}).get("rejected") for node in NODES}
            sent_now = {cls.LEAF: k for cls, k in n.items()}
            pytest.fail(f"{what}: rejections counted {seen}, sent {sent_now}")

    sender = Sender.connect(port)
    try:
        sender.send(queue)
        for cls in CLASSES:
            n[cls] += len(small[cls])
        sent = time.monotonic() - started
        counted("every rejection counted")
        for node, proc in procs.items():
            small_growth = round((memory_kb(proc.pid)["VmHWM"] - before[node]) / 1024)
            assert small_growth < SMALL_GROWTH_MB, f"{node}: peak RSS grew by {small_growth} MB"
        for cls in CLASSES:
            for h in big[cls]:
                sender.send([(cls.topic_for(PREFIX, h.device), h.payload, h.content_type)])
                n[cls] += 1
                counted(f"a {len(h.payload)} byte payload on {cls.LEAF} counted")
        done = time.monotonic() - started

        growth = {}
        for node, proc in procs.items():
            assert proc.poll() is None, f"{node} exited"
            mem = memory_kb(proc.pid)
            growth[node] = round((mem["VmHWM"] - before[node]) / 1024)
            assert growth[node] < RSS_GROWTH_MB, f"{node}: peak RSS grew by {growth[node]} MB"
            assert counters[node].get("handler_errors", 0) == 0, node
        ingest = counters["fuzz-ingest"]
        results = sum(len(fuzz[cls]) for cls in RESULTS)
        assert ingest["rejected"] == ingest["rejected_invalid"] == results
        assert ingest.get("rejected_error", 0) == 0 and "receive_errors" not in ingest
        assert ingest["acked"] == ingest["received"] == results
        assert counters["fuzz-inference"].get("chunks", 0) == 0
        assert counters["fuzz-levels"].get("chunks", 0) == 0
        time.sleep(1.0)  # a sync interval: anything spooled would be in PostgreSQL by now
        tables = sorted({t.name for t in TABLES.values()} | {"gaps"})
        assert {t: rows(dsn, t) for t in tables} == dict.fromkeys(tables, 0)

        # Alive, not merely running: a valid chunk is measured and classified, a valid
        # result is stored.
        tone = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
        chunk = AudioChunk.from_float("alive", 0, T0, 16000, tone)
        summary = valid(LevelsSummary, "alive")
        sender.send(
            [
                (chunk.topic(PREFIX), chunk.encode(), None),
                (summary.topic(PREFIX), summary.encode(), None),
            ]
        )
    finally:
        sender.close()
    wait_until("the valid chunk's levels", lambda: rows(dsn, "levels", "alive") == 1, 60)
    wait_until("the valid chunk's labels", lambda: rows(dsn, "detections", "alive") == 3, 60)
    wait_until("the valid summary", lambda: rows(dsn, "level_summaries", "alive") == 1, 60)
    for name in ("ingest", "levels", "inference"):
        assert "Traceback" not in (logs / f"{name}.log").read_text(errors="replace"), name
    print(
        f"fuzz: {sum(len(v) for v in fuzz.values())} payloads "
        f"({', '.join(f'{c.LEAF} {len(v)}' for c, v in fuzz.items())}); generated in "
        f"{generated:.0f} s, services online by {online:.0f} s, sent by {sent:.0f} s, "
        f"all counted by {done:.0f} s; peak RSS growth (MB) {growth}"
    )


def _online(settings: MqttSettings, node: str) -> bool:
    got = status(settings, node)
    return got is not None and got.state == "online"
