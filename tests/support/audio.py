"""Real test audio: generated tones and noise with numpy, speech with espeak-ng."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


def tone(freq: float, seconds: float, rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    """A sine of `amplitude` (peak, full scale 1.0) as float32."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def white_noise(seconds: float, rate: int = 16000, rms: float = 0.1, seed: int = 0) -> np.ndarray:
    """Gaussian white noise with the given RMS, float32."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * rate)) * rms).astype(np.float32)


def speech(text: str, rate: int = 16000) -> np.ndarray:
    """`text` spoken by espeak-ng, resampled to `rate`, float32."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng")
    wav = subprocess.run([exe, "--stdout", text], check=True, capture_output=True).stdout
    import io

    data, sr = sf.read(io.BytesIO(wav), dtype="float32")
    if data.ndim > 1:
        data = data.mean(axis=1)
    out: np.ndarray = soxr.resample(data, sr, rate) if sr != rate else data
    return out.astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """Write float samples as 16-bit PCM WAV."""
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


def speech_and_tone_wav(path: Path, seconds: int = 4, rate: int = 16000) -> Path:
    """A test recording: speech, then a 1 kHz tone, padded or cut to exactly `seconds`."""
    voice = speech("The quick brown fox jumps over the lazy dog near the station.", rate)
    sig = np.concatenate([voice, tone(1000, seconds, rate, 0.3)])[: seconds * rate]
    sig = np.pad(sig, (0, seconds * rate - len(sig)))
    return write_wav(path, sig, rate)
