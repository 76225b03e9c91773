"""The demo's generated scenes: lengths, the loop's seam, and what YAMNet hears in them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from services import demo_audio
from services.capture.core import Event, LiveBlock
from services.demo_fleet import DEMO_REGISTRY, SILENT, LoopSource, reporting_devices
from shared.devices import DeviceRegistry


def test_every_scene_has_the_asked_length_and_no_clipping_to_speak_of() -> None:
    for kind in demo_audio.SCENES:
        x = demo_audio.scene(kind, 4.0)
        assert x.dtype == np.float32 and len(x) == 4 * demo_audio.RATE
        assert np.mean(np.abs(x) >= 0.999) < 1e-3, kind


def test_a_street_is_louder_than_a_park() -> None:
    rms = {k: float(np.sqrt(np.mean(demo_audio.scene(k) ** 2))) for k in demo_audio.SCENES}
    assert rms["street"] > rms["square"] > rms["park"]


def test_a_passing_vehicle_is_doppler_shifted() -> None:
    """A 1 kHz source passing at 20 m/s: heard higher while it comes, lower as it goes."""
    rate = demo_audio.RATE
    t = np.arange(8 * rate) / rate
    heard = demo_audio._received(np.sin(2 * np.pi * 1000 * t), 20.0, 5.0, 4.0)

    def peak_hz(a: float) -> float:
        seg = heard[int(a * rate) : int(a * rate) + rate // 2] * np.hanning(rate // 2)
        return float(np.argmax(np.abs(np.fft.rfft(seg))) * 2)

    expected_in = 1000 * 343 / (343 - 20 * np.cos(np.arctan2(5, 60)))  # 3 s before: 60 m
    assert abs(peak_hz(1.0) - expected_in) < 6
    assert peak_hz(6.5) < 960


def test_the_loop_source_repeats_the_scene_seamlessly() -> None:
    pcm = bytes(range(256)) * 13  # not a multiple of the block
    got: list[bytes] = []

    async def sink(event: Event) -> None:
        assert isinstance(event, LiveBlock)
        got.append(event.pcm)
        if sum(map(len, got)) > 3 * len(pcm):
            raise asyncio.CancelledError

    source = LoopSource(pcm, lambda _s, _d: None, block_seconds=0.001)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(source.run(sink))
    stream = b"".join(got)
    assert stream[: 3 * len(pcm)] == pcm * 3
    assert source.counters["loops"] >= 2


def test_the_demo_registry_places_every_device_and_names_the_silent_one() -> None:
    registry = DeviceRegistry.parse(DEMO_REGISTRY)
    assert all(
        d.latitude is not None and d.longitude is not None for d in registry.devices.values()
    )
    assert set(reporting_devices(registry)) == {"demo-street", "demo-park", "demo-square"}
    for device in SILENT:
        assert "never reports" in registry.devices[device].name


@pytest.mark.slow
def test_yamnet_names_every_part_plausibly() -> None:
    """The model the stack falls back to recognises each generated sound (mean score over
    eight 1 s windows; the figures are in docs/demo.md)."""
    from services.inference.backends.yamnet import YamNet
    from services.inference.settings import default_yamnet_dir
    from services.inference.yamnet_fetch import fetch

    folder = Path(os.environ.get("SOUNDSCAPE_INFERENCE_YAMNET_DIR") or default_yamnet_dir())
    model = YamNet.from_folder(fetch(folder), threads=1)
    expected = {
        "traffic": {"Vehicle", "Car", "Motor vehicle (road)"},
        "birdsong": {"Bird", "Bird vocalization, bird call, bird song", "Chirp, tweet"},
        "speech": {"Speech"},
        "siren": {"Siren", "Alarm", "Police car (siren)"},
    }
    for name, plausible in expected.items():
        clip = demo_audio.part(name, 8.0).astype(np.float32)
        windows = [clip[i : i + demo_audio.RATE] for i in range(0, len(clip), demo_audio.RATE)]
        mean = model.scores(windows).mean(axis=0)
        top3 = {model.labels[i] for i in np.argsort(mean)[::-1][:3]}
        assert top3 & plausible, f"{name}: YAMNet's top 3 are {sorted(top3)}"
        best = max(mean[model.labels.index(label)] for label in plausible)
        assert best > 0.25, f"{name}: best plausible score {best:.2f}"
