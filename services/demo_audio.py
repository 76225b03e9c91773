"""Pure: the demo's sound scenes, generated in memory (no recording of anybody, no file).

Each part is made to be recognised by the shipped model (YAMNet): docs/demo.md
lists what YAMNet says about every part, measured with `python -m services.demo_audio`.

- traffic: passing vehicles, each an engine (firing frequency with its harmonics) plus tyre
  noise (band-passed noise), heard from the kerb: the received sound is the source delayed by
  its distance over the speed of sound and attenuated with distance, which gives the Doppler
  shift and the swell of a pass-by;
- birdsong: trills of short frequency-modulated whistles between 2.5 and 6 kHz;
- speech: a sentence from espeak-ng (when installed; silence otherwise);
- siren: a wailing emergency siren, passing with a Doppler shift.

A scene is a mix of these parts over a bed of distant traffic; a device's scene is chosen by
its place (`SCENES`), so the demo fleet's devices sound, and measure, differently.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable
from functools import lru_cache
from typing import Final

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

RATE: Final = 16000
SPEED_OF_SOUND: Final = 343.0
SENTENCE: Final = "Good morning. The bus to the station leaves in five minutes."

Part = Callable[[float, np.random.Generator], np.ndarray]


def _rms_normalised(x: np.ndarray, rms: float) -> np.ndarray:
    level = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    return x * (rms / level) if level > 0 else x


def _received(source: np.ndarray, speed: float, distance: float, t_closest: float) -> np.ndarray:
    """What a listener `distance` m from a straight road hears of `source` (samples at RATE)
    moving at `speed` m/s, closest at `t_closest` s: delayed by r/c, attenuated as 1/r."""
    n = len(source)
    t = np.arange(n) / RATE
    # Emission time te solves t = te + r(te)/c; one fixed-point pass per iteration is plenty.
    te = t.copy()
    for _ in range(4):
        r = np.hypot(speed * (te - t_closest), distance)
        te = t - r / SPEED_OF_SOUND
    r = np.hypot(speed * (te - t_closest), distance)
    delayed = np.interp(te * RATE, np.arange(n), source, left=0.0, right=0.0)
    out: np.ndarray = delayed * (distance / r)
    return out


def vehicle(seconds: float, rng: np.random.Generator, speed: float = 14.0,
            rpm: float = 2400.0, distance: float = 6.0) -> np.ndarray:  # fmt: skip
    """One vehicle passing at the middle of `seconds`: engine harmonics plus tyre noise."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    firing = rpm / 60.0 * 2  # a four-cylinder four-stroke fires twice per revolution
    wobble = 1 + 0.01 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(firing * wobble) / RATE
    engine = sum(
        ((1.0 / k) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, 16)),
        np.zeros(n),
    )
    # Combustion is rough: each firing differs (noise on the amplitude); the body and the
    # exhaust keep little above 1 kHz.
    engine = engine * (1 + 0.5 * rng.standard_normal(n))
    engine = signal.sosfilt(signal.butter(2, 1000, fs=RATE, output="sos"), engine)
    tyre_band = signal.butter(2, [150, 900], btype="bandpass", fs=RATE, output="sos")
    tyre = signal.sosfilt(tyre_band, rng.standard_normal(n))
    source = _rms_normalised(engine, 1.0) + 0.5 * _rms_normalised(tyre, 1.0)
    return _received(source, speed, distance, seconds / 2)


