"""The simulator's scenes from WAV files and folders, and its settings."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import soundfile as sf
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from services.simulate.app import Simulator, load_scenes, main, make_bus
from services.simulate.core import Scene
from services.simulate.settings import SimulateSettings
from shared.errors import ConfigError
from shared.messages import AudioChunk
from shared.runtime import serve
from shared.settings import MqttSettings
from tests.support.audio import tone


def test_a_folder_gives_one_mono_scene_per_recording_at_the_published_rate(
    tmp_path: Path,
) -> None:
    sf.write(tmp_path / "20261129_120000.WAV", tone(1000, 2.0, 16000, 0.5), 16000)
    stereo = np.stack([tone(500, 1.0, 48000, 0.5), tone(500, 1.0, 48000, 0.1)], axis=1)
    sf.write(tmp_path / "20261129_130000.WAV", stereo, 48000)
    (tmp_path / "notes.txt").write_text("not audio")
    scenes = load_scenes(SimulateSettings(source="file", path=tmp_path))
    assert [s.rate for s in scenes] == [16000, 16000]
    assert [s.frames for s in scenes] == [32000, 16000]  # 48 kHz resampled to 16 kHz
    mixed = np.frombuffer(scenes[1].pcm, "<i2").astype(np.float64) / 32767.0
    # mixed to mono: the mean of the channels, a 500 Hz tone of amplitude 0.3
    assert np.max(np.abs(mixed[1000:-1000])) == pytest.approx(0.3, abs=0.01)


def test_the_generated_scene_is_the_demo_street_scene(tmp_path: Path) -> None:
    (scene,) = load_scenes(SimulateSettings(rate=8000))
    assert scene.rate == 8000 and scene.frames == 30 * 8000
    assert np.abs(np.frombuffer(scene.pcm, "<i2")).max() > 1000  # not silence


def test_bad_settings_and_sources_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValidationError, match="needs a path"):
        SimulateSettings(source="file")
    with pytest.raises(ValidationError, match="whole number of samples"):
        SimulateSettings(chunk_seconds=0.33333, rate=16000)
    with pytest.raises(ConfigError, match="no readable"):
        load_scenes(SimulateSettings(source="file", path=tmp_path))
    assert main(["--devices", "0"]) == 2
    assert main(["--source", "file", "--path", str(tmp_path / "missing")]) == 2
    assert "simulate:" in capsys.readouterr().err


@pytest.mark.integration
async def test_chunks_go_out_once_each_never_before_their_audio_ends_a_tick_at_a_time(
    mqtt_settings: MqttSettings,
) -> None:
    arrived: list[tuple[float, AudioChunk]] = []
    every = threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        arrived.append((time.time(), AudioChunk.decode(bytes(msg.payload))))
        if len(arrived) >= 16:
            every.set()

    listener = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    listener.on_message = on_message
    listener.connect("127.0.0.1", mqtt_settings.port)
    listener.subscribe(AudioChunk.subscription(mqtt_settings.topic_prefix), qos=0)
    listener.loop_start()
    try:
        # Eight sensors 0.125 s apart, a wake-up every 0.25 s at most: every other chunk
        # waits for the next tick.
        settings = SimulateSettings(devices=8, duration=2, tick=0.25)
        bus = make_bus(settings, mqtt_settings)
        sim = Simulator(settings, bus, [Scene.from_float(tone(440, 1.0, 16000) * 0.1, 16000)])
        await asyncio.sleep(0.3)  # the listener's subscription is in place
        await serve(bus, sim.run())
        await asyncio.to_thread(every.wait, 10)
    finally:
        listener.loop_stop()
        listener.disconnect()
    keys = sorted((c.device, c.seq) for _, c in arrived)
    assert keys == sorted((f"sim-{i:04d}", k) for i in range(1, 9) for k in range(2))
    assert all(at >= chunk.end for at, chunk in arrived)  # never ahead of its own audio
    assert len(sim.lags) == 16 and min(sim.lags) >= 0.0
    # Without the tick each chunk would go out as it fell due: the median lag would be ~0.
    assert float(np.median(sim.lags)) > 0.05
