"""`soundscape simulate` through the real pipeline as processes: Mosquitto, inference, two
levels shards and ingest into PostgreSQL store every window of every sensor exactly once."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from services.simulate.core import device_ids
from shared.settings import MqttSettings
from tests.support.servers import ingest_command, process, soundscape
from tests.test_end_to_end import wait_online, wait_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVICES = 3
SECONDS = 5
TOP_K = 3


def test_every_window_of_every_simulated_sensor_is_stored_once(
    tmp_path: Path, mqtt_settings: MqttSettings, database: str, tiny_ast: Path
) -> None:
    env = dict(os.environ)
    env.update(
        SOUNDSCAPE_MQTT_HOST="127.0.0.1",
        SOUNDSCAPE_MQTT_PORT=str(mqtt_settings.port),
        SOUNDSCAPE_MQTT_TOPIC_PREFIX=mqtt_settings.topic_prefix,
        SOUNDSCAPE_INFERENCE_NODE_ID="sim-inference",
        SOUNDSCAPE_INGEST_NODE_ID="sim-ingest",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    ingest = ingest_command(database, tmp_path / "spool.sqlite3", f"sim-ingest-{tmp_path.name}")
    inference = soundscape(
        "inference", "--backend", "transformers", "--model", str(tiny_ast), "--top-k", str(TOP_K)
    )
    levels = [
        soundscape("levels", "--shard", str(i), "--shards", "2", "--node-id", f"sim-levels-{i}")
        for i in range(2)
    ]
    with (
        process(ingest, env, logs / "ingest.log"),
        process(levels[0], env, logs / "levels-0.log"),
        process(levels[1], env, logs / "levels-1.log"),
        process(inference, env, logs / "inference.log"),
    ):
        for node in ("sim-ingest", "sim-levels-0", "sim-levels-1", "sim-inference"):
            wait_online(mqtt_settings, node)
        simulate = soundscape(
            "simulate", "--devices", str(DEVICES), "--duration", str(SECONDS), "--speed", "5"
        )
        with process(simulate, env, logs / "simulate.log") as sim:
            assert sim.wait(60) == 0, (logs / "simulate.log").read_text()
        total = DEVICES * SECONDS
        wait_rows(database, "SELECT count(*) FROM levels", total)
        wait_rows(database, "SELECT count(DISTINCT (device, window_start)) FROM detections", total)
    with psycopg.connect(database) as conn:
        levels_rows = conn.execute(
            "SELECT device, count(*), count(DISTINCT window_start), "
            "extract(epoch FROM max(window_start) - min(window_start)) "
            "FROM levels GROUP BY device ORDER BY device"
        ).fetchall()
        label_rows = conn.execute(
            "SELECT device, count(*), count(DISTINCT window_start) "
            "FROM detections GROUP BY device ORDER BY device"
        ).fetchall()
    assert levels_rows == [(d, SECONDS, SECONDS, SECONDS - 1) for d in device_ids(DEVICES)]
    assert label_rows == [(d, SECONDS * TOP_K, SECONDS) for d in device_ids(DEVICES)]
