"""CPU per chunk of a service's message path: receiving audio, and publishing a QoS 1 result.

    python -m benchmarks.receive_bench [--devices 300] [--seconds 12] [--repeats 2]

A throwaway Mosquitto; `soundscape simulate --devices N` publishes N sensors' audio in real
time; one process holds an `MqttBus` subscribed to it whose handler decodes every chunk
(`AudioChunk.from_mqtt`) and, in the "result" mode, publishes one 400-byte QoS 1 result per
chunk (in memory: the outbox's disk syncs are not what is measured). The figure is that
process's CPU (user + system, `getrusage`) from its first chunk until every result is
acknowledged, per chunk. Each mode runs with received packets' properties decoded by
`shared.mqtt_properties.IncomingProperties` ("now") and by paho's own `Properties`
("paho's"), alternating, each in a fresh process; the load average is printed beside each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from services import localservers

MODES = ("audio", "result")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _measure(port: int, devices: int, seconds: float, mode: str) -> tuple[int, float]:
    from shared.messages import AudioChunk
    from shared.mqtt import Incoming, MqttBus, Subscription
    from shared.publishing import Outgoing
    from shared.settings import MqttSettings

    prefix = f"rb{os.getpid()}"
    want = devices * int(seconds)
    got, first = 0, 0.0
    done = asyncio.Event()
    result = b"x" * 400

    async def handle(m: Incoming) -> None:
        nonlocal got, first
        if not got:
            first = _cpu()
        chunk = AudioChunk.from_mqtt(prefix, m.topic, m.payload, m.content_type)
        got += 1
        if mode == "result":
            topic = f"{prefix}/{chunk.device}/levels"
            bus.publish_raw(Outgoing(topic, result, 1, False, "application/msgpack"))
        if got >= want:
            done.set()

    settings = MqttSettings(host="127.0.0.1", port=port, topic_prefix=prefix)
    bus = MqttBus(
        settings,
        node=f"{prefix}-bench",
        service="receive-bench",
        subscriptions=[Subscription(f"{prefix}/+/audio", 0)],
        handler=handle,
    )
    task = asyncio.create_task(bus.run())
    await bus.connected.wait()
    env = dict(
        os.environ,
        SOUNDSCAPE_MQTT_PORT=str(port),
        SOUNDSCAPE_MQTT_TOPIC_PREFIX=prefix,
    )
    sim = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "services.cli", "simulate", "--devices", str(devices)),
        *("--duration", str(seconds), "--node-id", f"{prefix}-sim"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.wait_for(done.wait(), seconds + 60)
        await bus.drained(30)
        cpu = _cpu() - first
    finally:
        await asyncio.wait_for(sim.wait(), 60)
        task.cancel()
    return got, cpu


def _child(args: argparse.Namespace) -> None:
    if args.paho:
        import paho.mqtt._packet as packet
        import paho.mqtt.properties as properties

        import shared.mqtt  # noqa: F401  (installs IncomingProperties; undone below)

        packet.Properties = properties.Properties  # type: ignore[attr-defined]
    got, cpu = asyncio.run(_measure(args.port, args.devices, args.seconds, args.mode))
    print(f"{got} {cpu}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--devices", type=int, default=300)
    p.add_argument("--seconds", type=float, default=12.0, help="audio per sensor, s")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--paho", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.mode = args.child
        _child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="receive-bench-") as work:
        broker = localservers.start_mosquitto(Path(work) / "mosquitto")
        try:
            print(f"{args.devices} sensors x {args.seconds:g} s, CPU per chunk (µs):")
            print("| mode | decoder | µs CPU per chunk | chunks | load avg |")
            print("|---|---|---|---|---|")
            for _ in range(args.repeats):
                for mode in MODES:
                    for paho in (False, True):
                        cmd = [sys.executable, "-m", "benchmarks.receive_bench", "--child", mode]
                        cmd += ["--port", str(broker.port), "--devices", str(args.devices)]
                        cmd += ["--seconds", str(args.seconds)] + (["--paho"] if paho else [])
                        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
                        got, cpu = out.stdout.split()
                        us = 1e6 * float(cpu) / max(1, int(got))
                        label = "paho's Properties" if paho else "IncomingProperties"
                        load = os.getloadavg()[0]
                        print(f"| {mode} | {label} | {us:.0f} | {got} | {load:.2f} |", flush=True)
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
