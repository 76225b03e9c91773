"""File replay: a folder of AudioMoth recordings, every sample published exactly once."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from services.capture.app import Replay, run
from services.capture.core import FileBlock
from services.capture.replay import FileSource, scan
from services.capture.settings import CaptureSettings
from shared.errors import ConfigError
from shared.settings import MqttSettings
from tests.capture.helpers import listening

RATE = 16000
COMMENT = "Recorded at 10:00:00 25/05/2025 (UTC) by AudioMoth 24F319055FDF1025 at medium gain"


def noise(seconds: float, seed: int, channels: int = 1, rate: int = RATE) -> np.ndarray:
    shape = (round(seconds * rate), channels) if channels > 1 else round(seconds * rate)
    return np.random.default_rng(seed).integers(-20000, 20000, shape, dtype=np.int16)


def audiomoth_folder(folder: Path) -> list[tuple[float, np.ndarray]]:
    """Three AudioMoth-named recordings (written out of order); their start times and data."""
    folder.mkdir()
    files = [
        ("20250524_103100.WAV", 0.7),
        ("20250524_103000.WAV", 2.3),
        ("20250524_103010.WAV", 1.5),
    ]
    out = []
    for seed, (name, seconds) in enumerate(files):
        data = noise(seconds, seed)
        sf.write(folder / name, data, RATE, subtype="PCM_16")
        start = datetime.strptime(name[:15], "%Y%m%d_%H%M%S").replace(tzinfo=UTC).timestamp()
        out.append((start, data))
    return sorted(out, key=lambda f: f[0])


@pytest.mark.integration
async def test_folder_replay_publishes_every_sample_once_at_the_named_times(
    tmp_path: Path, mqtt_settings: MqttSettings
) -> None:
    files = audiomoth_folder(tmp_path / "sd")
    settings = CaptureSettings(device_id="moth", source="file", path=tmp_path / "sd", fast=True)
    async with listening(mqtt_settings, "moth") as got:
        assert await run(settings, mqtt_settings) == 0
        await got.wait(lambda g: g.capture_status("offline"))
    chunks = got.chunks
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    # chunk starts follow the file names: 1 s steps inside a file, a new segment per file
    expected = []
    for start, data in files:
        expected += [
            (start + i, min(RATE, len(data) - i * RATE)) for i in range(0, -(-len(data) // RATE))
        ]
    assert [(c.start, c.samples) for c in chunks] == expected
    # every sample of every file, exactly once, byte for byte
    published = b"".join(c.pcm for c in chunks)
    assert published == b"".join(data.tobytes() for _, data in files)
    last = got.capture_status()[-1]
    assert last.counters["files"] == 3 and last.counters["samples"] == sum(len(d) for _, d in files)
    assert last.counters.get("gaps", 0) == 0


def test_scan_orders_by_start_time_and_skips_unreadable_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "mixed"
    (folder / "20250525").mkdir(parents=True)
    sf.write(folder / "20250525" / "060000.WAV", noise(0.1, 1), RATE)  # daily-folder firmware
    with sf.SoundFile(folder / "clip.flac", "w", 48000, 2, "PCM_16", format="FLAC") as f:
        f.comment = "Recorded at 05:00:00 25/05/2025 (UTC) by AudioMoth 24F319055FDF1025"
        f.write(noise(0.1, 2, channels=2, rate=48000))
    plain = folder / "field.wav"
    sf.write(plain, noise(1.0, 3), RATE)
    end = datetime(2025, 5, 25, 7, 0, 1, tzinfo=UTC).timestamp()
    os.utime(plain, (end, end))
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    (folder / "notes.txt").write_text("not audio")
    # more channels than an audio chunk carries: skipped, not a crash mid-replay
    sf.write(folder / "20250525_080000.WAV", noise(0.1, 4, channels=10), RATE)
    # AudioMoth triggered recordings have their quiet stretches cut out: times would be wrong
    sf.write(folder / "20250525_090000T.WAV", noise(0.1, 5), RATE)
    with sf.SoundFile(folder / "20250525_100000.WAV", "w", RATE, 1, "PCM_16") as f:
        f.comment = COMMENT + " Amplitude threshold was 10% with 1s minimum trigger duration."
        f.write(noise(0.1, 6))
    # a Mac's trash on the SD card: a deleted copy of a recording, not a recording
    (folder / ".Trashes" / "501").mkdir(parents=True)
    sf.write(folder / ".Trashes" / "501" / "20250525_060000.WAV", noise(0.1, 7), RATE)
    tally: Counter[str] = Counter()
    with caplog.at_level(logging.ERROR):
        found = scan(folder, tally)
    assert [(r.path.name, r.origin) for r in found] == [
        ("clip.flac", "comment"),
        ("060000.WAV", "name"),
        ("field.wav", "mtime"),
    ]
    assert found[0].rate == 48000 and found[0].channels == 2
    assert found[2].start == end - 1.0
    assert tally == {"file_errors": 4}
    said = caplog.text
    assert "10 channels" in said and said.count("triggered recording") == 2
    with pytest.raises(ConfigError, match="no such file"):
        scan(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no readable"):
        Replay.find(tmp_path / "empty")


@pytest.mark.integration
async def test_stereo_48k_recording_is_resampled_to_the_published_rate(
    tmp_path: Path, mqtt_settings: MqttSettings
) -> None:
    path = tmp_path / "20250524_103000.WAV"
    sf.write(path, noise(1.5, 4, channels=2, rate=48000), 48000, subtype="PCM_16")
    settings = CaptureSettings(device_id="moth", source="file", path=path, fast=True)
    async with listening(mqtt_settings, "moth") as got:
        assert await run(settings, mqtt_settings) == 0
        await got.wait(lambda g: g.capture_status("offline"))
    assert [(c.samples, c.channels, c.rate) for c in got.chunks] == [
        (16000, 2, RATE),
        (8000, 2, RATE),
    ]


async def test_real_time_replay_keeps_pace_and_shows_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "20250524_103000.WAV"
    sf.write(path, noise(0.6, 9), RATE, subtype="PCM_16")
    events: list[object] = []

    async def sink(event: object) -> None:
        events.append(event)

    for fast in (False, True):
        source = FileSource(scan(path), fast=fast, health=lambda s, d: None, progress=True)
        began = time.monotonic()
        await source.run(sink)
        took = time.monotonic() - began
        assert took >= 0.55 if not fast else took < 0.5
    assert "replay" in capsys.readouterr().err  # the progress bar
    assert sum(len(e.pcm) for e in events if isinstance(e, FileBlock)) == 2 * 2 * 9600
