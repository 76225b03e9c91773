"""Per-chunk levels: the prototype's dB SPL checked by hand, A/C Leq, peak, dBFS, bands, floors."""

from __future__ import annotations

import math

import maad
import numpy as np
import pytest
from maad.spl import wav2dBSPL
from maad.util import mean_dB

from services.levels.bands import band_mean_squares, partition
from services.levels.core import LevelsCore
from services.levels.measure import floor_spl, prototype_leq
from shared.devices import DeviceRegistry
from shared.messages import AudioChunk, Calibration, LevelsResult
from tests.support.audio import tone, white_noise

T0 = 1_764_400_000.0
DEFAULT = Calibration()


def analytic_sine_spl(amplitude: float, cal: Calibration) -> float:
    """dB SPL of a sine of `amplitude` (re full scale), by hand.

    Full scale is Vadc/2 volts; the microphone gives 10^(S/20) V/Pa after 10^(G/20) of gain:
    p_peak = A x Vadc/2 / 10^(S/20) / 10^(G/20) Pa, p_rms = p_peak / sqrt(2), L = 20 log10(p_rms /
    20 uPa).
    """
    p_peak = amplitude * cal.vadc / 2 / 10 ** (cal.sensitivity_dbv / 20) / 10 ** (cal.gain_db / 20)
    return 20 * math.log10(p_peak / math.sqrt(2) / 20e-6)


def measure(samples: np.ndarray, rate: int = 16000, core: LevelsCore | None = None) -> LevelsResult:
    chunk = AudioChunk.from_float("yor", 0, T0, rate, samples)
    return (core or LevelsCore(DeviceRegistry())).process(chunk).levels


def test_installed_maad_has_the_corrected_spl_conversion() -> None:
    major, minor, patch = (int(p) for p in maad.__version__.split(".")[:3])
    assert (major, minor, patch) >= (1, 5, 1)


def test_prototype_defaults_against_a_number_worked_out_by_hand() -> None:
    # A = 0.5, Vadc 1.25 V, -18 dB/V, 25 dB: 1.0 full scale = 0.625 V / 0.12589 V/Pa / 17.783
    # = 0.27918 Pa; 0.5 peak = 0.13959 Pa, RMS 0.098704 Pa, 20 log10(0.098704 / 20e-6) = 73.866.
    x = tone(1000, 1.0, 16000, amplitude=0.5)
    assert analytic_sine_spl(0.5, DEFAULT) == pytest.approx(73.866, abs=0.001)
    got = prototype_leq(x, DEFAULT)
    assert got == pytest.approx(73.866, abs=0.05)
    # scikit-maad < 1.5.1 read 6.02 dB high (issue #105): that must not be what we get.
    assert abs(got - (73.866 + 6.02)) > 5


@pytest.mark.parametrize(
    ("amplitude", "cal"),
    [
        (0.5, DEFAULT),
        (0.01, DEFAULT),
        (0.9, Calibration(gain_db=0, sensitivity_dbv=-38, vadc=2.0)),
        (0.2, Calibration(gain_db=40, sensitivity_dbv=-44.5, vadc=3.3)),
    ],
)
@pytest.mark.parametrize("freq", [250.0, 1000.0, 3150.0])
def test_z_leq_is_analytic_and_equals_maad(amplitude: float, cal: Calibration, freq: float) -> None:
    x = tone(freq, 1.0, 16000, amplitude=amplitude)
    expected = analytic_sine_spl(amplitude, cal)
    got = prototype_leq(x, cal)
    assert got == pytest.approx(expected, abs=0.05)
    with np.errstate(divide="ignore"):  # the sine's zero crossings at t = 0 are exactly 0
        maad_value = float(
            mean_dB(wav2dBSPL(x, gain=cal.gain_db, sensitivity=cal.sensitivity_dbv, Vadc=cal.vadc))
        )
        maad_exact = float(
            mean_dB(
                wav2dBSPL(
                    x.astype(np.float64),
                    gain=cal.gain_db,
                    sensitivity=cal.sensitivity_dbv,
                    Vadc=cal.vadc,
                )
            )
        )
    # The prototype's computation in closed form: maad's own result on float64 samples to
    # rounding; on float32 samples maad computes in float32 and returns a float32, whose
    # resolution near 74 dB is 7.6e-6 dB.
    assert got == pytest.approx(maad_exact, abs=1e-9)
    assert got == pytest.approx(maad_value, abs=2e-5)


def test_chunk_levels_of_a_1_khz_tone() -> None:
    lv = measure(tone(1000, 1.0, 16000, amplitude=0.5))
    expected = analytic_sine_spl(0.5, DEFAULT)
    assert lv.leq_db == pytest.approx(expected, abs=0.05)
    assert lv.laeq_db == pytest.approx(expected, abs=0.05)  # A(1 kHz) = 0 dB
    assert lv.lceq_db == pytest.approx(expected, abs=0.05)  # C(1 kHz) = 0 dB
    assert lv.peak_db == pytest.approx(expected + 3.01, abs=0.05)  # crest factor of a sine
    assert lv.dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert lv.clipped is False
    assert lv.uncalibrated is True and lv.calibration == DEFAULT


