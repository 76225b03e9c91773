"""Mosquitto persistence settings: acked rate, backlog drain and loss on kill -9, side by side.

    .venv/bin/python -m benchmarks.broker_bench [--backlog 50000] [--window 100]
                                                [--cap 10] [--live 40] [--stream 8]
                                                [--after 0.5] [--only NAME ...]

Starts throwaway brokers (mosquitto/mosquitto.conf as shipped, with its paths moved to a temp
folder and a listener on 127.0.0.1) with, in the same run:

- old: `autosave_interval 1` + `autosave_on_changes true` (a save after every change);
- interval N: `autosave_on_changes false` + `autosave_interval N` for N = 1, 5, 30 (a save
  every N seconds);
- off: `persistence false` (the ceiling, and what a crash loses without persistence).

For each it measures, with a sensor's results as payloads (labels and levels in turn, ~310
and ~590 bytes):

- acked: QoS 1 PUBACKs per second from one paho publisher with `--window` messages in flight,
  to a persistent subscriber that is offline (as ingest is during an outage), until the
  backlog holds `--backlog` messages or `--cap` seconds pass (the rest of the backlog is then
  published under `interval 30` and the broker restarted cleanly with the setting measured);
- drain: backlog messages per second delivered to that subscriber when it returns (receive
  maximum 1000, as ingest) while sensors go on publishing `--live` messages/s, over at most
  `--cap` seconds; the broker's memory (VmRSS) and database file with the backlog queued,
  and how long a clean stop (SIGTERM: one full save of the database, then exit) takes;
- kill -9: a stream of `--stream` seconds of QoS 1 messages at 200/s to the offline
  subscriber, the broker killed with SIGKILL `--after` seconds after the last PUBACK, then
  restarted: how many survived, and how many seconds of acknowledged messages (counted back
  from the kill) were lost.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from services.levels.bands import partition
from services.localservers import Mosquitto, start_mosquitto
from shared.messages import Calibration, LabelScore, LabelsResult, LevelsResult

ROOT = Path(__file__).resolve().parents[1]
BASE_CONF = ROOT / "mosquitto" / "mosquitto.conf"
T0 = 1_764_400_000.0
USERS = {"ingest": "bench-ingest", "yor": "bench-yor"}
TOPIC = "bench/yor/levels"
LIVE_SEQ = 10_000_000
ACL = "user ingest\ntopic read bench/#\n\nuser yor\ntopic write bench/yor/#\n"

#: name -> persistence lines replacing the base conf's own.
CANDIDATES: dict[str, str] = {
    "old (on_changes, 1)": "persistence true\nautosave_interval 1\nautosave_on_changes true",
    "interval 1 s": "persistence true\nautosave_interval 1\nautosave_on_changes false",
    "interval 5 s": "persistence true\nautosave_interval 5\nautosave_on_changes false",
    "interval 30 s": "persistence true\nautosave_interval 30\nautosave_on_changes false",
    "persistence off": "persistence false",
}
FILL = CANDIDATES["interval 30 s"]
PERSISTENCE_KEYS = ("persistence ", "autosave_interval ", "autosave_on_changes ")


def broker_conf(work: Path, persistence: str) -> str:
    """The shipped base conf with its paths under `work` and `persistence` in place."""
    lines = []
    for line in BASE_CONF.read_text().splitlines():
        if not line.strip() or line.startswith(("#", *PERSISTENCE_KEYS)):
            continue
        line = line.replace("/mosquitto/data/passwd", str(work / "passwd"))
        line = line.replace("/etc/soundscape/broker/acl", str(work / "acl"))
        line = line.replace("/mosquitto/data/", f"{work}/")
        lines.append(line)
    return "\n".join([*lines, persistence, ""])


#: The 1/3-octave bands levels sends for 1 s chunks at 16 kHz.
BANDS = [label for label, _first, _end in partition(16_000, 16_000)]
NAMES = ("Speech", "Traffic noise, roadway noise", "Bird", "Wind", "Mains hum")


def payload(seq: int) -> bytes:
    """A sensor's traffic: even sequences a top-5 labels result (~310 bytes), odd ones a levels
    result with its 27 bands (~590 bytes)."""
    if seq % 2 == 0:
        return LabelsResult(
            device="yor",
            seq=seq,
            start=T0 + seq,
            duration=1.0,
            model="MIT/ast-finetuned-audioset-10-10-0.4593",
            labels=[LabelScore(label=n, score=0.9 - 0.1 * i) for i, n in enumerate(NAMES)],
            speech_present=False,
            inference_ms=48.0,
        ).encode()
    return LevelsResult(
        device="yor",
        seq=seq,
        start=T0 + seq,
        duration=1.0,
        leq_db=50.0 + seq % 30,
        laeq_db=45.0,
        lceq_db=49.0,
        peak_db=70.0,
        dbfs=-40.0,
        bands={band: 30.0 + i / 7 for i, band in enumerate(BANDS)},
        calibration=Calibration(),
        uncalibrated=False,
    ).encode()


def seq_of(data: bytes) -> int:
    return int(msgpack.unpackb(data)["seq"])


def client(port: int, user: str, *, persistent: bool = False, window: int = 20) -> mqtt.Client:
    """A connected paho MQTT 5 client (network loop running) as `user`."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(window)
    c.max_queued_messages_set(0)
    c.username_pw_set(user, USERS[user])
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if persistent:
        props.SessionExpiryInterval = 7 * 24 * 3600
        props.ReceiveMaximum = 1000
    connected = threading.Event()
    c.on_connect = lambda *_: connected.set()
    c.connect("127.0.0.1", port, clean_start=not persistent, properties=props)
    c.loop_start()
    if not connected.wait(10):
        raise TimeoutError(f"{user} could not connect")
    return c


