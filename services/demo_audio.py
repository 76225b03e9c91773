"""A sample recording for demos on machines without a microphone.

Thirty seconds of a street corner made from scratch: traffic-like noise, a bird-like chirp
series, a spoken sentence (espeak-ng when installed) and a 1 kHz tone. Saved as an
AudioMoth-named WAV so the file source takes its start time from the name. This is a made-up
sample, not a recording of anybody: the privacy rule about raw audio concerns captured sound.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

RATE = 16000


def _speech(text: str) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return np.zeros(0, dtype=np.float32)
    wav = subprocess.run([exe, "--stdout", text], check=True, capture_output=True).stdout
    data, sr = sf.read(io.BytesIO(wav), dtype="float32")
    data = data.mean(axis=1) if data.ndim > 1 else data
    return np.asarray(soxr.resample(data, sr, RATE), dtype=np.float32)


def street_scene(seconds: int = 30, seed: int = 1) -> np.ndarray:
    """The demo scene as float32 samples at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = seconds * RATE
    t = np.arange(n) / RATE
    # Traffic: noise low-passed at about 500 Hz, swelling as cars pass, around -30 dBFS RMS.
    lowpass = signal.butter(2, 500, fs=RATE, output="sos")
    rumble = signal.sosfilt(lowpass, rng.standard_normal(n))
    swell = 0.3 + 0.7 * np.sin(np.pi * t / 9.0) ** 2
    scene = 0.03 * swell * rumble / np.sqrt(np.mean(rumble**2))
    # Bird: 4-6 kHz chirps, eight per second for two seconds, twice.
    for start in (3.0, 17.0):
        for k in range(16):
            c0 = int((start + k / 8) * RATE)
            m = int(0.06 * RATE)
            tc = np.arange(m) / RATE
            chirp = np.sin(2 * np.pi * (4000 * tc + 16000 * tc**2)) * np.hanning(m)
            scene[c0 : c0 + m] += 0.2 * chirp
    voice = _speech("Good morning. This is the soundscape monitor demo on York Road.")
    v0 = 8 * RATE
    voice = voice[: n - v0]
    scene[v0 : v0 + len(voice)] += 0.6 * voice
    t0 = 24 * RATE
    scene[t0 : t0 + 3 * RATE] += 0.25 * np.sin(2 * np.pi * 1000 * t[: 3 * RATE])
    clipped: np.ndarray = np.clip(scene, -1, 1).astype(np.float32)
    return clipped


def write_sample(folder: Path, start: datetime | None = None, seconds: int = 30) -> Path:
    """Write the scene as `<folder>/YYYYMMDD_HHMMSS.WAV` (16-bit, 16 kHz) and return its path."""
    start = start or datetime.now(UTC).replace(microsecond=0)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{start:%Y%m%d_%H%M%S}.WAV"
    sf.write(path, street_scene(seconds), RATE, subtype="PCM_16")
    return path
