"""Ingest, simulate and the message path: CPU per message and per sensor-hour, against a
baseline commit measured in the same run.

    .venv/bin/python -m benchmarks.message_path_bench [--devices 200] [--seconds 40]
        [--baseline REF] [--repeats 1] [--dsn postgresql://postgres@127.0.0.1/postgres]

Two parts, each run once on this checkout and once on `--baseline` (a commit, extracted with
`git archive` into a temporary folder, its services run from there), alternating, so both
see the same machine load:

- **per message** (in one process, CPU time per call): decoding a 1 s 16 kHz S16 mono
  `AudioChunk` from its topic and msgpack payload (what levels and inference do with every
  chunk), encoding it; ingest's triage of a labels and a levels result (decode, validate,
  rows, row checks); the spool commit per result (batches of 20); the fleet simulator's
  cost to make one chunk.
- **per sensor-hour** (processes, CPU seconds from /proc/<pid>/stat, utime + stime): a
  throwaway Mosquitto and PostgreSQL database, `soundscape ingest` (a sync every second),
  `soundscape simulate --devices N --duration T` in real time, and this process publishing
  what inference and levels would (one labels result of five labels and one levels result
  with 1/3-octave bands per sensor per second, QoS 1). Ingest's CPU is counted from the
  first result to the moment every result is committed in PostgreSQL; simulate's is its
  own "CPU while publishing" (its summary line).

With SOUNDSCAPE_BENCH_PY_SPY=<folder>, py-spy records both processes during each fleet run
(raw stacks of the samples that held the GIL; each run overwrites the last).

The machine is shared: the load average is printed beside every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
T_SAMPLE = 1_764_400_000.0
NAMES = ("Speech", "Traffic noise, roadway noise", "Bird", "Wind", "Mains hum")


# --- per message (runs inside a tree's interpreter: imports whatever PYTHONPATH names) ------
def _cpu_per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n


def _results(device: str, seq: int, start: float) -> tuple[Any, Any]:
    from shared.messages import Calibration, LabelScore, LabelsResult, LevelsResult
    from shared.messages.bands import BAND_NAMES

    bands = sorted(BAND_NAMES, key=float)[3:36]  # 25 Hz .. 10 kHz: what 16 kHz audio gives
    labels = LabelsResult(
        device=device,
        seq=seq,
        start=start,
        duration=1.0,
        model="yamnet",
        labels=[LabelScore(label=n, score=0.9 - 0.1 * i) for i, n in enumerate(NAMES)],
        speech_present=False,
        inference_ms=4.2,
    )
    levels = LevelsResult(
        device=device,
        seq=seq,
        start=start,
        duration=1.0,
        leq_db=55.25,
        laeq_db=50.5,
        lceq_db=54.125,
        peak_db=70.0,
        dbfs=-40.75,
        bands={b: 40.0 + i / 8 for i, b in enumerate(bands)},
        calibration=Calibration(),
        uncalibrated=True,
    )
    return labels, levels


def _put_next(spool: Any, batches: Iterator[list[Any]]) -> object:
    return spool.put(next(batches))


def micro() -> dict[str, float]:
    """Microseconds of CPU per call of each step of the message path."""
    import numpy as np

    from services.ingest.core import Result, Triage
    from services.ingest.spool import Spool
    from services.simulate.core import Fleet, Scene, device_ids
    from shared.messages import AudioChunk

    out: dict[str, float] = {}
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(16000) * 3000).astype("<i2").tobytes()
    chunk = AudioChunk(device="sim-0001", seq=5, start=T_SAMPLE, rate=16000, pcm=pcm)
    payload = chunk.encode()
    topic = chunk.topic("bench")
    out["AudioChunk.from_mqtt (32 kB)"] = _cpu_per_call(
        lambda: AudioChunk.from_mqtt("bench", topic, payload, None), 3000
    )
    out["AudioChunk.encode"] = _cpu_per_call(chunk.encode, 3000)
    triage = Triage("bench")
    for msg in _results("sim-0001", 1, T_SAMPLE):
        body, where = msg.encode(), msg.topic("bench")
        out[f"ingest triage, {msg.LEAF}"] = _cpu_per_call(
            functools.partial(triage.message, where, body, None, T_SAMPLE + 5), 3000
        )
    results: list[Result] = []
    for seq in range(4000):
        for msg in _results("sim-0001", seq, T_SAMPLE + seq):
            verdict = triage.message(msg.topic("bench"), msg.encode(), None, T_SAMPLE + seq)
            assert isinstance(verdict, Result), verdict
            results.append(verdict)
    for size, calls in ((1, 1000), (20, 300)):
        with tempfile.TemporaryDirectory() as tmp:
            spool = Spool(Path(tmp) / "spool.sqlite3", 1_000_000)
            batches = iter([results[i : i + size] for i in range(0, len(results), size)])
            per_batch = _cpu_per_call(functools.partial(_put_next, spool, batches), calls)
            out[f"spool put, per result ({size} per commit)"] = per_batch / size
            spool.close()
    scene = Scene.from_float(rng.uniform(-0.3, 0.3, 16000 * 30), 16000)
    fleet = Fleet(device_ids(200), [scene], 1.0, 1e6, T_SAMPLE)
    step = [0.0]

    def take() -> object:
        step[0] += 1.0
        return fleet.take_due(step[0])

    out["simulate: make one chunk"] = _cpu_per_call(take, 20) / 200
    chunks = fleet.take_due(step[0] + 1.0)
    it2 = iter(range(10**9))
    out["simulate: encode one chunk"] = _cpu_per_call(
        lambda: chunks[next(it2) % len(chunks)].encode(), 3000
    )
    return {k: v * 1e6 for k, v in out.items()}


# --- per sensor-hour ------------------------------------------------------------------------
# Also run inside a tree's interpreter (`--child fleet`), so these helpers stay in this file:
# the tree's own benchmarks (a baseline commit's) may lack them or differ.
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def database(admin: str) -> Iterator[str]:
    import psycopg

    name = f"msgpath_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _stored(dsn: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        try:
            lv = conn.execute("SELECT count(*) FROM levels").fetchone()
            lb = conn.execute(
                "SELECT count(DISTINCT (device, window_start)) FROM labels"
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0, 0
    return (int(lv[0]) if lv else 0), (int(lb[0]) if lb else 0)


class Results:
    """Publishes one labels and one levels result per sensor per second (QoS 1), staggered."""

    def __init__(self, port: int, prefix: str, devices: list[str], seconds: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.prefix, self.devices, self.seconds = prefix, devices, seconds
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(2000)
        self.client.max_queued_messages_set(0)
        #: The broker's count of messages it dropped (queue limits), from `$SYS`.
        self.dropped = 0
        self.client.on_message = self._on_sys
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("$SYS/broker/publish/messages/dropped")
        self.client.loop_start()
        self.infos: list[Any] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_sys(self, _c: object, _u: object, msg: Any) -> None:
        with contextlib.suppress(ValueError):
            self.dropped = int(msg.payload)

    def _run(self) -> None:
        n = len(self.devices)
        t0 = time.time()
        origin = t0 - 1.0
        for k in range(self.seconds):
            for i, device in enumerate(self.devices):
                due = t0 + k + i / n
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                for msg in _results(device, k, origin + k + i / n):
                    self.infos.append(
                        self.client.publish(msg.topic(self.prefix), msg.encode(), qos=1)
                    )

    def wait(self) -> int:
        """Wait for every PUBACK (up to 60 s); how many results the broker acknowledged."""
        self.thread.join()
        deadline = time.monotonic() + 60
        for info in self.infos:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.client.loop_stop()
        self.client.disconnect()
        return sum(info.is_published() for info in self.infos)


def _online(port: int, prefix: str, node: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import msgpack
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    seen = threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(Exception):
            if msgpack.unpackb(msg.payload).get("state") == "online":
                seen.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe(f"{prefix}/{node}/status", qos=1)
    client.loop_start()
    try:
        deadline = time.monotonic() + 120
        while not seen.wait(0.5):
            if proc.poll() is not None:
                raise RuntimeError(f"{node} exited: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node} never came online")
    finally:
        client.loop_stop()
        client.disconnect()


def _spy(ingest: int, simulate: int, seconds: int) -> list[subprocess.Popen[bytes]]:
    """py-spy on both processes (GIL-holding samples, raw) when SOUNDSCAPE_BENCH_PY_SPY names
    a folder for the profiles."""
    folder = os.environ.get("SOUNDSCAPE_BENCH_PY_SPY")
    if not folder:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "-r",
                "100",
                "--gil",
                "--threads",
                "-f",
                "raw",
                "-d",
                str(max(5, seconds - 8)),
                "-p",
                str(pid),
                "-o",
                f"{folder}/{name}.txt",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in (("ingest", ingest), ("simulate", simulate))
    ]


def fleet_run(tree: Path, devices: int, seconds: int, admin: str) -> dict[str, float]:
    """CPU seconds per sensor-hour of ingest and simulate running from `tree`."""
    from services import localservers

    work = Path(tempfile.mkdtemp(prefix="msgpath-"))
    broker = localservers.start_mosquitto(work / "mosquitto", "sys_interval 1\n")
    prefix = f"mp-{uuid.uuid4().hex[:8]}/soundscape"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(tree),
        SOUNDSCAPE_MQTT_HOST="127.0.0.1",
        SOUNDSCAPE_MQTT_PORT=str(broker.port),
        SOUNDSCAPE_MQTT_TOPIC_PREFIX=prefix,
        SOUNDSCAPE_INGEST_BROKER_DROPS="false",
        SOUNDSCAPE_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    py = [sys.executable, "-m", "services.cli"]
    out: dict[str, float] = {}
    try:
        with database(admin) as dsn:
            log = work / "ingest.log"
            ingest = subprocess.Popen(
                [
                    *py,
                    "ingest",
                    "--database-url",
                    dsn,
                    "--sync-interval",
                    "1",
                    "--spool",
                    str(work / "spool.sqlite3"),
                    "--client-id",
                    f"mp-ingest-{work.name}",
                    "--node-id",
                    "mp-ingest",
                ],
                env=env,
                cwd=tree,
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
            )
            try:
                _online(broker.port, prefix, "mp-ingest", ingest, log)
                load0 = os.getloadavg()[0]
                names = [f"sim-{i:04d}" for i in range(1, devices + 1)]
                results = Results(broker.port, prefix, names, seconds)
                cpu0 = cpu_seconds(ingest.pid)
                sim = subprocess.Popen(
                    [*py, "simulate", "--devices", str(devices), "--duration", str(seconds)],
                    env=env,
                    cwd=tree,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                results.thread.start()
                spies = _spy(ingest.pid, sim.pid, seconds)
                sim_out, sim_err = sim.communicate(timeout=seconds + 180)
                for spy in spies:
                    spy.wait(60)
                acknowledged = results.wait()
                expected = devices * seconds
                # On a loaded machine ingest may still be catching up when publishing ends.
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline and min(_stored(dsn)) < expected:
                    time.sleep(0.25)
                cpu1 = cpu_seconds(ingest.pid)
                levels, labels = _stored(dsn)
                out["load"] = (load0 + os.getloadavg()[0]) / 2
            finally:
                ingest.terminate()
                ingest.wait(30)
        if sim.returncode:
            raise RuntimeError(f"simulate failed: {sim_err[-2000:]}")
        if min(levels, labels) < expected:
            raise RuntimeError(
                f"stored {levels} levels, {labels} labels of {expected}; the broker acknowledged "
                f"{acknowledged} of {2 * expected} results and dropped {results.dropped} "
                f"messages; ingest's log: {log.read_text()[-3000:]}"
            )
        hours = devices * seconds / 3600.0
        out["ingest"] = (cpu1 - cpu0) / hours
        m = re.search(r"CPU ([0-9.]+) s while publishing", sim_out)
        out["simulate"] = float(m.group(1)) / hours if m else float("nan")
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


# --- driving both trees ---------------------------------------------------------------------
def extract(ref: str, into: Path) -> Path:
    """The tree of commit `ref`, extracted under `into`."""
    tree = into / ref.replace("/", "_")
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def in_tree(tree: Path, *args: str) -> dict[str, float]:
    """Run this file's `--child` part under `tree`'s code; its JSON answer."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{tree}: {done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _step(step: str, run: dict[str, float]) -> float:
    return run.get(step, float("inf"))


