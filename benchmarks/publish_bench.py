"""QoS 1 results per second from one client over a slow link: the old serial path against
the windowed sender, in the same run.

    .venv/bin/python -m benchmarks.publish_bench [--rtt 0.3] [--serial 20] [--count 2000]

Starts a throwaway Mosquitto (`max_inflight_messages 1000`, as mosquitto/mosquitto.conf
ships it, so the broker's receive maximum is 1000) and, for the last row, one with
Mosquitto's default (receive maximum 20). Each publisher reaches its broker through
tests/support/tcpproxy.py delaying each direction by half of `--rtt` (this kernel has no
netem); a subscriber straight on the broker checks that every result arrived. Results are
AST top-5 labels of three devices in turn (374 bytes as msgpack). Rows:

- serial (old): what `MqttBus._send` did before, reproduced: one aiomqtt client awaiting
  each QoS 1 publish (with its content type) before the next;
- window N: `MqttBus` with `publish_window` N, results in memory;
- window N, durable: the same with the results in the SQLite outbox (levels and inference);
- window N, receive max 20: `MqttBus` against a broker with Mosquitto's default.

msg/s counts from the first publish to the last PUBACK; CPU is this process's CPU seconds
(publisher, subscriber, the proxy's threads) per 1000 results.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from services.localservers import start_mosquitto
from shared.messages import MSGPACK, LabelScore, LabelsResult
from shared.mqtt import Incoming, MqttBus, Subscription
from shared.outbox import Outbox
from shared.settings import MqttSettings
from tests.support.tcpproxy import TcpProxy

T0 = 1_764_400_000.0
PREFIX = "bench/soundscape"
DEVICES = ("pub-a", "pub-b", "pub-c")
NAMES = ("Speech", "Vehicle", "Bird vocalization, bird call, bird song", "Wind", "Rain")


def results(n: int) -> list[LabelsResult]:
    """`n` results, the three devices in turn, each device's in sequence."""
    return [
        LabelsResult(
            device=DEVICES[i % len(DEVICES)],
            seq=i // len(DEVICES),
            start=T0 + i // len(DEVICES),
            duration=1.0,
            model="MIT/ast-finetuned-audioset-10-10-0.4593",
            labels=[LabelScore(label=x, score=0.5 - j * 0.05) for j, x in enumerate(NAMES)],
            inference_ms=120.0,
        )
        for i in range(n)
    ]


@dataclass
class Row:
    """One publisher's figures."""

    name: str
    count: int
    seconds: float
    cpu_s: float
    delivered: int

    @property
    def rate(self) -> float:
        """Results acknowledged per second."""
        return self.count / self.seconds


class Counting:
    """A subscriber on the broker itself that counts distinct results."""

    def __init__(self, settings: MqttSettings) -> None:
        self.seen: set[tuple[str, int]] = set()

        async def handler(msg: Incoming) -> None:
            res = LabelsResult.from_mqtt(PREFIX, msg.topic, msg.payload, msg.content_type)
            self.seen.add((res.device, res.seq))

        self.bus = MqttBus(
            settings,
            "bench-reader",
            "bench",
            handler=handler,
            subscriptions=[Subscription(LabelsResult.subscription(PREFIX), 1)],
        )

    async def wait(self, n: int, limit_s: float = 30.0) -> int:
        """Wait until `n` distinct results arrived (or `limit_s`); how many did."""
        deadline = time.monotonic() + limit_s
        while len(self.seen) < n and time.monotonic() < deadline:  # noqa: ASYNC110 (a set)
            await asyncio.sleep(0.05)
        return len(self.seen)


