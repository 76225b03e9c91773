"""From samples to decibels: the prototype's dB SPL, calibration maths and finite floors.

A sample value of 1.0 (digital full scale) is `Vadc / 2` volts at the ADC; the microphone
gives 10^(sensitivity/20) V/Pa and the preamplifier 10^(gain/20) times that, so one unit of
full scale is `pascal_per_unit(cal)` pascals. That is scikit-maad's `wav2pressure` (>= 1.5.1;
older releases left out the `/ 2` and read 6 dB high, scikit-maad issue #105).

Every level here is finite: mean squares below `FLOOR_MS` (-200 dBFS) read as that floor, so
digital silence gives a low, finite number instead of -inf, and NaN never appears.
"""

from __future__ import annotations

import math

import numpy as np

from shared.messages import AudioChunk, Calibration

#: Reference sound pressure in air, Pa.
P_REF = 20e-6
#: Smallest mean square (re full scale squared) that reads as a level: -200 dBFS.
FLOOR_MS = 1e-20
#: The range the message fields accept (shared.messages.common.Decibel).
DB_MIN, DB_MAX = -400.0, 400.0


def pascal_per_unit(cal: Calibration) -> float:
    """Sound pressure, Pa, of a sample value of 1.0 (digital full scale)."""
    return float(cal.vadc / 2 / 10 ** (cal.sensitivity_dbv / 20) / 10 ** (cal.gain_db / 20))


def _clamp(db: float) -> float:
    return min(max(db, DB_MIN), DB_MAX)


def ms_to_dbfs(mean_square: float) -> float:
    """A mean square re full scale as dBFS (full-scale sine: -3.01 dBFS), floored."""
    return _clamp(10 * math.log10(max(float(mean_square), FLOOR_MS)))


def ms_to_spl(mean_square: float, cal: Calibration) -> float:
    """A mean square re full scale as dB SPL under `cal`, floored."""
    offset = 20 * math.log10(pascal_per_unit(cal) / P_REF)
    return _clamp(10 * math.log10(max(float(mean_square), FLOOR_MS)) + offset)


def floor_spl(cal: Calibration) -> float:
    """The level digital silence reads as under `cal`, dB SPL."""
    return ms_to_spl(0.0, cal)


def spl_rows(mean_squares: np.ndarray, cal: Calibration) -> np.ndarray:
    """`ms_to_spl` of each of an array of mean squares (same floor and range)."""
    offset = 20 * math.log10(pascal_per_unit(cal) / P_REF)
    spl = 10 * np.log10(np.maximum(np.asarray(mean_squares, dtype=np.float64), FLOOR_MS))
    return np.asarray(np.clip(spl + offset, DB_MIN, DB_MAX))


def prototype_leq(samples: np.ndarray, cal: Calibration) -> float:
    """Z-weighted Leq as the prototype computes it: `mean_dB(wav2dBSPL(x, gain, sensitivity,
    Vadc))`.

    maad turns each sample into a level, 20 log10(|p| / P_REF) with p = x * `pascal_per_unit`,
    and `mean_dB` averages their energies, 10^(L/10) = p^2 / P_REF^2, so its result is exactly
    10 log10(mean(p^2) / P_REF^2): `ms_to_spl` of the samples' mean square (which is how the
    levels core computes it, from the mean square it needs for dBFS anyway). Computed so, in
    float64, it skips maad's two transcendental functions per sample; maad itself gives the
    same to rounding (tested: 1e-9 dB on float64 samples; on float32 samples maad computes in
    float32 and returns a float32, within its resolution, 7.6e-6 dB near 70 dB). Silence
    (where maad returns -inf or a -3000 dB artefact) reads as `floor_spl(cal)`.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return floor_spl(cal)
    return ms_to_spl(float(np.mean(x * x)), cal)


#: Highest S32_LE code a 24-bit converter gives (its top code, left-justified): most "32-bit"
#: sound cards are 24-bit ADCs whose low byte is always zero, so they never reach 2^31 - 1.
S32_TOP_OF_24 = (2**23 - 1) << 8


def is_clipped(chunk: AudioChunk) -> bool:
    """True when any sample of any channel sits at digital full scale (either rail).

    For S32_LE the positive rail is the top code of a 24-bit converter (2^31 - 256), so a
    24-bit ADC in a 32-bit container is flagged too.
    """
    dtype = "<i2" if chunk.width == 2 else "<i4"
    raw = np.frombuffer(chunk.pcm, dtype=dtype)
    bottom = -(2 ** (8 * chunk.width - 1))
    top = 2**15 - 1 if chunk.width == 2 else S32_TOP_OF_24
    return bool(raw.max() >= top or raw.min() <= bottom)
