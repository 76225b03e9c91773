"""Pipelined publishing (shared.publishing, MqttBus._send): a bounded window of messages in
flight, none lost and none reordered per device when the link dies or is reset mid-window.

The link runs through tests/support/tcpproxy.py: delayed (so a window is really in flight),
stalled (a dead GSM link: nothing moves, nothing closes), cut (a reset), or with the broker's
acknowledgements held back (to count what the client sends without them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from shared.messages import LabelsResult
from shared.messages.labels import LabelScore
from shared.mqtt import Incoming, MqttBus, Subscription
from shared.outbox import Outbox
from shared.publishing import DurableLane, MemoryLane, Outgoing
from shared.settings import MqttSettings
from tests.support import servers
from tests.support.bus import running
from tests.support.retained import clear_statuses
from tests.support.tcpproxy import TcpProxy

T0 = 1_764_400_000.0
DEVICES = ("pub-a", "pub-b", "pub-c")
NAMES = ("Speech", "Vehicle", "Bird vocalization, bird call, bird song", "Wind", "Rain")


def labels(device: str, seq: int) -> LabelsResult:
    """A result of realistic size (top 5 of AST, about 370 bytes as msgpack)."""
    return LabelsResult(
        device=device,
        seq=seq,
        start=T0 + seq,
        duration=1.0,
        model="MIT/ast-finetuned-audioset-10-10-0.4593",
        labels=[LabelScore(label=n, score=0.5 - i * 0.05) for i, n in enumerate(NAMES)],
        inference_ms=120.0,
    )


def out(n: int) -> Outgoing:
    return Outgoing(f"p/yor/labels/{n}", bytes([n]), 1)


# --- the lanes, without a broker ------------------------------------------------------------
def test_the_memory_lane_hands_back_what_was_in_flight_first_in_order() -> None:
    lane = MemoryLane(100)
    for n in range(6):
        lane.put(out(n))
    first = lane.take(4)
    assert [o for _, o in first] == [out(n) for n in range(4)] and lane.in_flight == 4
    lane.acked(first[0][0])  # 0 acknowledged; 1, 2, 3 on the wire when the link broke
    lane.put(out(6))
    lane.rewind()
    assert len(lane) == 6 and lane.in_flight == 0
    assert [o for _, o in lane.take(10)] == [out(n) for n in (1, 2, 3, 4, 5, 6)]


def test_a_full_memory_lane_drops_the_oldest_queued_never_one_in_flight() -> None:
    lane = MemoryLane(3)
    for n in range(3):
        lane.put(out(n))
    lane.take(2)  # 0 and 1 in flight
    assert lane.put(out(3)) == 1  # 2 goes
    assert [o for o in lane.queued] == [out(3)]
    lane.rewind()
    assert list(lane.queued) == [out(0), out(1), out(3)]


def test_the_durable_lane_slides_its_window_and_commits_acks_in_batches(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 10**6)
    box.put([(f"p/yor/labels/{n}", b"x", 1, None) for n in range(10)])
    lane = DurableLane(box, flush_every=2)
    first = lane.take(3)
    more = lane.take(3)  # after the last one in flight, not the oldest again
    assert [o.topic[-1] for _, o in first + more] == list("012345")
    lane.acked(first[0][0])
    assert len(box) == 10  # one acknowledgement waits for the next to make a batch
    lane.acked(first[1][0])
    assert len(box) == 8
    lane.acked(first[2][0])
    lane.rewind()  # 3, 4, 5 were on the wire: taken again first; 2 was acknowledged
    assert len(box) == 7
    assert [o.topic[-1] for _, o in lane.take(10)] == list("3456789")
    box.close()


# --- against a real broker ------------------------------------------------------------------
@contextlib.asynccontextmanager
async def reader(
    settings: MqttSettings, got: list[tuple[str, int]], arrived: asyncio.Event, want: int
) -> AsyncIterator[MqttBus]:
    """A subscriber straight on the broker, recording (device, seq) as results arrive."""
    prefix = settings.topic_prefix

    async def handler(msg: Incoming) -> None:
        res = LabelsResult.from_mqtt(prefix, msg.topic, msg.payload, msg.content_type)
        got.append((res.device, res.seq))
        if len(got) >= want:
            arrived.set()

    bus = MqttBus(
        settings,
        "pub-reader",
        "test",
        handler=handler,
        subscriptions=[Subscription(LabelsResult.subscription(prefix), 1)],
    )
    async with running(bus):
        yield bus


async def wait_until(what: str, check: Callable[[], bool], limit_s: float = 20.0) -> None:
    """Poll `check` (a counter or a list, not an event) until it holds."""
    async with asyncio.timeout(limit_s):
        while not check():  # noqa: ASYNC110 (counters, not events)
            await asyncio.sleep(0.02)
    assert check(), what


@pytest.mark.integration
@pytest.mark.parametrize(("receive_maximum", "window", "bound"), [(None, 7, 7), (5, 100, 5)])
async def test_never_more_in_flight_than_the_window_or_the_brokers_receive_maximum(
    tmp_path: Path,
    mqtt_settings: MqttSettings,
    receive_maximum: int | None,
    window: int,
    bound: int,
) -> None:
    with contextlib.ExitStack() as stack:
        if receive_maximum is None:  # the session's broker: receive maximum 20 or more
            port = mqtt_settings.port
        else:
            broker = servers.start_mosquitto(
                tmp_path / "b", f"max_inflight_messages {receive_maximum}"
            )
            stack.callback(broker.stop)
            port = broker.port
        direct = mqtt_settings.model_copy(update={"port": port})
        proxy = stack.enter_context(TcpProxy("127.0.0.1", port))
        via = direct.model_copy(
            update={"port": proxy.port, "publish_window": window, "ack_timeout": 60.0}
        )
        got: list[tuple[str, int]] = []
        arrived = asyncio.Event()
        writer = MqttBus(via, "pub-writer", "test")
        total = 60
        async with reader(direct, got, arrived, bound), running(writer):
            assert writer.window == bound
            assert await writer.drained(5)  # the online status is acknowledged
            proxy.freeze_downstream()  # the broker's PUBACKs stay in the proxy
            for seq in range(total):
                writer.publish(labels("pub-a", seq))
            async with asyncio.timeout(10):
                await arrived.wait()
            await asyncio.sleep(0.5)  # room for any message beyond the bound to show up
            assert len(got) == bound and writer.in_flight == bound
            assert writer.pending == total
            proxy.thaw()
            arrived.clear()
            await wait_until("all delivered", lambda: len(got) == total)
            assert await writer.drained(5)
        assert got == [("pub-a", seq) for seq in range(total)]
        await asyncio.to_thread(clear_statuses, port, direct.topic_prefix, ["pub-writer"])


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fault", "durable"), [("stall", False), ("cut", False), ("stall", True), ("cut", True)]
)
async def test_a_broken_link_mid_window_loses_and_reorders_nothing(
    tmp_path: Path,
    mqtt_settings: MqttSettings,
    fault: str,
    durable: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    per_device, window = 167, 50  # the session's broker may cap the window at 20
    total = per_device * len(DEVICES)
    # 20 ms each way: a window's worth is on the wire when the link goes.
    proxy = TcpProxy("127.0.0.1", mqtt_settings.port, delay_s=0.02)
    via = mqtt_settings.model_copy(
        update={"port": proxy.port, "publish_window": window, "ack_timeout": 1.0}
    )
    box = Outbox(tmp_path / "o.sqlite3", 10**8) if durable else None
    writer = MqttBus(via, "pub-writer", "test", durable_outbox=box)
    got: list[tuple[str, int]] = []
    some = asyncio.Event()
    try:
        async with reader(mqtt_settings, got, some, 100), running(writer):
            for seq in range(per_device):
                for device in DEVICES:
                    writer.publish(labels(device, seq))
            async with asyncio.timeout(20):
                await some.wait()
            if fault == "stall":  # a dead link: the client notices by the missing PUBACKs
                proxy.stall()
                in_flight = writer.in_flight
                await wait_until("a reconnect", lambda: writer.stats["reconnects"] >= 1)
                proxy.resume()
            else:
                proxy.cut()
                in_flight = writer.in_flight
            await wait_until("every result", lambda: len(set(got)) == total)
            assert await writer.drained(10)
    finally:
        proxy.close()
        if box is not None:
            box.close()
    assert in_flight > 10  # the link broke with many publishes on the wire
    assert writer.stats["reconnects"] >= 1
    for device in DEVICES:
        seqs = [s for d, s in got if d == device]
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == list(range(per_device)), device  # none lost, none reordered
    repeats = sum(n - 1 for n in Counter(got).values())
    # At least once: only what was unacknowledged when the link broke comes twice.
    assert repeats <= window * writer.stats["reconnects"]
    with capsys.disabled():
        print(f"\n{fault} durable={durable}: {in_flight} in flight, {repeats} repeats")
    await asyncio.to_thread(clear_statuses, mqtt_settings.port, via.topic_prefix, ["pub-writer"])


@pytest.mark.integration
async def test_a_message_the_broker_refuses_is_counted(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite {prefix}/pub-a/#\ntopic readwrite {prefix}/pub-writer/#\n")
    broker = servers.start_mosquitto(tmp_path / "b", f"acl_file {acl}")
    try:
        settings = MqttSettings(port=broker.port, topic_prefix=prefix)
        got: list[tuple[str, int]] = []
        arrived = asyncio.Event()
        writer = MqttBus(settings, "pub-writer", "test")
        async with reader(settings, got, arrived, 2), running(writer):
            writer.publish(labels("pub-a", 0))
            writer.publish(labels("pub-x", 0))  # a topic this client may not write
            writer.publish(labels("pub-a", 1))
            async with asyncio.timeout(10):
                await arrived.wait()
            assert await writer.drained(5)
        assert got == [("pub-a", 0), ("pub-a", 1)]
        assert writer.stats["publish_refused"] == 1
        assert "refused" in caplog.text
    finally:
        broker.stop()