def traffic(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Vehicles passing one after another (one every 4 s or so), at -20 dBFS RMS."""
    n = int(seconds * RATE)
    out = np.zeros(n)
    start = -2.0
    while start < seconds:
        length = 8.0
        car = vehicle(length, rng, speed=rng.uniform(10, 17), rpm=rng.uniform(1800, 3200))
        a, b = int(start * RATE), int(start * RATE) + len(car)
        lo, hi = max(a, 0), min(b, n)
        out[lo:hi] += car[lo - a : hi - a]
        start += rng.uniform(3.0, 5.0)
    return _rms_normalised(out, 0.1)


def birdsong(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Trills of whistles: 1.5 s songs of 10-14 notes, a pause of about a second between."""
    n = int(seconds * RATE)
    out = np.zeros(n)
    at = 0.2
    while at < seconds:
        notes = int(rng.integers(10, 15))
        base = rng.uniform(2800, 4200)
        for k in range(notes):
            length = int(0.07 * RATE)
            tc = np.arange(length) / RATE
            f0 = base * (1 + 0.15 * np.sin(k))
            sweep = f0 + 1800 * np.sin(np.pi * tc / 0.07)  # up then down
            note = np.sin(2 * np.pi * np.cumsum(sweep) / RATE) * np.hanning(length)
            c0 = int((at + k * 0.11) * RATE)
            if c0 + length <= n:
                out[c0 : c0 + length] += note
        at += notes * 0.11 + rng.uniform(0.6, 1.2)
    return _rms_normalised(out, 0.08)


@lru_cache(maxsize=4)
def _espeak(text: str) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return np.zeros(0)
    wav = subprocess.run([exe, "--stdout", text], check=True, capture_output=True).stdout
    data, sr = sf.read(io.BytesIO(wav), dtype="float32")
    data = data.mean(axis=1) if data.ndim > 1 else data
    return np.asarray(soxr.resample(data, sr, RATE), dtype=np.float64)


def speech(seconds: float, _rng: np.random.Generator) -> np.ndarray:
    """The sentence, repeated to fill `seconds` (with a pause between), at -18 dBFS RMS."""
    n = int(seconds * RATE)
    voice = _espeak(SENTENCE)
    out = np.zeros(n)
    if voice.size == 0:
        return out
    voice = _rms_normalised(voice, 0.12)
    step = len(voice) + RATE // 2
    for a in range(0, n, step):
        part = voice[: n - a]
        out[a : a + len(part)] += part
    return out


def siren(seconds: float, _rng: np.random.Generator) -> np.ndarray:
    """A wailing siren (700-1600 Hz, 2 s cycle, three harmonics) on a vehicle passing by."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    freq = 1150 + 450 * np.sin(2 * np.pi * t / 2.0)
    phase = 2 * np.pi * np.cumsum(freq) / RATE
    tone = sum((np.sin(k * phase) / k for k in (1, 2, 3)), np.zeros(n))
    source = _rms_normalised(tone, 1.0)
    return _rms_normalised(_received(source, 12.0, 15.0, seconds / 2), 0.15)


#: The parts, by name (the names `scene` accepts).
PARTS: Final[dict[str, Part]] = {
    "traffic": traffic,
    "birdsong": birdsong,
    "speech": speech,
    "siren": siren,
}
#: A scene per kind of place: (part, start s, length s, gain) over distant traffic.
SCENES: Final[dict[str, tuple[tuple[str, float, float, float], ...]]] = {
    "street": (("traffic", 0, 20, 1.0), ("speech", 6, 6, 0.8), ("siren", 13, 7, 0.9)),
    "park": (("birdsong", 0, 20, 1.0), ("speech", 11, 6, 0.5)),
    "square": (("speech", 0, 8, 1.0), ("birdsong", 8, 6, 0.8), ("traffic", 12, 8, 0.6)),
}
#: Overall gain of each scene: a street is louder than a park.
SCENE_GAIN: Final = {"street": 1.2, "park": 0.4, "square": 0.8}
#: Level of the distant-traffic bed under every scene, relative to a passing car.
BED_GAIN: Final = 0.08


def part(name: str, seconds: float, seed: int = 1) -> np.ndarray:
    """One part alone, float64 at RATE."""
    return PARTS[name](seconds, np.random.default_rng(seed))


def scene(kind: str, seconds: float = 20.0, seed: int = 1) -> np.ndarray:
    """The scene of a kind of place, float32 at RATE, `seconds` long: the parts of `SCENES`
    scaled into that length (a short scene has every part, each shorter)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    scale = seconds / 20.0
    out = BED_GAIN * traffic(seconds, rng)
    for name, start, length, gain in SCENES[kind]:
        a = int(start * scale * RATE)
        piece = gain * PARTS[name](length * scale, rng)
        piece = piece[: n - a]
        out[a : a + len(piece)] += piece
    clipped: np.ndarray = np.clip(SCENE_GAIN[kind] * out, -1, 1).astype(np.float32)
    return clipped


def pcm16(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] as S16_LE bytes."""
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2").tobytes()


def street_scene(seconds: int = 30, seed: int = 1) -> np.ndarray:
    """The street scene, float32 at RATE (what `soundscape simulate` replays)."""
    return scene("street", float(seconds), seed)


def _report() -> None:  # pragma: no cover - a developer's tool, its output is in the docs
    """Print YAMNet's top classes for each part and each scene, per second."""
    from services.inference.backends.yamnet import YamNet
    from services.inference.settings import default_yamnet_dir

    model = YamNet.from_folder(default_yamnet_dir())
    clips = {name: part(name, 8.0).astype(np.float32) for name in PARTS}
    clips.update({f"scene {kind}": scene(kind) for kind in SCENES})
    for name, clip in clips.items():
        windows = [clip[i : i + RATE] for i in range(0, len(clip) - RATE + 1, RATE)]
        scores = model.scores(windows)
        mean = scores.mean(axis=0)
        top = np.argsort(mean)[::-1][:5]
        tops = ", ".join(f"{model.labels[i]} {mean[i]:.2f}" for i in top)
        firsts = [model.labels[int(np.argmax(s))] for s in scores]
        print(f"{name}: mean {tops}\n  top-1 per second: {', '.join(firsts)}")


if __name__ == "__main__":  # pragma: no cover
    _report()
