"""`soundscape calibrate`: a microphone's sensitivity from a recording of an acoustic calibrator.

    soundscape calibrate --file rec.wav --level 94 [--gain 25 --vadc 1.25] [--device yor]

A multi-channel recording is mixed the way the levels service mixes a chunk (the mean of its
channels), so the printed calibration makes the service read the calibrator's level; `--channel`
picks one channel instead.

Record the calibrator (1 kHz at 94 or 114 dB SPL) through the sensor exactly as it runs, with
the gain it runs at, and give the recording here. The tone is taken from a 1 kHz band
(900-1100 Hz, from a Hann-windowed spectrum, so background noise outside the band does not
count), its RMS compared with the calibrator's pressure:

    sensitivity (dB re 1 V/Pa) = 20 log10(rms x Vadc / 2 / 10^(gain/20) / p_cal)

where p_cal = 20 uPa x 10^(level/20). This is the inverse of scikit-maad's `wav2pressure`, so
levels measured with the printed calibration read `level` dB SPL for this tone. The command
prints the sensitivity and a TOML snippet for the device registry; it writes nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from pydantic import ValidationError

from services.levels.measure import P_REF
from shared.messages import Calibration

#: Half width of the band around 1 kHz that holds the calibrator tone, Hz.
BAND = (900.0, 1100.0)
#: Seconds cut from each end: the calibrator being fitted or removed.
TRIM_SECONDS = 0.5
#: Shortest usable recording (after trimming), seconds.
MIN_SECONDS = 1.0


class CalibrationError(ValueError):
    """The recording cannot give a sensitivity; the text says why."""


@dataclass(frozen=True)
class CalibrationResult:
    """A derived sensitivity and how much to trust it."""

    sensitivity_dbv: float
    tone_rms: float  # RMS of the 1 kHz band, re full scale
    tone_fraction: float  # share of the recording's energy in the 1 kHz band
    stability_db: float  # spread of the tone level across 1 s pieces, dB
    clipped: bool


def tone_rms(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """(RMS of the 900-1100 Hz band, that band's share of the total energy)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x - x.mean()
    window = np.hanning(len(x))
    spec = np.fft.rfft(x * window)
    power = (spec.real**2 + spec.imag**2) * 2 / (len(x) * float(np.sum(window**2)))
    power[0] /= 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    band = (freqs >= BAND[0]) & (freqs <= BAND[1])
    total = float(power.sum())
    in_band = float(power[band].sum())
    return math.sqrt(in_band), (in_band / total if total > 0 else 0.0)


def trimmed(x: np.ndarray, rate: int) -> np.ndarray:
    """The recording less `TRIM_SECONDS` at each end, when enough remains."""
    trim = round(TRIM_SECONDS * rate)
    return x[trim : len(x) - trim] if len(x) - 2 * trim >= MIN_SECONDS * rate else x


def is_clipped(x: np.ndarray) -> bool:
    """True when a sample of any channel reaches 16-bit full scale (or beyond)."""
    return bool(x.size) and bool(np.max(np.abs(x)) >= 32767 / 32768)


def sensitivity_from(
    samples: np.ndarray, rate: int, level_db: float, gain_db: float, vadc: float
) -> CalibrationResult:
    """Derive the sensitivity from a calibrator recording (float samples, full scale 1.0)."""
    x = trimmed(np.asarray(samples, dtype=np.float64), rate)
    if len(x) < MIN_SECONDS * rate:
        raise CalibrationError(f"recording too short: need at least {MIN_SECONDS:g} s of tone")
    if rate < 2 * BAND[1]:
        raise CalibrationError(f"sample rate {rate} Hz cannot hold a 1 kHz tone")
    rms, fraction = tone_rms(x, rate)
    if rms <= 0:
        raise CalibrationError("no 1 kHz tone in the recording (silence)")
    pieces = [x[i : i + rate] for i in range(0, len(x) - rate + 1, rate)]
    piece_db = [20 * math.log10(max(tone_rms(p, rate)[0], 1e-12)) for p in pieces]
    pressure = P_REF * 10 ** (level_db / 20)
    sensitivity = 20 * math.log10(rms * vadc / 2 / 10 ** (gain_db / 20) / pressure)
    return CalibrationResult(
        sensitivity_dbv=sensitivity,
        tone_rms=rms,
        tone_fraction=fraction,
        stability_db=max(piece_db) - min(piece_db),
        clipped=is_clipped(x),
    )


def toml_snippet(device: str | None, cal: Calibration) -> str:
    """The registry lines for this calibration."""
    head = f'[[device]]\nid = "{device}"\n' if device else ""
    return (
        f"{head}[device.calibration]\n"
        f"gain_db = {cal.gain_db:g}\n"
        f"sensitivity_dbv = {cal.sensitivity_dbv:.2f}\n"
        f"vadc = {cal.vadc:g}\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Print the sensitivity derived from a calibrator recording and a registry snippet."""
    parser = argparse.ArgumentParser(
        prog="soundscape calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--file", required=True, type=Path, help="WAV/FLAC recording to read")
    parser.add_argument(
        "--level", type=float, default=94.0, help="calibrator level, dB SPL (94 or 114)"
    )
    parser.add_argument("--gain", type=float, default=25.0, help="gain the sensor runs at, dB")
    parser.add_argument("--vadc", type=float, default=1.25, help="ADC full scale, V peak-to-peak")
    parser.add_argument(
        "--channel",
        type=int,
        help="use only this channel (from 0); default: the mean of all channels, as the levels "
        "service measures",
    )
    parser.add_argument("--device", help="device id to put in the TOML snippet")
    args = parser.parse_args(argv)
    try:
        data, rate = sf.read(args.file, dtype="float64", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        print(f"soundscape calibrate: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if args.channel is None:
        samples = data.mean(axis=1)  # as the service: AudioChunk.mono()
    elif 0 <= args.channel < data.shape[1]:
        samples = data[:, args.channel]
    else:
        print(f"soundscape calibrate: no channel {args.channel} in {args.file}", file=sys.stderr)
        return 2
    try:
        result = sensitivity_from(samples, rate, args.level, args.gain, args.vadc)
        cal = Calibration(
            gain_db=args.gain, sensitivity_dbv=round(result.sensitivity_dbv, 2), vadc=args.vadc
        )
    except CalibrationError as exc:
        print(f"soundscape calibrate: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"soundscape calibrate: implausible calibration: {exc}", file=sys.stderr)
        return 1
    if result.clipped or is_clipped(trimmed(data, rate)):  # any channel, not just the mix
        print("warning: the recording clips; lower the gain and record again", file=sys.stderr)
    if result.tone_fraction < 0.9:
        print(
            f"warning: only {result.tone_fraction:.0%} of the energy is at 1 kHz; "
            "is the calibrator on and the room quiet?",
            file=sys.stderr,
        )
    if result.stability_db > 0.5:
        print(
            f"warning: the tone level varies by {result.stability_db:.1f} dB; "
            "hold the calibrator steady",
            file=sys.stderr,
        )
    print(f"sensitivity: {result.sensitivity_dbv:.2f} dB re 1 V/Pa")
    print(
        f"(1 kHz tone at {20 * math.log10(result.tone_rms):.2f} dBFS RMS, "
        f"{args.level:g} dB SPL, gain {args.gain:g} dB, Vadc {args.vadc:g} V)"
    )
    print()
    print(toml_snippet(args.device, cal), end="")
    return 0
