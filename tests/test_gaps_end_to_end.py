"""Audio that arrived while levels or inference was down is a gap row: the service killed with
SIGKILL while a sensor keeps sending, restarted, and ingest stores a `service_down` gap in
PostgreSQL that covers every chunk sent while it was down."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from services.inference.settings import default_yamnet_dir
from shared.messages import AudioChunk
from shared.settings import MqttSettings
from tests.ingest.helpers import (
    Publisher,
    ingest_cmd,
    ingest_env,
    rows,
    wait_for,
    wait_online,
)
from tests.support.audio import tone

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_764_400_000.0
RATE = 16000
PACE = 0.05  # seconds between chunks: 1 s of audio every 50 ms
NODE = "lost-gaps"


class Sensor:
    """Sends 1 s chunks of `yor` (QoS 0, as capture does) from a thread until stopped."""

    def __init__(self, port: int, prefix: str) -> None:
        self.pub = Publisher(port, prefix, f"sensor-{uuid.uuid4().hex[:8]}")
        self.pcm = AudioChunk.from_float("yor", 0, T0, RATE, tone(1000, 1.0, RATE, 0.1)).pcm
        self.sent = 0  # chunks sent so far: seq 0 .. sent - 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            seq = self.sent
            chunk = AudioChunk(
                device="yor", seq=seq, start=T0 + seq, rate=RATE, width=2, channels=1, pcm=self.pcm
            )
            self.pub.client.publish(chunk.topic(self.pub.prefix), chunk.encode(), qos=0)
            self.sent = seq + 1
            time.sleep(PACE)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.pub.close()


@pytest.fixture
def statuses_cleared(mqtt_settings: MqttSettings) -> Iterator[None]:
    """After the processes stopped (request before `procs`): their retained statuses gone."""
    yield
    pub = Publisher(mqtt_settings.port, mqtt_settings.topic_prefix, f"clear-{uuid.uuid4().hex}")
    for node in ("gaps-ingest", NODE):
        info = pub.client.publish(f"{mqtt_settings.topic_prefix}/{node}/status", b"", 1, True)
        info.wait_for_publish(5)
    pub.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


#: service -> (its command, the table its results go to)
SERVICES = {
    "levels": ([sys.executable, "-m", "services.levels", "--node-id", NODE], "levels"),
    "inference": (
        [
            *(sys.executable, "-m", "services.inference", "--node-id", NODE),
            *("--backend", "yamnet", "--no-shared", "--threads", "1"),
        ],
        "detections",
    ),
}


def start(service: str, port: int, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    # SOUNDSCAPE_{LEVELS,INFERENCE}_STATE_DIR come from the conftest
    env = ingest_env(port, prefix, SOUNDSCAPE_INFERENCE_YAMNET_DIR=str(yamnet_folder()))
    with log.open("ab") as out:
        return subprocess.Popen(SERVICES[service][0], env=env, stdout=out, stderr=subprocess.STDOUT)


def yamnet_folder() -> Path:
    """The YAMNet model, as the inference tests get it (fetched once into a cache folder)."""
    from services.inference.yamnet_fetch import fetch

    return fetch(Path(os.environ.get("SOUNDSCAPE_INFERENCE_YAMNET_DIR") or default_yamnet_dir()))


def stored_seqs(dsn: str, table: str) -> list[int]:
    got = rows(dsn, f"SELECT DISTINCT window_seq FROM {table} ORDER BY 1")
    return [cast(int, s) for (s,) in got]


@pytest.mark.parametrize("service", list(SERVICES))
def test_killed_and_restarted_leaves_a_service_down_gap_row(
    service: str,
    tmp_path: Path,
    mqtt_settings: MqttSettings,
    database: str,
    state_dir: Path,
    statuses_cleared: None,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    port, prefix = mqtt_settings.port, mqtt_settings.topic_prefix
    ingest = ingest_cmd(
        "--database-url",
        database,
        "--sync-interval",
        "0.5",
        "--spool",
        str(tmp_path / "spool.sqlite3"),
        "--client-id",
        f"gaps-{uuid.uuid4().hex[:8]}",
        "--node-id",
        "gaps-ingest",
    )
    with (tmp_path / "ingest.log").open("ab") as log:
        procs.append(
            subprocess.Popen(
                ingest, env=ingest_env(port, prefix), stdout=log, stderr=subprocess.STDOUT
            )
        )
    wait_online(port, prefix, "gaps-ingest")
    table = SERVICES[service][1]
    service_log = tmp_path / f"{service}.log"
    procs.append(start(service, port, prefix, service_log))
    wait_online(port, prefix, NODE)
    sensor = Sensor(port, prefix)
    try:
        wait_for("results stored", lambda: len(stored_seqs(database, table)) >= 30, 60)
        time.sleep(1.5)  # at least one save of the stream position since
        procs[-1].kill()  # SIGKILL: no shutdown save
        procs[-1].wait(10)
        down_from = sensor.sent  # every chunk from here on reaches no levels process
        time.sleep(2.0)
        procs.append(start(service, port, prefix, service_log))
        wait_for(
            "a service_down gap stored",
            lambda: bool(rows(database, "SELECT 1 FROM gaps WHERE kind = 'service_down'")),
            60,
        )
    finally:
        sensor.stop()
    ((device, node, first_s, last_s, missing),) = rows(
        database,
        "SELECT device, node, extract(epoch FROM first_start)::float8, "
        "extract(epoch FROM last_start)::float8, count FROM gaps WHERE kind = 'service_down'",
    )
    first, last = cast(float, first_s), cast(float, last_s)
    assert (device, node) == ("yor", NODE)
    seqs = stored_seqs(database, table)
    resumed = min(s for s in seqs if s >= down_from)  # first chunk measured after the restart
    # The gap covers every chunk sent while levels was down, and ends where it resumed ...
    assert first <= T0 + down_from
    assert last == T0 + resumed
    assert missing == resumed - (first - T0)
    # ... and starts at the last saved position: at most about one save interval (1 s) of
    # chunks before the kill were measured but are inside it.
    before = [s for s in seqs if s < down_from]
    assert first >= T0 + max(before) + 1 - (1.5 / PACE)
    assert rows(database, "SELECT count(*) FROM gaps WHERE kind = 'service_down'") == [(1,)]
    for path in (tmp_path / "ingest.log", service_log):
        assert "Traceback" not in path.read_text(), path.name
