"""The integrations on a running pipeline, as real processes: a generated recording with a
loud stretch -> capture -> inference (tiny AST) + levels -> ingest -> PostgreSQL, beside
homeassistant and notify. Every service's /metrics is scraped and parsed with
prometheus-client's parser while chunks flow, and the counters move; the loud stretch
reaches a local webhook through Apprise's json:// as exactly one noise notification."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.health import fetch_status
from services.localservers import free_port
from shared.metrics import FAMILIES
from shared.settings import MqttSettings
from tests.support.audio import tone, white_noise, write_wav
from tests.support.servers import ingest_command, process, soundscape
from tests.support.webhook import webhook

START = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)
#: Quiet, loud (about 74 dB SPL with the default calibration), quiet; seconds of each.
SHAPE = (2, 4, 3)
SECONDS = sum(SHAPE)
RATE = 16000
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[set[str], Samples]:
    """Family names and samples of one /metrics endpoint, through prometheus-client's parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    names: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return names, samples


def counter(samples: Samples, name: str) -> float:
    return samples.get(("soundscape_status_counter_total", (("name", name),)), 0.0)


def published(port: int) -> float:
    """The capture's `published` counter; 0 while its endpoint is not up yet."""
    try:
        return counter(scrape(port)[1], "published")
    except OSError:  # URLError: the process is still starting
        return 0.0


def wait(check: Callable[[], bool], what: str, limit_s: float = 90.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.3)


def online(settings: MqttSettings, node: str) -> bool:
    status = asyncio.run(fetch_status(settings, node, 1.0))
    return status is not None and status.state == "online"


