"""Fault tests with real processes: ingest killed with SIGKILL mid-batch, PostgreSQL stopped
for many sync intervals, Mosquitto restarted while results flow. Each time, the rows in
PostgreSQL are exactly the results published: none lost, none twice."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from shared.settings import MqttSettings
from tests.ingest.helpers import (
    Publisher,
    count,
    ingest_cmd,
    ingest_env,
    labels,
    level,
    rows,
    spool_depth,
    wait_for,
    wait_online,
)
from tests.support.servers import Mosquitto, Postgres, start_mosquitto, start_postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]

K = 3  # labels per window


class Flow:
    """Publishes labels + levels for windows 0..n-1 from a thread, a little at a time."""

    def __init__(self, port: int, prefix: str, n: int, pause: float = 0.002) -> None:
        self.n = n
        self.published = 0
        self._pub = Publisher(port, prefix, f"flow-{uuid.uuid4().hex[:8]}")
        self._pause = pause
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for seq in range(self.n):
            self._pub.publish(labels(seq, k=K))
            self._pub.publish(level(seq))
            self.published = seq + 1
            time.sleep(self._pause)

    def more_than(self, n: int) -> Callable[[], bool]:
        """A check: n more windows have been published since now."""
        target = self.published + n
        return lambda: self.published >= target

    def join(self, timeout: float = 90) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher stuck"
        self._pub.close()


def start_ingest(
    dsn: str, port: int, prefix: str, tmp: Path, client_id: str
) -> subprocess.Popen[bytes]:
    cmd = ingest_cmd(
        "--database-url",
        dsn,
        "--sync-interval",
        "0.5",
        "--batch-size",
        "40",
        "--spool",
        str(tmp / "spool.sqlite3"),
        "--client-id",
        client_id,
        "--node-id",
        "fault-ingest",
    )
    env = ingest_env(port, prefix, SOUNDSCAPE_INGEST_CONNECT_TIMEOUT="2")
    with (tmp / "ingest.log").open("ab") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def ingests() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def rows_at_least(dsn: str, n: int) -> Callable[[], bool]:
    return lambda: count(dsn, "levels") >= n


def assert_exactly(dsn: str, n: int) -> None:
    """Rows == the n published windows (k labels each), no duplicates, each in a sync."""
    wait_for(f"{n} windows stored", lambda: count(dsn, "levels") == n, 60)
    wait_for(f"{n * K} labels stored", lambda: count(dsn, "detections") == n * K, 30)
    seqs = rows(dsn, "SELECT window_seq FROM levels ORDER BY 1")
    assert [s for (s,) in seqs] == list(range(n))
    per_window = rows(
        dsn, "SELECT window_seq, count(*), count(DISTINCT label) FROM detections GROUP BY 1"
    )
    assert sorted(per_window) == [(s, K, K) for s in range(n)]
    orphans = rows(
        dsn,
        "SELECT count(*) FROM levels l WHERE NOT EXISTS "
        "(SELECT 1 FROM syncs s WHERE s.sync_id = l.sync_id)",
    )
    assert orphans == [(0,)]
    # none lost; the shared test broker's own drops (other tests' traffic) may be recorded
    assert rows(dsn, "SELECT count(*) FROM gaps WHERE kind <> 'broker_dropped'") == [(0,)]


def test_kill_9_mid_batch_and_restart(
    tmp_path: Path,
    mqtt_settings: MqttSettings,
    database: str,
    prefix: str,
    ingests: list[subprocess.Popen[bytes]],
) -> None:
    client_id = f"kill9-{uuid.uuid4().hex[:8]}"
    port = mqtt_settings.port
    ingests.append(start_ingest(database, port, prefix, tmp_path, client_id))
    wait_online(port, prefix, "fault-ingest")
    flow = Flow(port, prefix, 400)
    kills = 0
    for threshold in (60, 160, 260):
        # Kill while results flow and a sync is storing them.
        wait_for("rows arriving", rows_at_least(database, threshold), 60)
        ingests[-1].kill()
        ingests[-1].wait(10)
        kills += 1
        ingests.append(start_ingest(database, port, prefix, tmp_path, client_id))
    flow.join()
    assert kills == 3
    assert_exactly(database, 400)
    wait_for("spool emptied", lambda: spool_depth(tmp_path / "spool.sqlite3") == 0, 20)


@pytest.fixture(scope="module")
def own_pg() -> Iterator[Postgres]:
    """A cluster of our own, to stop and start. Not under pytest's temporary folder: another
    pytest session starting meanwhile resets that folder to 0700, which locks the postgres
    user out of its own data directory (pg_ctl stop then fails)."""
    folder = Path(tempfile.mkdtemp(prefix="soundscape-ingest-pg-"))
    pg = start_postgres(folder / "pg")
    try:
        yield pg
    finally:
        pg.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


def test_postgresql_down_for_many_sync_intervals(
    tmp_path: Path,
    mqtt_settings: MqttSettings,
    own_pg: Postgres,
    prefix: str,
    ingests: list[subprocess.Popen[bytes]],
) -> None:
    name = f"f_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    dsn = own_pg.dsn.rsplit("/", 1)[0] + "/" + name
    port = mqtt_settings.port
    ingests.append(start_ingest(dsn, port, prefix, tmp_path, f"pgdown-{uuid.uuid4().hex[:8]}"))
    wait_online(port, prefix, "fault-ingest")
    flow = Flow(port, prefix, 300, pause=0.01)
    wait_for("rows arriving", lambda: count(dsn, "levels") >= 50, 60)
    own_pg.stop("fast")
    try:
        down_at = time.monotonic()
        wait_for("results spooling", lambda: spool_depth(tmp_path / "spool.sqlite3") >= 60, 30)
        time.sleep(max(0.0, 4.0 - (time.monotonic() - down_at)))  # 8 sync intervals at least
        assert spool_depth(tmp_path / "spool.sqlite3") >= 60
    finally:
        own_pg.start()
    flow.join()
    assert_exactly(dsn, 300)
    log = (tmp_path / "ingest.log").read_text()
    assert "database unreachable" in log
    assert ingests[-1].poll() is None


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    folder = tmp_path / "mosquitto"
    extra = (
        "persistence true\n"
        f"persistence_location {folder}/\n"
        "autosave_interval 1\n"
        "autosave_on_changes true\n"
        "max_queued_messages 100000\n"
    )
    broker = start_mosquitto(folder, extra)
    yield broker
    broker.stop()


def test_mosquitto_restarted_while_results_flow(
    tmp_path: Path,
    persistent_broker: Mosquitto,
    database: str,
    prefix: str,
    ingests: list[subprocess.Popen[bytes]],
) -> None:
    port = persistent_broker.port
    ingests.append(start_ingest(database, port, prefix, tmp_path, f"mq-{uuid.uuid4().hex[:8]}"))
    wait_online(port, prefix, "fault-ingest")
    flow = Flow(port, prefix, 400, pause=0.005)
    for _ in range(2):
        wait_for("results flowing", flow.more_than(60), 60)
        # A clean stop: Mosquitto writes its database. (After kill -9 the last second of
        # acknowledged publishes can be lost inside the broker, which no subscriber can fix.)
        persistent_broker.stop()
        time.sleep(1.0)
        persistent_broker.start()
    flow.join()
    assert_exactly(database, 400)
