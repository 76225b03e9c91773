"""End to end: N simulated sensors in real time through every stage, as processes.

    .venv/bin/python -m benchmarks.e2e_bench [--devices 50,100,200,400] [--seconds 35]
        [--configs 1x1,2x2] [--write]

For each configuration (`IxL`: I inference workers on the shared subscription, YAMNet int8;
L levels shards) and each N, in a throwaway Mosquitto and a fresh PostgreSQL database (on the
server at SOUNDSCAPE_BENCH_DATABASE_URL or 127.0.0.1:5432, else a throwaway cluster), it
starts ingest, the levels shards and the inference workers as processes, waits until each is
online, runs `soundscape simulate --devices N --duration T` (real time, staggered sensors)
and prints:

- complete: labels and levels received for every chunk (a listener on the result topics),
  and rows in PostgreSQL for every window, each exactly once;
- latency p50/p95/p99 from the end of a chunk's audio to its labels published (received by
  the listener), to its levels published, and to its rows' commit (ingest's `sync_time`,
  stamped just before the commit);
- lag growth: median latency over the last 10 s of chunks minus over the first 10 s (a stage
  that falls behind shows a growing lag);
- CPU seconds per sensor-hour of each stage while the sensors published (from
  /proc/<pid>/stat; the simulator's own from its summary);
- broker messages/s in (from `$SYS/broker/messages/received`), rows/s committed;
- per worker: its share of windows (inference) or chunks (levels) and of the stage's CPU,
  and for levels whether it measured any device of another shard;
- the machine's load average before and after.

With `--write` the table goes to docs/benchmarks.md (between the `e2e_bench --write` marks of
its section "End to end", the rest of the page untouched) and a plot of
latency and CPU against sensors to docs/e2e_bench.png. The AST ONNX int8 variant runs only
when `--ast-onnx DIR` names an exported model (`soundscape export-onnx`); otherwise the
output says it was not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from services import localservers
from services.health import fetch_status
from shared.messages import Status
from shared.settings import MqttSettings
from shared.shard import shard_of

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "e2e_bench.png"
#: `--write` replaces what lies between these two lines of docs/benchmarks.md (the text around
#: them, the analysis of earlier runs, stays), or adds a section "End to end" with them.
BEGIN = "<!-- e2e_bench --write: begin -->\n"
END = "<!-- e2e_bench --write: end -->\n"
TICK = os.sysconf("SC_CLK_TCK")
STAGES = ("simulate", "broker", "inference", "levels", "ingest")
RESULT_LEAVES = ("labels", "levels", "summary", "indices", "events", "gaps", "status")


def soundscape(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass(frozen=True)
class Config:
    inference: int
    levels: int

    @classmethod
    def parse(cls, text: str) -> Config:
        i, l_ = text.lower().split("x")
        return cls(int(i), int(l_))

    def __str__(self) -> str:
        return f"{self.inference} inference x {self.levels} levels"


class Listener:
    """Receives every result topic; notes when each labels/levels result arrived."""

    def __init__(self, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.lock = threading.Lock()
        self.arrived: dict[str, dict[tuple[str, float], list[float]]] = {
            "labels": {},
            "levels": {},
        }
        self.counts: dict[str, int] = {}
        self.sys: dict[str, list[tuple[float, int]]] = {"received": [], "sent": []}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        for leaf in RESULT_LEAVES:
            self.client.subscribe(f"{prefix}/+/{leaf}", qos=1)
        self.client.subscribe("$SYS/broker/messages/received")
        self.client.subscribe("$SYS/broker/messages/sent")
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        if msg.topic.startswith("$SYS/"):
            with contextlib.suppress(ValueError):
                self.sys[msg.topic.rsplit("/", 1)[1]].append((now, int(msg.payload)))
            return
        leaf = msg.topic.rsplit("/", 1)[1]
        with self.lock:
            self.counts[leaf] = self.counts.get(leaf, 0) + 1
            if leaf in self.arrived:
                data = msgpack.unpackb(msg.payload)
                end = float(data["start"]) + float(data["duration"])
                key = (str(data["device"]), round(float(data["start"]), 3))
                self.arrived[leaf].setdefault(key, []).append(now - end)

    def received(self, leaf: str) -> int:
        with self.lock:
            return len(self.arrived[leaf])

    def broker_rate(self) -> float:
        points = self.sys["received"]
        if len(points) < 2:
            return float("nan")
        (t0, n0), (t1, n1) = points[0], points[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Point:
    """The figures of one configuration at one fleet size."""

    config: Config
    devices: int
    seconds: float
    expected: int = 0
    labels: int = 0
    levels: int = 0
    duplicates: int = 0  # rows stored twice (must stay 0)
    redelivered: int = 0  # results the listener got twice (QoS 1 is at least once)
    rows_levels: int = 0
    rows_labels: int = 0
    latency: dict[str, list[float]] = field(default_factory=dict)
    growth: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    shares: dict[str, list[int]] = field(default_factory=dict)
    foreign: int = 0
    broker_rate: float = float("nan")
    rows_rate: float = float("nan")
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sim_summary: str = ""
    dropped: int = 0

    def per_sensor_hour(self, stage: str) -> float:
        return sum(self.cpu.get(stage, [])) / (self.devices * self.seconds / 3600.0)

    @property
    def complete(self) -> bool:
        return (
            self.labels == self.levels == self.expected
            and self.rows_levels == self.rows_labels == self.expected
            and not self.duplicates
        )

    @property
    def capacity(self) -> float:
        """Sensors the machine's cores would carry at this point's CPU per sensor-hour."""
        total = sum(self.per_sensor_hour(s) for s in STAGES)
        return (os.cpu_count() or 1) * 3600.0 / total if total else float("nan")


class Stack:
    """ingest, levels shards and inference workers as processes for one run."""

    def __init__(
        self, work: Path, port: int, prefix: str, dsn: str, config: Config, backend: list[str]
    ) -> None:
        self.work = work
        self.config = config
        self.env = dict(os.environ)
        self.env.update(
            SOUNDSCAPE_MQTT_HOST="127.0.0.1",
            SOUNDSCAPE_MQTT_PORT=str(port),
            SOUNDSCAPE_MQTT_TOPIC_PREFIX=prefix,
            SOUNDSCAPE_LEVELS_STATE_DIR=str(work / "state"),
            SOUNDSCAPE_INFERENCE_STATE_DIR=str(work / "state"),
            SOUNDSCAPE_INFERENCE_SOLE_WORKER="true" if config.inference == 1 else "false",
            SOUNDSCAPE_INGEST_BROKER_DROPS="false",
            SOUNDSCAPE_LOG_LEVEL="WARNING",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        # One ONNX Runtime thread per worker: the stages share the cores, and a second
        # intra-op thread costs more CPU per window than it saves in latency (YAMNet float:
        # 1.3 ms per window with one thread, 1.7 ms with two; docs/benchmarks.md).
        threads = "1"
        self.commands: dict[str, list[str]] = {
            "ingest": soundscape(
                "ingest",
                "--database-url",
                dsn,
                "--sync-interval",
                "1",
                "--spool",
                str(work / "spool.sqlite3"),
                "--client-id",
                f"bench-ingest-{work.name}",
                "--node-id",
                "bench-ingest",
            )
        }
        for i in range(config.levels):
            self.commands[f"levels-{i}"] = soundscape(
                "levels",
                "--shard",
                str(i),
                "--shards",
                str(config.levels),
                "--node-id",
                f"bench-levels-{i}",
            )
        for i in range(config.inference):
            self.commands[f"inference-{i}"] = soundscape(
                "inference", *backend, "--threads", threads, "--node-id", f"bench-inference-{i}"
            )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, mqtt_settings: MqttSettings) -> None:
        for name, argv in self.commands.items():
            log = (self.work / f"{name}.log").open("ab")
            self.procs[name] = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        for name in self.commands:
            self.wait_online(mqtt_settings, f"bench-{name}", name)

    def wait_online(self, settings: MqttSettings, node: str, name: str) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {(self.work / f'{name}.log').read_text()}")
            status = asyncio.run(fetch_status(settings, node, 1.0))
            if status is not None and status.state == "online":
                return
            time.sleep(0.5)
        raise TimeoutError(f"{node} never came online")

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(p.pid) for name, p in self.procs.items()}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def statuses(settings: MqttSettings, nodes: list[str]) -> dict[str, Status | None]:
    return {n: asyncio.run(fetch_status(settings, n, 2.0)) for n in nodes}


@contextlib.contextmanager
def database(admin: str) -> Iterator[str]:
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def db_rows(dsn: str, table: str) -> tuple[int, int, list[float], float]:
    """(rows, distinct windows, commit latencies s, rows/s) of `table`."""
    with psycopg.connect(dsn) as conn:
        try:
            rows = conn.execute(
                f"SELECT extract(epoch FROM sync_time - window_start) - window_duration, "
                f"extract(epoch FROM sync_time) FROM {table}"
            ).fetchall()
            distinct = conn.execute(
                f"SELECT count(DISTINCT (device, window_start)) FROM {table}"
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0, 0, [], float("nan")
    lat = [float(r[0]) for r in rows]
    times = [float(r[1]) for r in rows]
    span = max(times) - min(times) if times else 0.0
    return len(rows), int(distinct[0]) if distinct else 0, lat, len(rows) / span if span else 0.0


def growth(latencies: dict[tuple[str, float], list[float]], seconds: float = 10.0) -> float:
    """Median latency over the last `seconds` of chunks minus over the first `seconds`."""
    if not latencies:
        return float("nan")
    starts = np.array([k[1] for k in latencies])
    lat = np.array([v[0] for v in latencies.values()])
    first = lat[starts <= starts.min() + seconds]
    last = lat[starts >= starts.max() - seconds]
    return float(np.median(last) - np.median(first))


def run_point(
    config: Config,
    devices: int,
    seconds: float,
    broker: localservers.Mosquitto,
    admin: str,
    backend: list[str],
) -> Point:
    point = Point(config, devices, seconds, expected=devices * int(seconds))
    port = broker.port
    prefix = f"e2e-{uuid.uuid4().hex[:8]}/soundscape"
    settings = MqttSettings(host="127.0.0.1", port=port, topic_prefix=prefix)
    work = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    listener = Listener(port, prefix)
    try:
        with database(admin) as dsn:
            stack = Stack(work, port, prefix, dsn, config, backend)
            try:
                stack.start(settings)
                point.load_before = os.getloadavg()
                cpu0 = stack.cpu()
                broker0 = cpu_seconds(broker.proc.pid)
                sim = subprocess.run(
                    soundscape("simulate", "--devices", str(devices), "--duration", str(seconds)),
                    env=stack.env,
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                    check=False,
                )
                point.sim_summary = sim.stdout.strip().splitlines()[-1] if sim.stdout else ""
                if sim.returncode:
                    raise RuntimeError(f"simulate failed: {sim.stderr[-2000:]}")
                deadline = time.monotonic() + 30
                while (
                    time.monotonic() < deadline
                    and min(listener.received("labels"), listener.received("levels"))
                    < point.expected
                ):
                    time.sleep(0.5)
                cpu1 = stack.cpu()
                point.cpu["broker"] = [cpu_seconds(broker.proc.pid) - broker0]
                point.load_after = os.getloadavg()
                time.sleep(3)  # ingest's next sync
            finally:
                stack.stop()
            # Each service publishes its counters in its retained `offline` status at exit.
            stat = statuses(settings, [f"bench-{n}" for n in stack.commands])
            for name in stack.commands:
                stage = name.split("-")[0]
                point.cpu.setdefault(stage, []).append(cpu1[name] - cpu0[name])
            m = re.search(r"CPU ([0-9.]+) s while publishing", point.sim_summary)
            point.cpu["simulate"] = [float(m.group(1))] if m else []
            for i in range(config.inference):
                st = stat.get(f"bench-inference-{i}")
                counters = st.counters if st else {}
                point.shares.setdefault("inference", []).append(int(counters.get("results", 0)))
                point.dropped += int(counters.get("dropped", 0))
            for i in range(config.levels):
                st = stat.get(f"bench-levels-{i}")
                counters = st.counters if st else {}
                point.shares.setdefault("levels", []).append(int(counters.get("chunks", 0)))
                point.dropped += int(counters.get("dropped", 0))
            owned = [0] * config.levels
            for d in range(1, devices + 1):
                owned[shard_of(f"sim-{d:04d}", config.levels)] += int(seconds)
            # A shard measured another's device iff its chunk count differs from its own
            # devices' chunks (each shard measures all of its own when complete).
            point.foreign = sum(
                max(0, got - own) for got, own in zip(point.shares["levels"], owned, strict=True)
            )
            lv_rows, lv_distinct, lv_lat, lv_rate = db_rows(dsn, "levels")
            lb_rows, lb_distinct, lb_lat, lb_rate = db_rows(dsn, "labels")
            point.rows_levels, point.rows_labels = lv_distinct, lb_distinct
            point.duplicates = (lv_rows - lv_distinct) + (lb_rows - lb_distinct)
            point.rows_rate = lv_rate + lb_rate
            point.latency["rows"] = lv_lat + lb_lat
        with listener.lock:
            for leaf in ("labels", "levels"):
                got = listener.arrived[leaf]
                point.latency[leaf] = [v[0] for v in got.values()]
                point.redelivered += sum(len(v) - 1 for v in got.values())
                point.growth[leaf] = growth(got)
            point.labels = len(listener.arrived["labels"])
            point.levels = len(listener.arrived["levels"])
        point.broker_rate = listener.broker_rate()
    finally:
        listener.close()
        shutil.rmtree(work, ignore_errors=True)
    return point


def ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1000:.0f}"


def table(points: list[Point]) -> str:
    head = (
        "| config | sensors | complete | labels p50/p95/p99 ms | levels p50/p95/p99 ms | "
        "rows p50/p95/p99 ms | lag growth labels/levels ms | CPU s per sensor-hour: "
        "simulate / broker / inference / levels / ingest | sensors the cores would carry at "
        "that CPU | broker msgs/s in | rows/s | per-worker share (inference; levels) | "
        "load avg before -> after |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for p in points:
        lat = {
            k: "/".join(ms(pct(p.latency.get(k, []), q)) for q in (50, 95, 99))
            for k in ("labels", "levels", "rows")
        }

        def share(stage: str, p: Point = p) -> str:
            counts = p.shares.get(stage, [])
            cpu = p.cpu.get(stage, [])
            total_n, total_c = sum(counts) or 1, sum(cpu) or 1.0
            return ", ".join(
                f"{n / total_n:.0%} of windows, {c / total_c:.0%} of CPU"
                for n, c in zip(counts, cpu, strict=False)
            )

        done = (
            "yes"
            if p.complete
            else (
                f"no: labels {p.labels}, levels {p.levels}, rows {p.rows_labels}/{p.rows_levels} "
                f"of {p.expected}; {p.dropped} dropped"
            )
        )
        if p.duplicates:
            done += f"; {p.duplicates} rows stored twice"
        if p.redelivered:
            done += f" ({p.redelivered} results delivered twice, stored once)"
        if p.foreign:
            done += f"; levels measured {p.foreign} chunks of other shards' devices"
        cpu = " / ".join(f"{p.per_sensor_hour(s):.1f}" for s in STAGES)
        lines.append(
            f"| {p.config} | {p.devices} | {done} | {lat['labels']} | {lat['levels']} | "
            f"{lat['rows']} | {ms(p.growth.get('labels', float('nan')))}/"
            f"{ms(p.growth.get('levels', float('nan')))} | {cpu} | {p.capacity:.0f} | "
            f"{p.broker_rate:.0f} | "
            f"{p.rows_rate:.0f} | {share('inference')}; {share('levels')} | "
            f"{p.load_before[0]:.2f} -> {p.load_after[0]:.2f} |"
        )
    return "\n".join(lines)


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for config in sorted({p.config for p in points}, key=str):
        pts = sorted((p for p in points if p.config == config), key=lambda p: p.devices)
        n = [p.devices for p in pts]
        for leaf, style in (("labels", "o-"), ("levels", "s--")):
            ax1.plot(
                n, [pct(p.latency.get(leaf, []), 95) for p in pts], style, label=f"{leaf}, {config}"
            )
        total = [sum(sum(p.cpu.get(s, [])) for s in STAGES) / p.seconds for p in pts]
        ax2.plot(n, total, "o-", label=f"all stages, {config}")
        ax2.plot(
            n,
            [sum(p.cpu.get("levels", [])) / p.seconds for p in pts],
            "s--",
            label=f"levels, {config}",
        )
        ax2.plot(
            n,
            [sum(p.cpu.get("inference", [])) / p.seconds for p in pts],
            "^:",
            label=f"inference, {config}",
        )
    ax1.set(xlabel="sensors", ylabel="p95 chunk end -> published, s", yscale="log", title="Latency")
    ax1.axhline(1.0, color="grey", lw=0.8)
    ax2.set(xlabel="sensors", ylabel="CPU cores busy", title="CPU (2-core machine)")
    ax2.axhline(os.cpu_count() or 2, color="grey", lw=0.8)
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    block = BEGIN + text.rstrip("\n") + "\n" + END
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + block + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n## End to end\n\n" + block
    DOC.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="50,100,200,400", help="fleet sizes, comma-separated")
    p.add_argument("--seconds", type=float, default=35.0, help="audio per sensor, s")
    p.add_argument("--configs", default="1x1,2x2", help="IxL: inference workers x levels shards")
    p.add_argument("--ast-onnx", type=Path, help="an exported AST ONNX int8 model folder")
    p.add_argument("--write", action="store_true", help="update docs/benchmarks.md and the plot")
    p.add_argument(
        "--no-yamnet", action="store_true", help="run only the AST ONNX model of --ast-onnx"
    )
    args = p.parse_args(argv)
    admin = os.environ.get(
        "SOUNDSCAPE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    work = Path(tempfile.mkdtemp(prefix="e2e-servers-"))
    own_pg = None
    if (
        not localservers.reachable("127.0.0.1", 5432)
        and "SOUNDSCAPE_BENCH_DATABASE_URL" not in os.environ
    ):
        own_pg = localservers.start_postgres(work / "pg")
        admin = own_pg.dsn
    broker = localservers.start_mosquitto(work / "mosquitto")
    backends = {} if args.no_yamnet else {"yamnet": ["--backend", "yamnet"]}
    ast_note = ""
    if args.ast_onnx is not None:
        backends["ast-onnx-int8"] = ["--backend", "onnx", "--model", str(args.ast_onnx)]
    else:
        ast_note = (
            "AST ONNX int8 1 s: not run (no exported model given; see soundscape export-onnx)"
        )
        print(ast_note)
    points: list[Point] = []
    try:
        for name, backend in backends.items():
            for config in [Config.parse(c) for c in args.configs.split(",")]:
                for n in [int(d) for d in args.devices.split(",")]:
                    print(f"{name}, {config}, {n} sensors, {args.seconds:g} s ...", flush=True)
                    point = run_point(config, n, args.seconds, broker, admin, backend)
                    print("  " + point.sim_summary, flush=True)
                    print(table([point]).splitlines()[-1], flush=True)
                    points.append(point)
    finally:
        broker.stop()
        if own_pg is not None:
            own_pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = table(points)
    print(out)
    if args.write:
        plot(points, PLOT)
        write_doc(
            f"`.venv/bin/python -m benchmarks.e2e_bench --devices {args.devices} "
            f"--seconds {args.seconds:g} --configs {args.configs} --write` "
            f"({os.cpu_count()} cores; YAMNet float unless the config says otherwise; "
            f"load averages in the last column). {ast_note}\n\n{out}\n\n"
            "![latency and CPU against sensors](e2e_bench.png)\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
