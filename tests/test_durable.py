"""kill -9 of levels and of inference mid-stream, as real processes: audio -> levels and
inference (tiny AST) -> ingest -> PostgreSQL. When they are killed, their uplink to the broker
has stopped (a proxy no longer forwards what they send, while audio still reaches them), so
their latest results exist only in their outbox files. After a restart every result that was
in those files, and every chunk measured before the kill, is stored exactly once."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared.messages import (
    AudioChunk,
    IndicesResult,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    NoiseEvent,
    WindowMessage,
)
from shared.outbox import outbox_path
from tests.ingest.helpers import ingest_cmd, ingest_env, wait_for, wait_online
from tests.support.audio import tone, white_noise
from tests.support.servers import Mosquitto, start_mosquitto
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_764_399_960.0  # a multiple of 60: no summary interval ends during the test
RATE = 16_000
BEFORE, DURING = 4, 16  # chunks sent while the uplink works, and after it stopped
TOP_K = 3
LEVELS, INFERENCE, INGEST = "dur-levels", "dur-inference", "dur-ingest"
TABLES: dict[str, tuple[type[WindowMessage], str]] = {
    LevelsResult.LEAF: (LevelsResult, "levels"),
    LabelsResult.LEAF: (LabelsResult, "detections"),
    LevelsSummary.LEAF: (LevelsSummary, "level_summaries"),
    IndicesResult.LEAF: (IndicesResult, "indices"),
    NoiseEvent.LEAF: (NoiseEvent, "noise_events"),
}


def outbox_rows(path: Path) -> list[tuple[str, bytes, str | None]]:
    """What the outbox file holds (read-only: the writer may be running)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            got = db.execute("SELECT topic, payload, content_type FROM outbox ORDER BY id")
            return [(t, bytes(p), c) for t, p, c in got.fetchall()]
    except sqlite3.OperationalError:  # not created yet
        return []


def count(dsn: str, query: str, *params: object) -> int:
    with psycopg.connect(dsn) as conn:
        try:
            row = conn.execute(query.encode(), params).fetchone()
        except psycopg.errors.UndefinedTable:
            return -1
    return int(row[0]) if row else 0


def publish_audio(port: int, prefix: str, seqs: range) -> None:
    """Publish chunks as a sensor does: QoS 0, never retained."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for seq in seqs:
            ch = chunk(seq)
            client.publish(ch.topic(prefix), ch.encode(), qos=0).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def stored(dsn: str, n: int) -> Callable[[], bool]:
    """Chunks 0..n-1 have their levels and their labels in PostgreSQL."""
    return lambda: (
        count(dsn, "SELECT count(*) FROM levels WHERE device = 'yor'") >= n
        and count(dsn, "SELECT count(DISTINCT window_start) FROM detections") >= n
    )


class Services:
    """levels and inference as child processes, killed with SIGKILL or stopped at the end."""

    def __init__(self, tmp: Path, prefix: str, tiny_ast: Path) -> None:
        self.tmp, self.prefix, self.tiny_ast = tmp, prefix, tiny_ast
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, port: int) -> None:
        env = ingest_env(
            port,
            self.prefix,
            SOUNDSCAPE_LEVELS_NODE_ID=LEVELS,
            SOUNDSCAPE_INFERENCE_NODE_ID=INFERENCE,
            HF_HUB_OFFLINE="1",
        )
        inference = [
            "--backend",
            "transformers",
            "--model",
            str(self.tiny_ast),
            "--top-k",
            str(TOP_K),
            "--threads",
            "1",
        ]
        for name, args in (("levels", []), ("inference", inference)):
            with (self.tmp / f"{name}.log").open("ab") as log:
                cmd = [sys.executable, "-m", f"services.{name}", *args]
                self.procs.append(
                    subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
                )

    def kill(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)
        self.procs = []

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs = []


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test's own: nothing it retains outlives the test."""
    mosquitto = start_mosquitto(tmp_path / "mosquitto")
    yield mosquitto
    mosquitto.stop()