async def serial(name: str, settings: MqttSettings, msgs: list[LabelsResult]) -> Row:
    """The old path: `await client.publish(...)` for each message in turn."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = MSGPACK
    async with aiomqtt.Client(settings.host, settings.port) as client:
        cpu, t0 = time.process_time(), time.monotonic()
        for msg in msgs:
            await client.publish(
                msg.topic(PREFIX), msg.encode(MSGPACK), qos=1, retain=False, properties=props
            )
        seconds = time.monotonic() - t0
        return Row(name, len(msgs), seconds, time.process_time() - cpu, 0)


async def windowed(
    name: str, settings: MqttSettings, msgs: list[LabelsResult], outbox: Path | None
) -> Row:
    """`MqttBus` with its windowed sender."""
    box = Outbox(outbox, 10**9) if outbox is not None else None
    bus = MqttBus(settings, "bench-writer", "bench", durable_outbox=box)
    task = asyncio.create_task(bus.run())
    try:
        async with asyncio.timeout(30):
            await bus.connected.wait()
        await bus.drained(10)  # the online status
        cpu, t0 = time.process_time(), time.monotonic()
        with bus.batch():
            for msg in msgs:
                bus.publish(msg)
        if not await bus.drained(600):
            raise RuntimeError(f"{name}: {bus.pending} results still waiting")
        seconds = time.monotonic() - t0
        return Row(name, len(msgs), seconds, time.process_time() - cpu, 0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if box is not None:
            box.close()


async def run(args: argparse.Namespace, work: Path) -> list[Row]:
    rows: list[Row] = []
    wide = start_mosquitto(work / "wide", "max_inflight_messages 1000")
    narrow = start_mosquitto(work / "narrow")
    try:
        for broker, cases in (
            (wide, ["serial", "memory", "durable"]),
            (narrow, ["memory20"]),
        ):
            direct = MqttSettings(port=broker.port, topic_prefix=PREFIX)
            reader = Counting(direct)
            task = asyncio.create_task(reader.bus.run())
            await reader.bus.connected.wait()
            with TcpProxy("127.0.0.1", broker.port, delay_s=args.rtt / 2) as proxy:
                via = direct.model_copy(update={"port": proxy.port, "publish_window": args.window})
                for case in cases:
                    reader.seen.clear()
                    if case == "serial":
                        msgs = results(args.serial)
                        row = await serial("serial (old)", via, msgs)
                    elif case == "memory":
                        msgs = results(args.count)
                        row = await windowed(f"window {args.window}", via, msgs, None)
                    elif case == "durable":
                        msgs = results(args.count)
                        name = f"window {args.window}, durable"
                        row = await windowed(name, via, msgs, work / "outbox.sqlite3")
                    else:
                        msgs = results(max(args.serial, args.count // 5))
                        name = f"window {args.window}, receive max 20"
                        row = await windowed(name, via, msgs, None)
                    row.delivered = await reader.wait(len(msgs))
                    rows.append(row)
                    print(
                        f"{row.name:<32}{row.count:>7}{row.seconds:>9.2f}{row.rate:>10.1f}"
                        f"{1000 * row.cpu_s / row.count:>14.2f}{row.delivered:>11}",
                        flush=True,
                    )
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        wide.stop()
        narrow.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtt", type=float, default=0.3, help="round trip, seconds")
    parser.add_argument("--serial", type=int, default=20, help="results sent the old way")
    parser.add_argument("--count", type=int, default=2000, help="results sent windowed")
    parser.add_argument("--window", type=int, default=100, help="publish_window")
    args = parser.parse_args(argv)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"round trip {1000 * args.rtt:.0f} ms (proxy), load average before: {load}")
    print(
        f"{'publisher':<32}{'results':>7}{'seconds':>9}{'msg/s':>10}"
        f"{'CPU s/1000':>14}{'delivered':>11}"
    )
    with tempfile.TemporaryDirectory(prefix="publish-bench-") as tmp:
        rows = asyncio.run(run(args, Path(tmp)))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average after: {load}; {os.cpu_count()} CPUs, shared with other work")
    base = rows[0].rate
    for row in rows[1:]:
        print(f"{row.name}: {row.rate / base:.0f}x the serial path")
    goal = max(r.rate for r in rows)
    print(f"goal >= 100 QoS 1 results/s over {1000 * args.rtt:.0f} ms: best {goal:.0f}/s")
    return 0 if all(r.delivered == r.count for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