def rev(ref: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--seconds", type=int, default=40)
    p.add_argument("--baseline", default=None, help="a commit to compare with (git ref)")
    p.add_argument(
        "--ref", default=None, help="measure this commit instead of the working tree (git ref)"
    )
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--skip-fleet", action="store_true", help="per-message figures only")
    p.add_argument(
        "--dsn",
        default=os.environ.get(
            "SOUNDSCAPE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    p.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        if args.child and args.child[0] == "fleet":
            answer = fleet_run(Path.cwd(), int(args.child[1]), int(args.child[2]), args.dsn)
        else:
            answer = micro()
        print(json.dumps(answer))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="msgpath-trees-"))
    trees = {f"this checkout ({rev('HEAD')}, uncommitted changes included)": ROOT}
    try:
        if args.ref:
            trees = {f"{rev(args.ref)}": extract(args.ref, tmp)}
        if args.baseline:
            trees = {f"baseline {rev(args.baseline)}": extract(args.baseline, tmp), **trees}
        micros: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
        fleets: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
        for _ in range(args.repeats):
            for name, tree in trees.items():
                load = os.getloadavg()[0]
                got = in_tree(tree)
                got["load"] = load
                micros[name].append(got)
                print(f"{name}: per message {got}", flush=True)
        if not args.skip_fleet:
            for _ in range(args.repeats):
                for name, tree in trees.items():
                    got = in_tree(tree, "fleet", str(args.devices), str(args.seconds))
                    fleets[name].append(got)
                    print(f"{name}: per sensor-hour {got}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    names = list(trees)
    print(f"\nPer message, us of CPU (best of {args.repeats}; load average at the start):\n")
    print("| step | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for step in [k for k in micros[names[-1]][0] if k != "load"]:
        cells = []
        for n in names:
            best = min(micros[n], key=functools.partial(_step, step))
            cells.append(f"{best.get(step, float('nan')):.1f} (load {best['load']:.2f})")
        print(f"| {step} | " + " | ".join(cells) + " |")
    if not args.skip_fleet:
        print(
            f"\n{args.devices} sensors x {args.seconds} s, real time: CPU s per sensor-hour "
            "(each run; load average during it):\n"
        )
        print("| stage | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for stage in ("ingest", "simulate"):
            cells = [
                ", ".join(f"{r[stage]:.2f} (load {r['load']:.2f})" for r in fleets[n])
                for n in names
            ]
            print(f"| {stage} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