def chunk(seq: int) -> AudioChunk:
    x = tone(300 + 40 * seq, 1.0, RATE, 0.05) + white_noise(1.0, RATE, rms=0.01, seed=seq)
    return AudioChunk.from_float("yor", seq, T0 + seq, RATE, x)


def test_kill_9_of_levels_and_inference_loses_no_measured_result(
    tmp_path: Path, broker: Mosquitto, database: str, tiny_ast: Path, state_dir: Path
) -> None:
    prefix = f"dur-{uuid.uuid4().hex[:8]}/soundscape"
    proxy = TcpProxy("127.0.0.1", broker.port)
    services = Services(tmp_path, prefix, tiny_ast)
    ingest_log = (tmp_path / "ingest.log").open("ab")
    ingest = subprocess.Popen(
        ingest_cmd(
            "--database-url",
            database,
            "--sync-interval",
            "0.5",
            "--spool",
            str(tmp_path / "spool.sqlite3"),
            "--client-id",
            f"dur-{uuid.uuid4().hex[:8]}",
            "--node-id",
            INGEST,
        ),
        env=ingest_env(broker.port, prefix),
        stdout=ingest_log,
        stderr=subprocess.STDOUT,
    )
    files = {
        LEVELS: outbox_path(state_dir, LEVELS),
        INFERENCE: outbox_path(state_dir, INFERENCE),
    }
    try:
        services.start(proxy.port)
        for node in (INGEST, LEVELS, INFERENCE):
            wait_online(broker.port, prefix, node, 90)
        publish_audio(broker.port, prefix, range(BEFORE))
        wait_for("the first results stored", stored(database, BEFORE), 60)

        proxy.freeze_upstream()  # the uplink stops: results can only wait in the outboxes
        publish_audio(broker.port, prefix, range(BEFORE, BEFORE + DURING))

        def waiting_on_disk(node: str, leaf: str) -> int:
            return sum(t.endswith("/" + leaf) for t, _, _ in outbox_rows(files[node]))

        wait_for(
            "the later results in the outboxes",
            lambda: (
                waiting_on_disk(LEVELS, LevelsResult.LEAF) >= DURING
                and waiting_on_disk(INFERENCE, LabelsResult.LEAF) >= DURING
            ),
            30,
        )
        services.kill()
        waiting = outbox_rows(files[LEVELS]) + outbox_rows(files[INFERENCE])
        proxy.close()  # what the killed processes had sent into the dead uplink is gone
        assert count(database, "SELECT count(*) FROM levels") == BEFORE  # nothing leaked out

        services.start(broker.port)
        total = BEFORE + DURING
        wait_for("every measured chunk stored", stored(database, total), 60)
        wait_for("the outboxes emptied", lambda: not any(map(outbox_rows, files.values())), 30)
    finally:
        services.stop()
        proxy.close()
        ingest.terminate()
        ingest.wait(20)
        ingest_log.close()

    # Every result that waited on disk at the kill is stored.
    assert len(waiting) >= 2 * DURING
    for topic, payload, ctype in waiting:
        cls, table = TABLES[topic.rsplit("/", 1)[1]]
        msg = cls.from_mqtt(prefix, topic, payload, ctype)
        at = datetime.fromtimestamp(msg.start, UTC)
        n = count(
            database,
            f"SELECT count(*) FROM {table} WHERE device = %s AND window_start = %s",
            msg.device,
            at,
        )
        assert n >= 1, (topic, msg.start)
    # Every chunk is measured and classified once: no gap, nothing twice.
    levels = count(database, "SELECT count(*) FROM levels WHERE device = 'yor'")
    seqs = count(database, "SELECT count(DISTINCT window_seq) FROM levels WHERE device = 'yor'")
    labels = count(database, "SELECT count(*) FROM detections WHERE device = 'yor'")
    assert levels == seqs == total and labels == total * TOP_K