def test_weightings_show_in_the_levels_of_low_tones() -> None:
    core = LevelsCore(DeviceRegistry())
    x = tone(100, 3.0, 16000, amplitude=0.5)
    levels = [
        core.process(AudioChunk.from_float("yor", s, T0 + s, 16000, x[s * 16000 : (s + 1) * 16000]))
        for s in range(3)
    ]
    last = levels[-1].levels  # settled filters
    assert last.laeq_db is not None and last.lceq_db is not None
    assert last.laeq_db - last.leq_db == pytest.approx(-19.1, abs=0.1)
    assert last.lceq_db - last.leq_db == pytest.approx(-0.3, abs=0.1)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("kind", ["noise", "tone", "mixture"])
def test_band_energies_add_up_to_the_broadband_level(rate: int, kind: str) -> None:
    rng = np.random.default_rng(7)
    noise = white_noise(1.0, rate, rms=0.05, seed=11)
    sig = {
        "noise": noise,
        "tone": tone(997, 1.0, rate, amplitude=0.3),
        "mixture": tone(120, 1.0, rate, 0.2) + tone(5100, 1.0, rate, 0.05) + 0.2 * noise,
    }[kind] + 0.001 * rng.standard_normal(rate).astype(np.float32)
    lv = measure(sig, rate)
    assert lv.bands is not None
    total = 10 * math.log10(sum(10 ** (v / 10) for v in lv.bands.values()))
    assert total == pytest.approx(lv.leq_db, abs=0.1)
    labels = list(lv.bands)
    assert labels[0] == "20" and "1000" in labels
    top = partition(rate, rate)[-1]
    assert float(top[0]) <= rate / 2 * 1.13  # the last band holds the Nyquist frequency


def test_a_tone_lands_in_its_band() -> None:
    lv = measure(tone(1000, 1.0, 16000, amplitude=0.5) + white_noise(1.0, rms=1e-4))
    assert lv.bands is not None
    loudest = max(lv.bands, key=lambda k: lv.bands[k] if lv.bands else 0)
    assert loudest == "1000"
    assert lv.bands["1000"] == pytest.approx(lv.leq_db, abs=0.05)
    assert list(lv.bands)[-1] == "8000"


def test_band_partition_is_exact_by_parseval() -> None:
    x = white_noise(1.0, 16000, rms=0.1, seed=5).astype(np.float64)
    bands = band_mean_squares(x, 16000)
    below = (np.abs(np.fft.rfft(x)[:18]) ** 2).sum()  # DC..17 Hz, not in any band
    below = (2 * below - np.abs(np.fft.rfft(x)[0]) ** 2) / len(x) ** 2
    assert sum(bands.values()) + below == pytest.approx(float(np.mean(x * x)), rel=1e-9)


def test_silence_reads_a_finite_floor_everywhere() -> None:
    lv = measure(np.zeros(16000, dtype=np.float32))
    floor = floor_spl(DEFAULT)
    assert math.isfinite(floor) and floor < -100
    values = [lv.leq_db, lv.laeq_db, lv.lceq_db, lv.peak_db, lv.dbfs, *(lv.bands or {}).values()]
    assert all(v is not None and math.isfinite(v) for v in values)
    assert lv.leq_db == floor and lv.laeq_db == floor and lv.dbfs == -200.0
    assert LevelsResult.decode(lv.encode()) == lv  # and it survives the wire


def test_clipping_is_flagged_on_either_rail_and_any_width() -> None:
    square = np.sign(tone(500, 1.0, 16000, amplitude=1.0)) * 1.2
    assert measure(square).clipped is True
    assert measure(-np.abs(tone(500, 1.0, 16000, 1.0))).clipped is True
    assert measure(tone(500, 1.0, 16000, 0.99)).clipped is False
    pcm = (np.array([0, 2**31 - 1, -5, 7] * 4000, dtype="<i4")).tobytes()
    chunk32 = AudioChunk(device="yor", seq=0, start=T0, rate=16000, width=4, pcm=pcm)
    assert LevelsCore(DeviceRegistry()).process(chunk32).levels.clipped is True


def test_a_24_bit_converter_in_a_32_bit_container_is_flagged_when_it_clips() -> None:
    def chunk32(peak: int) -> AudioChunk:
        codes = np.array([0, peak, -5, 7] * 4000, dtype="<i4")
        return AudioChunk(device="yor", seq=0, start=T0, rate=16000, width=4, pcm=codes.tobytes())

    top24 = (2**23 - 1) << 8  # the highest code of a 24-bit ADC, left-justified: 0x7fffff00
    assert LevelsCore(DeviceRegistry()).process(chunk32(top24)).levels.clipped is True
    one_below = (2**23 - 2) << 8
    assert LevelsCore(DeviceRegistry()).process(chunk32(one_below)).levels.clipped is False


def test_stereo_is_measured_as_the_mean_of_its_channels() -> None:
    x = tone(1000, 1.0, 16000, amplitude=0.4)
    lv = measure(np.stack([x, x], axis=1))
    assert lv.leq_db == pytest.approx(analytic_sine_spl(0.4, DEFAULT), abs=0.05)
