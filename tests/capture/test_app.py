"""The command line, settings from the environment, the synthetic source, and replay waiting
for a broker that is not up yet."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from services.capture.app import STATUS_ROOM, _settings, build_parser, main, make_bus, run
from services.capture.settings import CaptureSettings
from services.capture.synthetic import synthetic_pcm
from services.cli import main as cli_main
from shared.settings import MqttSettings
from tests.capture.helpers import capturing, fake_arecord, listening
from tests.support import servers

ROOT = Path(__file__).resolve().parents[2]


def test_cli_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDSCAPE_CAPTURE_DEVICE_ID", "env-dev")
    monkeypatch.setenv("SOUNDSCAPE_CAPTURE_RATE", "8000")
    monkeypatch.setenv("SOUNDSCAPE_CAPTURE_CAPTURE_RATE", "192000")
    monkeypatch.setenv("SOUNDSCAPE_CAPTURE_FAST", "true")
    monkeypatch.setenv("SOUNDSCAPE_CAPTURE_ALSA_DEVICE", "hw:CARD=AudioMoth,DEV=0")
    from_env = _settings(build_parser().parse_args([]))
    assert (from_env.device_id, from_env.rate, from_env.input_rate, from_env.fast) == (
        "env-dev",
        8000,
        192000,
        True,
    )
    args = build_parser().parse_args(
        [
            "--device-id",
            "yor",
            "--rate",
            "16000",
            "--no-fast",
            "--chunk-seconds",
            "0.5",
            "--alsa-device",
            "AudioMoth",
            "--source",
            "synthetic",
        ]
    )
    s = _settings(args)
    assert (s.device_id, s.rate, s.input_rate, s.fast, s.chunk_seconds, s.alsa_device) == (
        "yor",
        16000,
        192000,
        False,
        0.5,
        "AudioMoth",
    )
    assert s.source == "synthetic"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "device_id"),
        (["--device-id", "bad id"], "device_id"),
        (["--device-id", "x", "--source", "file"], "needs a path"),
        (["--device-id", "x", "--chunk-seconds", "0.00001"], "whole number of samples"),
        (["--device-id", "x", "--rate", "1000"], "rate"),
        (["--device-id", "x", "--source", "file", "--path", "/nonexistent/sd"], "no such file"),
        (["--device-id", "x", "--arecord", '"unbalanced'], "cannot be split"),
        (["--device-id", "x", "--arecord", " "], "must name a command"),
    ],
)
def test_bad_settings_exit_2_with_the_reason(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_list_devices_shows_stable_device_strings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-devices", "--arecord", fake_arecord()]) == 0
    out = capsys.readouterr().out
    assert (
        "card 1 'AudioMoth' [AudioMoth], device 0 [USB Audio] -> plughw:CARD=AudioMoth,DEV=0" in out
    )


def test_the_soundscape_command_knows_capture(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli_main(["capture", "--help"])
    assert stop.value.code == 0
    assert "--capture-rate" in capsys.readouterr().out


def test_synthetic_audio_does_not_depend_on_block_size() -> None:
    whole = synthetic_pcm(1000, 7000, 16000)
    assert whole == synthetic_pcm(1000, 2500, 16000) + synthetic_pcm(3500, 4500, 16000)
    peak = np.abs(np.frombuffer(synthetic_pcm(0, 32000, 16000), "<i2")).max()
    assert 5000 < peak < 32767
    assert len(synthetic_pcm(0, 10, 48000, channels=2)) == 40


@pytest.mark.integration
async def test_synthetic_source_streams_demo_audio(mqtt_settings: MqttSettings) -> None:
    settings = CaptureSettings(device_id="demo", source="synthetic", chunk_seconds=0.25)
    async with listening(mqtt_settings, "demo") as got, capturing(settings, mqtt_settings):
        await got.wait(lambda g: len(g.chunks) >= 3)
    assert [c.pcm for c in got.chunks[:2]] == [
        synthetic_pcm(0, 4000, 16000),
        synthetic_pcm(4000, 4000, 16000),
    ]
    assert got.chunks[1].start == got.chunks[0].end


@pytest.mark.integration
async def test_replay_waits_for_a_broker_that_comes_up_late(tmp_path: Path, prefix: str) -> None:
    path = tmp_path / "20250524_103000.WAV"
    data = np.random.default_rng(5).integers(-9999, 9999, 160_000, dtype=np.int16)
    sf.write(path, data, 16000, subtype="PCM_16")
    port = servers.free_port()
    mqtt = MqttSettings(port=port, topic_prefix=prefix, reconnect_min=0.05, reconnect_max=0.2)
    # 100 chunks, more than the outbox holds: the replay waits for room, it never drops
    settings = CaptureSettings(
        device_id="late",
        source="file",
        path=path,
        fast=True,
        chunk_seconds=0.1,
        outbox_seconds=1.0,
    )
    replay = asyncio.create_task(run(settings, mqtt))
    await asyncio.sleep(0.5)  # the replay is read, the broker is still down
    broker = servers.start_mosquitto(tmp_path / "broker", port=port)
    try:
        async with listening(mqtt, "late") as got:
            # the retained offline status arrives once the replay has handed over everything
            assert await asyncio.wait_for(replay, 20) == 0
            await got.wait(lambda g: g.capture_status("offline"))
        status = got.capture_status("offline")[-1]
        assert status.counters["chunks"] == 100 and status.counters["samples"] == 160_000
        assert status.counters.get("outbox_dropped", 0) == 0
    finally:
        broker.stop()


@pytest.mark.integration
async def test_a_replay_stopped_before_the_broker_took_it_exits_1(
    tmp_path: Path, prefix: str
) -> None:
    """`--fast` exits 0 only once every chunk reached the broker: a replay interrupted while
    its chunks still wait for an absent broker says so and fails."""
    path = tmp_path / "20250524_103000.WAV"
    sf.write(path, np.zeros(48000, dtype=np.int16), 16000, subtype="PCM_16")
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        SOUNDSCAPE_MQTT_PORT=str(servers.free_port()),  # nobody listens there
        SOUNDSCAPE_MQTT_TOPIC_PREFIX=prefix,
    )
    argv = ["--device-id", "cut", "--source", "file", "--path", str(path), "--fast"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.capture",
        *argv,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    said = []
    try:
        async with asyncio.timeout(60):
            # the service is running (its signal handlers too) once it says what it captures
            async for line in proc.stderr:
                said.append(line.decode(errors="replace"))
                if "file source" in said[-1]:
                    break
            proc.send_signal(signal.SIGTERM)
            said += [line.decode(errors="replace") async for line in proc.stderr]
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 1, "".join(said)
    assert "replay stopped before every chunk reached the broker" in "".join(said)


def test_the_outbox_holds_outbox_seconds_of_audio() -> None:
    """Memory stays bounded by the setting, whatever the chunk length (statuses aside)."""
    mqtt = MqttSettings()
    live = CaptureSettings(device_id="m", chunk_seconds=60, outbox_seconds=600)
    assert make_bus(live, mqtt).outbox_size == 10 + STATUS_ROOM
    short = CaptureSettings(device_id="m", chunk_seconds=0.25, outbox_seconds=30)
    assert make_bus(short, mqtt).outbox_size == 120 + STATUS_ROOM
    assert make_bus(CaptureSettings(device_id="m"), mqtt).outbox_size == 600 + STATUS_ROOM
