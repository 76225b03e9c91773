"""Acoustic indices move the way their definitions say between noise, tones, bursts, silence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.levels.core import LevelsCore
from services.levels.indices import IndicesJob, IndicesWindows, compute
from shared.devices import DeviceRegistry
from shared.messages import AudioChunk, IndicesResult
from tests.support.audio import tone, white_noise

RATE = 16000
SECONDS = 10
T0 = 1_764_399_960.0


def bursts(count: int) -> np.ndarray:
    """Quiet noise with `count` loud 0.25 s noise bursts, evenly spaced."""
    x = white_noise(SECONDS, RATE, rms=0.001, seed=1)
    loud = white_noise(0.25, RATE, rms=0.3, seed=2)
    gap = len(x) // count
    for i in range(count):
        x[i * gap + gap // 2 : i * gap + gap // 2 + len(loud)] += loud
    return x


def indices(samples: np.ndarray) -> IndicesResult:
    result = compute(IndicesJob("yor", 0, T0, float(SECONDS), RATE, samples.astype(np.float32)))
    assert result is not None
    return result


@pytest.fixture(scope="module")
def sounds() -> dict[str, IndicesResult]:
    return {
        "noise": indices(white_noise(SECONDS, RATE, rms=0.1)),
        "tone": indices(tone(1000, SECONDS, RATE, 0.3) + white_noise(SECONDS, RATE, rms=1e-4)),
        "low": indices(tone(500, SECONDS, RATE, 0.3) + white_noise(SECONDS, RATE, rms=1e-4)),
        "high": indices(tone(3000, SECONDS, RATE, 0.3) + white_noise(SECONDS, RATE, rms=1e-4)),
        "bursts": indices(bursts(5)),
        "silence": indices(np.zeros(SECONDS * RATE)),
    }


def v(result: IndicesResult, name: str) -> float:
    value = getattr(result, name)
    assert value is not None and math.isfinite(value), name
    return float(value)


def test_spectral_entropy_white_noise_above_a_tone(sounds: dict[str, IndicesResult]) -> None:
    assert v(sounds["noise"], "hf") > 0.95
    assert v(sounds["noise"], "hf") > v(sounds["tone"], "hf") + 0.5


def test_temporal_entropy_steady_sounds_above_bursts(sounds: dict[str, IndicesResult]) -> None:
    assert v(sounds["tone"], "ht") > 0.95 and v(sounds["noise"], "ht") > 0.95
    assert v(sounds["bursts"], "ht") < v(sounds["noise"], "ht") - 0.2


def test_diversity_and_evenness(sounds: dict[str, IndicesResult]) -> None:
    # Noise fills every 1 kHz band: most diverse, perfectly even (Gini 0); a tone fills one.
    assert v(sounds["noise"], "adi") == pytest.approx(math.log(8), abs=0.01)  # 8 bands to 8 kHz
    assert v(sounds["noise"], "adi") > v(sounds["tone"], "adi")
    assert v(sounds["noise"], "aei") < 0.01 < v(sounds["tone"], "aei")


def test_ndsi_sign_follows_anthropophony_and_biophony(sounds: dict[str, IndicesResult]) -> None:
    assert v(sounds["low"], "ndsi") < -0.9  # energy below 1 kHz only
    assert v(sounds["high"], "ndsi") > 0.9  # energy between 1 and 8 kHz only
    assert -0.9 < v(sounds["noise"], "ndsi") < 0.9


def test_bioacoustic_index_and_complexity(sounds: dict[str, IndicesResult]) -> None:
    # BI: spectrum above its minimum in 2-8 kHz, flat for white noise, peaked for a 3 kHz tone.
    assert v(sounds["high"], "bi") > v(sounds["noise"], "bi")
    # ACI: frame-to-frame intensity changes; bursts change more than steady noise.
    assert v(sounds["bursts"], "aci") > v(sounds["noise"], "aci")


def test_events_count_bursts_not_steady_sound(sounds: dict[str, IndicesResult]) -> None:
    assert sounds["bursts"].events == 5
    assert sounds["noise"].events == 0 and sounds["tone"].events == 0


def test_silence_is_undefined_not_nan(sounds: dict[str, IndicesResult]) -> None:
    silent = sounds["silence"]
    assert silent.events == 0
    assert all(getattr(silent, n) is None for n in ("aci", "adi", "aei", "bi", "ndsi", "ht", "hf"))
    assert IndicesResult.decode(silent.encode()) == silent


def test_a_constant_code_is_silence_not_maximal_diversity() -> None:
    """A muted or stuck converter sends one code (often -1 LSB): there is no spectrum, so no
    entropy or diversity to report (maad would read its rounding noise as a flat spectrum)."""
    stuck = indices(np.full(SECONDS * RATE, -1 / 32768))
    assert stuck.events == 0
    assert all(getattr(stuck, n) is None for n in ("aci", "adi", "aei", "bi", "ndsi", "ht", "hf"))


def test_windows_are_aligned_and_need_enough_audio() -> None:
    windows = IndicesWindows("yor", length=4.0, min_coverage=0.5)
    x = white_noise(1.0, RATE, rms=0.1)
    jobs = []
    for s in range(9):  # 9 s from T0: windows [T0, T0+4), [T0+4, T0+8), then 1 s left open
        jobs += windows.add(T0 + s, RATE, s, x)
    assert [(j.start, j.seq, len(j.samples)) for j in jobs] == [
        (T0, 0, 4 * RATE),
        (T0 + 4, 4, 4 * RATE),
    ]
    assert windows.flush() == []  # 1 s of 4 is below the 50 % coverage
    assert compute(IndicesJob("yor", 0, T0, 4.0, RATE, x[:1000])) is None  # too short


def test_a_window_with_a_gap_publishes_its_coverage() -> None:
    """Chunks 0-4 of a 10 s window arrive, 5-9 are lost, then the next window starts: the
    window is analysed over its 5 s and says so, so that its lower ACI can be read for what it
    is."""
    core = LevelsCore(DeviceRegistry(), indices_seconds=10.0, indices_min_coverage=0.5)
    start = math.floor(T0 / 10) * 10
    jobs: list[IndicesJob] = []
    for seq in [*range(5), 10]:
        x = white_noise(1.0, RATE, rms=0.1, seed=seq)
        jobs += core.process(AudioChunk.from_float("yor", seq, start + seq, RATE, x)).jobs
    (job,) = jobs
    result = compute(job)
    assert result is not None
    assert (result.start, result.duration) == (start, 10.0)
    assert result.coverage == pytest.approx(0.5, abs=0.02)
    full = indices(white_noise(SECONDS, RATE, rms=0.1))
    assert full.coverage == pytest.approx(1.0)
    assert IndicesResult.decode(result.encode()) == result


def test_coverage_is_published_for_silence_too(sounds: dict[str, IndicesResult]) -> None:
    assert sounds["silence"].coverage == pytest.approx(1.0)