@pytest.mark.integration
@pytest.mark.slow
def test_metrics_move_and_a_loud_stretch_notifies_once(
    tmp_path: Path, mqtt_settings: MqttSettings, database: str, tiny_ast: Path, prefix: str
) -> None:
    quiet = white_noise(max(SHAPE[0], SHAPE[2]), rms=0.001)
    loud = tone(1000, SHAPE[1], amplitude=0.5)
    wav = write_wav(
        tmp_path / f"{START:%Y%m%d_%H%M%S}.WAV",
        np.concatenate([quiet[: SHAPE[0] * RATE], loud, quiet[: SHAPE[2] * RATE]]),
    )
    registry = tmp_path / "devices.toml"
    registry.write_text('[[device]]\nid = "e2e"\nname = "Test post"\nnoise_threshold_db = 60\n')
    names = ("capture", "levels", "inference", "ingest", "homeassistant", "notify")
    ports = {name: free_port() for name in names}
    logs = tmp_path / "logs"
    logs.mkdir()
    with webhook() as hook:
        base = dict(os.environ)
        base.update(
            SOUNDSCAPE_MQTT_HOST="127.0.0.1",
            SOUNDSCAPE_MQTT_PORT=str(mqtt_settings.port),
            SOUNDSCAPE_MQTT_TOPIC_PREFIX=prefix,
            SOUNDSCAPE_MQTT_STATUS_INTERVAL="1",
            SOUNDSCAPE_DEVICES_FILE=str(registry),
            SOUNDSCAPE_INFERENCE_NODE_ID="m-inference",
            SOUNDSCAPE_LEVELS_NODE_ID="m-levels",
            SOUNDSCAPE_LEVELS_EVENT_MIN_SECONDS="1",
            SOUNDSCAPE_LEVELS_EVENT_LABELS_WAIT="2",
            SOUNDSCAPE_INGEST_NODE_ID="m-ingest",
            SOUNDSCAPE_HA_NODE_ID="m-homeassistant",
            SOUNDSCAPE_HA_DISCOVERY="true",
            SOUNDSCAPE_HA_DISCOVERY_PREFIX=prefix.split("/")[0] + "/homeassistant",
            SOUNDSCAPE_HA_PUBLISH_INTERVAL="0.2",
            SOUNDSCAPE_NOTIFY_NODE_ID="m-notify",
            SOUNDSCAPE_NOTIFY_URLS=f"json://127.0.0.1:{hook.port}/",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )

        def env(name: str) -> dict[str, str]:
            return {**base, "SOUNDSCAPE_METRICS_PORT": str(ports[name])}

        commands = {
            "ingest": ingest_command(
                database, tmp_path / "spool.sqlite3", f"m-ingest-{tmp_path.name}"
            ),
            "levels": soundscape("levels"),
            "inference": soundscape(
                "inference", "--backend", "transformers", "--model", str(tiny_ast)
            ),
            "homeassistant": soundscape("homeassistant"),
            "notify": soundscape("notify"),
        }
        with contextlib.ExitStack() as stack:
            for name, cmd in commands.items():
                stack.enter_context(process(cmd, env(name), logs / f"{name}.log"))
            for name in commands:
                wait(functools.partial(online, mqtt_settings, f"m-{name}"), f"{name} online")
            before = {name: scrape(ports[name])[1] for name in commands}
            capture = soundscape(
                "capture", "--device-id", "e2e", "--source", "file", "--path", str(wav)
            )
            with process(capture, env("capture"), logs / "capture.log") as cap:
                # Scraped while it runs: its published counter moves chunk by chunk.
                wait(lambda: published(ports["capture"]) >= 3, "capture publishing", 30)
                assert cap.wait(60) == 0, (logs / "capture.log").read_text()

            def flowed() -> bool:
                lv, inf, ing = (scrape(ports[n])[1] for n in ("levels", "inference", "ingest"))
                return (
                    counter(lv, "chunks") >= SECONDS
                    and counter(inf, "results") >= SECONDS
                    # levels and labels of every chunk, and the noise event
                    and counter(ing, "synced_results") >= 2 * SECONDS + 1
                )

            wait(flowed, "every chunk measured, labelled and stored")
            bodies = hook.wait(1, 30)
            after = {name: scrape(ports[name]) for name in commands}

        # Every family a service exposes is declared (and so documented in docs/metrics.md).
        for name, (families, _) in after.items():
            ours = {f for f in families if f.startswith("soundscape_")}
            assert ours <= set(FAMILIES), f"{name}: undeclared {ours - set(FAMILIES)}"
        lv, inf, ing = after["levels"][1], after["inference"][1], after["ingest"][1]
        ha, nt = after["homeassistant"][1], after["notify"][1]
        assert counter(before["levels"], "chunks") == 0 and counter(lv, "chunks") == SECONDS
        assert counter(inf, "chunks") == SECONDS > counter(before["inference"], "chunks")
        assert lv["soundscape_result_latency_seconds_count", ()] == SECONDS
        assert inf["soundscape_result_latency_seconds_count", ()] == SECONDS
        assert inf["soundscape_inference_batch_seconds_count", ()] == counter(inf, "batches") >= 1
        assert inf["soundscape_inference_batch_windows_sum", ()] == SECONDS
        assert ing["soundscape_ingest_sync_seconds_count", ()] > 1
        assert ing["soundscape_ingest_sync_results_sum", ()] == counter(ing, "synced_results")
        assert ("soundscape_queue_depth", (("queue", "spool"),)) in ing
        assert lv["soundscape_state", (("state", "online"),)] == 1.0
        published_before = counter(before["homeassistant"], "states_published")
        assert counter(ha, "states_published") > published_before
        assert counter(nt, "events_notified") == 1 and counter(nt, "sent") >= 1

        # The loud stretch was one event, and one notification; capture ending its replay
        # (offline) may have sent a status message beside it.
        noise = [b for b in hook.received() if b["title"].startswith("Noise at")]
        assert len(noise) == 1, bodies
        assert noise[0]["title"] == "Noise at Test post (e2e)"
        assert "threshold 60 dB(A)" in noise[0]["message"]