def close(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


class Publisher:
    """QoS 1 publisher with a window in flight; records each PUBACK's time.

    `acked` maps message ids back to sequences: ids are unique only up to 65,535 messages
    per client, which the kill -9 stream stays below; `count` and `last_ack` have no limit.
    """

    def __init__(self, port: int, window: int) -> None:
        self._acks: list[tuple[int, float]] = []
        self._seq_by_mid: dict[int, int] = {}
        self.c = client(port, "yor", window=window)
        self.c.on_publish = self._on_publish
        self._window = threading.Semaphore(window)

    def _on_publish(self, _c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
        self._acks.append((mid, time.monotonic()))  # list.append is atomic: no lock needed
        self._window.release()

    def send(self, seq: int, data: bytes) -> None:
        self._window.acquire()
        self._seq_by_mid[self.c.publish(TOPIC, data, qos=1).mid] = seq

    def wait_acked(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self._acks) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    @property
    def count(self) -> int:
        """PUBACKs received."""
        return len(self._acks)

    @property
    def last_ack(self) -> float:
        """Monotonic time of the latest PUBACK."""
        return max(t for _, t in list(self._acks))

    @property
    def acked(self) -> dict[int, float]:
        """Sequence -> monotonic time of its PUBACK (up to 65,535 messages)."""
        return {self._seq_by_mid[mid]: t for mid, t in list(self._acks)}

    def close(self) -> None:
        close(self.c)


def subscribe_offline(port: int) -> None:
    """Create ingest's persistent session with its subscription, then leave."""
    sub = client(port, "ingest", persistent=True)
    done = threading.Event()
    sub.on_subscribe = lambda *_: done.set()
    sub.subscribe("bench/#", qos=1)
    done.wait(5)
    close(sub)


def drain(port: int, expect: int, cap: float, quiet: float = 1.5) -> tuple[set[int], float]:
    """Connect ingest's session and receive: (sequences below `expect` received, seconds from
    the first message to the last of those) once all arrived, after `cap` s or `quiet` s of
    silence. Sequences from `expect` up (live traffic) are received but not counted."""
    got: set[int] = set()
    last = [time.monotonic(), time.monotonic()]  # any message, a counted one
    first: list[float] = []

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if not first:
            first.append(now)
        last[0] = now
        seq = seq_of(bytes(msg.payload))
        if seq < expect:
            got.add(seq)
            last[1] = now

    began = time.monotonic()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ingest", protocol=mqtt.MQTTv5)
    sub.username_pw_set("ingest", USERS["ingest"])
    sub.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 7 * 24 * 3600
    props.ReceiveMaximum = 1000
    sub.connect("127.0.0.1", port, clean_start=False, properties=props)
    sub.loop_start()
    while len(got) < expect:
        now = time.monotonic()
        if now - began > cap or now - max(last[0], began) > quiet:
            break
        time.sleep(0.01)
    elapsed = last[1] - (first[0] if first else began)
    close(sub)
    return got, max(elapsed, 1e-9)


class Live:
    """Sensors that keep publishing at `rate` messages/s (sequences from LIVE_SEQ up)."""

    def __init__(self, port: int, rate: float) -> None:
        self._stop = threading.Event()
        self._pub = Publisher(port, 100) if rate > 0 else None
        self._rate = rate
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._pub is None:
            return
        began = time.monotonic()
        n = 0
        while not self._stop.is_set():
            self._pub.send(LIVE_SEQ + n, payload(LIVE_SEQ + n))
            n += 1
            self._stop.wait(max(0.0, began + n / self._rate - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self._pub is not None:
            self._pub.close()


def reconfigure(broker: Mosquitto, work: Path, persistence: str) -> None:
    """Start the stopped `broker` again with other persistence settings, same port and files."""
    body = broker.config.read_text()
    base = body[: body.index("allow_anonymous false")]
    broker.config.write_text(base + broker_conf(work, persistence))
    broker.start()


def rss_mb(broker: Mosquitto) -> float:
    status = Path(f"/proc/{broker.proc.pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else float("nan")


@dataclass
class Figures:
    acked_rate: float
    queued: int
    drain_rate: float
    drained: int
    rss_mb: float
    db_mb: float
    save_s: float
    survived: int
    streamed: int
    lost_s: float


def measure(work: Path, persistence: str, args: argparse.Namespace) -> Figures:
    work.mkdir()
    (work / "acl").write_text(ACL)
    passwd = work / "passwd"
    passwd.touch()
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    broker = start_mosquitto(work, broker_conf(work, persistence))
    try:
        subscribe_offline(broker.port)
        data = [payload(seq) for seq in range(args.backlog)]

        # acked rate, building the backlog
        pub = Publisher(broker.port, args.window)
        began = time.monotonic()
        seq = 0
        while seq < args.backlog and time.monotonic() - began < args.cap:
            pub.send(seq, data[seq])
            seq += 1
        pub.wait_acked(seq)
        acked_s = pub.last_ack - began
        queued = pub.count
        pub.close()
        persistent = "persistence false" not in persistence
        db_mb = save_s = 0.0
        if persistent:
            # A clean stop writes the queue to the database. What the cap left unpublished is
            # published under a fast setting, then the broker restarts with its own.
            began = time.monotonic()
            broker.stop()
            save_s = time.monotonic() - began
            if queued < args.backlog:
                reconfigure(broker, work, FILL)
                pub = Publisher(broker.port, args.window)
                for s in range(queued, args.backlog):
                    pub.send(s, data[s])
                pub.wait_acked(args.backlog - queued)
                pub.close()
                began = time.monotonic()
                broker.stop()
                save_s = time.monotonic() - began
            db_mb = (work / "mosquitto.db").stat().st_size / 2**20
            reconfigure(broker, work, persistence)
        backlog = args.backlog if persistent else queued
        rss = rss_mb(broker)

        live = Live(broker.port, args.live)
        got, drain_s = drain(broker.port, backlog, args.cap)
        live.stop()
        drained = len(got)
        drain_rate = drained / drain_s
        # what is left of the backlog goes with the database: start the kill test afresh
        broker.stop()
        for f in work.glob("mosquitto.db*"):
            f.unlink()
        broker.start()
        subscribe_offline(broker.port)

        # loss on kill -9: a steady stream, then SIGKILL a known time after the last PUBACK
        pub = Publisher(broker.port, args.window)
        n = int(args.stream * 200)
        began = time.monotonic()
        for s in range(n):
            pub.send(s, data[s])
            time.sleep(max(0.0, began + (s + 1) / 200 - time.monotonic()))
        pub.wait_acked(n)
        acked = dict(pub.acked)
        pub.close()
        time.sleep(max(0.0, max(acked.values()) + args.after - time.monotonic()))
        killed_at = time.monotonic()
        broker.stop(kill=True)
        broker.start()
        survived, _ = drain(broker.port, n, 10)
        lost = [acked[s] for s in acked if s not in survived]
        lost_s = killed_at - min(lost) if lost else 0.0
        return Figures(
            acked_rate=queued / acked_s,
            queued=queued,
            drain_rate=drain_rate,
            drained=drained,
            rss_mb=rss,
            db_mb=db_mb,
            save_s=save_s,
            survived=len(survived & set(acked)),
            streamed=len(acked),
            lost_s=lost_s,
        )
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--cap", type=float, default=10.0, help="seconds per phase at most")
    parser.add_argument("--live", type=float, default=40.0, help="msgs/s arriving during drain")
    parser.add_argument("--stream", type=float, default=8.0)
    parser.add_argument("--after", type=float, default=0.5)
    parser.add_argument("--only", nargs="*", default=None, help="candidate names to run")
    args = parser.parse_args(argv)
    names = [n for n in CANDIDATES if not args.only or any(o in n for o in args.only)]
    print(
        f"backlog {args.backlog} (drained with {args.live:g} msg/s arriving), "
        f"window {args.window}, phases capped at {args.cap:g} s, "
        f"kill -9 {args.after:g} s after the last PUBACK of a {args.stream:g} s stream at 200/s"
    )
    print(
        f"{'setting':<22}{'acked msg/s':>12}{'drain msg/s':>12}{'RSS MB':>8}{'db MB':>7}"
        f"{'save s':>7}{'kill -9 kept':>15}{'lost s':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp:
        for i, name in enumerate(names):
            f = measure(Path(tmp) / f"b{i}", CANDIDATES[name], args)
            note = "" if f.queued >= args.backlog else f"  (acked {f.queued} in {args.cap:g} s)"
            if f.drained < args.backlog:
                note += f"  (drained {f.drained} in {args.cap:g} s)"
            print(
                f"{name:<22}{f.acked_rate:>12,.0f}{f.drain_rate:>12,.0f}{f.rss_mb:>8.0f}"
                f"{f.db_mb:>7.1f}{f.save_s:>7.2f}{f'{f.survived}/{f.streamed}':>15}{f.lost_s:>8.2f}{note}",
                flush=True,
            )
    print(f"(run as uid {os.geteuid()}; figures are this machine's, in this run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
