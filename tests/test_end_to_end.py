"""The whole pipeline as real processes: WAV -> capture -> Mosquitto -> inference + levels ->
ingest -> PostgreSQL, checked row by row against scikit-maad on the same samples."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
import soundfile as sf
from maad import spl, util

from services.health import fetch_status
from shared.settings import MqttSettings
from tests.support.audio import speech_and_tone_wav
from tests.support.servers import ingest_command, process, soundscape

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECONDS = 4
TOP_K = 5
START = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def wait_online(settings: MqttSettings, node: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = asyncio.run(fetch_status(settings, node, 1.0))
        if status is not None and status.state == "online":
            return
        time.sleep(0.5)
    raise TimeoutError(f"{node} never came online")


def wait_rows(dsn: str, query: str, expected: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            try:
                row = conn.execute(query).fetchone()
                count = int(row[0]) if row else 0
            except psycopg.errors.UndefinedTable:
                count = -1
        if count >= expected:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{query!r}: {count} rows, expected {expected}")


@pytest.fixture(params=["msgpack", "json"])
def pipeline(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mqtt_settings: MqttSettings,
    database: str,
    tiny_ast: Path,
) -> Iterator[tuple[Path, str]]:
    """inference, levels and ingest running against the test broker and database, with
    results published as msgpack (default) or JSON (for tools that cannot read msgpack)."""
    wav = speech_and_tone_wav(tmp_path / f"{START:%Y%m%d_%H%M%S}.WAV", SECONDS)
    env = dict(os.environ)
    env.update(
        SOUNDSCAPE_MQTT_HOST="127.0.0.1",
        SOUNDSCAPE_MQTT_PORT=str(mqtt_settings.port),
        SOUNDSCAPE_MQTT_TOPIC_PREFIX=mqtt_settings.topic_prefix,
        SOUNDSCAPE_INFERENCE_NODE_ID="e2e-inference",
        SOUNDSCAPE_LEVELS_NODE_ID="e2e-levels",
        SOUNDSCAPE_INGEST_NODE_ID="e2e-ingest",
        SOUNDSCAPE_MQTT_RESULTS_FORMAT=request.param,
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    ingest = ingest_command(database, tmp_path / "spool.sqlite3", f"e2e-ingest-{tmp_path.name}")
    inference = soundscape(
        "inference", "--backend", "transformers", "--model", str(tiny_ast), "--top-k", str(TOP_K)
    )
    with (
        process(ingest, env, logs / "ingest.log"),
        process(soundscape("levels"), env, logs / "levels.log"),
        process(inference, env, logs / "inference.log"),
    ):
        for node in ("e2e-ingest", "e2e-levels", "e2e-inference"):
            wait_online(mqtt_settings, node)
        capture = soundscape(
            "capture", "--device-id", "e2e", "--source", "file", "--path", str(wav), "--fast"
        )
        with process(capture, env, logs / "capture.log") as cap:
            assert cap.wait(60) == 0, (logs / "capture.log").read_text()
        yield wav, database


def test_every_window_is_labelled_and_measured(pipeline: tuple[Path, str]) -> None:
    wav, dsn = pipeline
    wait_rows(dsn, "SELECT count(*) FROM levels WHERE device = 'e2e'", SECONDS)
    wait_rows(dsn, "SELECT count(*) FROM detections WHERE device = 'e2e'", SECONDS * TOP_K)
    pcm, rate = sf.read(wav, dtype="int16")
    samples = pcm.astype(np.float32) / 32768.0
    with psycopg.connect(dsn) as conn:
        levels = conn.execute(
            "SELECT window_start, leq_db, sync_id, sync_time FROM levels "
            "WHERE device = 'e2e' ORDER BY window_start"
        ).fetchall()
        labels = conn.execute(
            "SELECT window_start, count(*), min(rating), max(rating), count(DISTINCT label), "
            "bool_and(sync_id IS NOT NULL AND sync_time IS NOT NULL) "
            "FROM detections WHERE device = 'e2e' GROUP BY window_start ORDER BY window_start"
        ).fetchall()
    assert [row[0] for row in levels] == [
        datetime.fromtimestamp(START.timestamp() + i, UTC) for i in range(SECONDS)
    ]
    for i, (_, leq_db, sync_id, sync_time) in enumerate(levels):
        chunk = samples[i * rate : (i + 1) * rate]
        with np.errstate(divide="ignore"):  # maad takes log10 of every sample, zeros included
            expected = util.mean_dB(spl.wav2dBSPL(chunk, gain=25, sensitivity=-18, Vadc=1.25))
        assert leq_db == pytest.approx(expected, abs=0.01)
        assert sync_id is not None and sync_time is not None
    assert [row[0] for row in labels] == [row[0] for row in levels]
    for _, count, low, high, distinct, synced in labels:
        assert count == TOP_K and distinct == TOP_K
        assert 0.0 <= low <= high <= 1.0
        assert synced
