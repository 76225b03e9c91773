"""A and C weighting against IEC 61672-1 table values and class 1 limits; state across chunks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as sig

from services.levels.weighting import (
    FastWeighting,
    Weighting,
    WeightingFilter,
    analog_db,
    design,
    fast_weigh,
    response_db,
    spectrum,
    weigh,
)

KINDS: tuple[Weighting, ...] = ("A", "C")

# IEC 61672-1:2013 table 3: nominal frequency, A, C (dB), class 1 limits (+, -) in dB.
IEC_TABLE = [
    (31.5, -39.4, -3.0, 1.5, 1.5),
    (40, -34.6, -2.0, 1.0, 1.0),
    (50, -30.2, -1.3, 1.0, 1.0),
    (63, -26.2, -0.8, 1.0, 1.0),
    (80, -22.5, -0.5, 1.0, 1.0),
    (100, -19.1, -0.3, 1.0, 1.0),
    (125, -16.1, -0.2, 1.0, 1.0),
    (160, -13.4, -0.1, 1.0, 1.0),
    (200, -10.9, 0.0, 1.0, 1.0),
    (250, -8.6, 0.0, 1.0, 1.0),
    (315, -6.6, 0.0, 1.0, 1.0),
    (400, -4.8, 0.0, 1.0, 1.0),
    (500, -3.2, 0.0, 1.0, 1.0),
    (630, -1.9, 0.0, 1.0, 1.0),
    (800, -0.8, 0.0, 1.0, 1.0),
    (1000, 0.0, 0.0, 0.7, 0.7),
    (1250, 0.6, 0.0, 1.0, 1.0),
    (1600, 1.0, -0.1, 1.0, 1.0),
    (2000, 1.2, -0.2, 1.0, 1.0),
    (2500, 1.3, -0.3, 1.0, 1.0),
    (3150, 1.2, -0.5, 1.0, 1.0),
    (4000, 1.0, -0.8, 1.0, 1.0),
    (5000, 0.5, -1.3, 1.5, 1.5),
    (6300, -0.1, -2.0, 1.5, 2.0),
    (8000, -1.1, -3.0, 1.5, 2.5),
]


def _exact(nominal: float) -> float:
    """The exact base-10 frequency behind a nominal table frequency."""
    x = round(10 * np.log10(nominal / 1000))
    return float(1000 * 10 ** (x / 10))


def test_analogue_formula_reproduces_the_table() -> None:
    for nominal, a, c, _, _ in IEC_TABLE:
        f = _exact(nominal)
        assert float(analog_db("A", f)) == pytest.approx(a, abs=0.05), nominal
        assert float(analog_db("C", f)) == pytest.approx(c, abs=0.05), nominal


@pytest.mark.parametrize("rate", [16000, 22050, 32000, 44100, 48000, 96000])
@pytest.mark.parametrize("kind", KINDS)
def test_digital_filter_within_class_1_limits(kind: Weighting, rate: int) -> None:
    rows = [r for r in IEC_TABLE if _exact(r[0]) < rate / 2 * 0.999]
    freqs = np.array([_exact(r[0]) for r in rows])
    got = response_db(kind, rate, freqs)
    for (nominal, a, c, plus, minus), value in zip(rows, got, strict=True):
        goal = a if kind == "A" else c
        assert goal - minus <= value <= goal + plus, (kind, rate, nominal, value)
        # And far tighter than the standard asks: the design follows the analogue curve.
        assert value == pytest.approx(float(analog_db(kind, _exact(nominal))), abs=0.01)
    if rate >= 16000:
        assert any(r[0] == 6300 for r in rows)


def _tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.asarray(0.1 * np.sin(2 * np.pi * freq * t))


@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.parametrize("nominal", [31.5, 100, 1000, 4000, 6300])
def test_weighted_sines_streamed_in_chunks(rate: int, nominal: float) -> None:
    """A sine filtered chunk by chunk is weighted as the table says (level re unweighted)."""
    f = _exact(nominal)
    x = _tone(f, 3.0, rate)
    for kind in KINDS:
        filt = WeightingFilter(kind, rate)
        y = np.concatenate([filt.process(part) for part in np.array_split(x, 6)])
        steady = slice(rate, None)  # after the 20 Hz poles have settled
        got = 10 * np.log10(np.mean(y[steady] ** 2) / np.mean(x[steady] ** 2))
        want = float(analog_db(kind, f))
        assert got == pytest.approx(want, abs=0.05), (kind, nominal)


def test_filters_carry_state_across_chunk_boundaries() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(16000 * 3)
    for kind in KINDS:
        whole = WeightingFilter(kind, 16000).process(x)
        filt = WeightingFilter(kind, 16000)
        parts = [filt.process(p) for p in np.array_split(x, [1, 777, 16000, 16001, 40000])]
        assert np.allclose(np.concatenate(parts), whole, rtol=0, atol=1e-12)
    whole_fast = FastWeighting(16000).process(x * x)
    fast = FastWeighting(16000)
    parts = [fast.process(p * p) for p in np.array_split(x, [2000, 2005, 16000, 30001])]
    assert np.allclose(np.concatenate(parts), whole_fast, rtol=1e-12, atol=0)


def test_fast_time_constant_is_125_ms() -> None:
    """After a step down, the Fast level falls by 10 log10(e) dB per 125 ms (34.7 dB/s)."""
    rate = 16000
    fast = FastWeighting(rate)
    fast.process(np.ones(rate))
    decay = fast.process(np.zeros(rate))
    drop = 10 * np.log10(decay[round(0.125 * rate) - 1] / 1.0)
    assert drop == pytest.approx(-10 * np.log10(np.e), abs=0.01)


def test_dc_offset_gives_no_weighted_energy() -> None:
    x = np.full(16000, 0.25)
    for kind in KINDS:
        y = WeightingFilter(kind, 16000).process(x)
        assert np.max(np.abs(y)) < 1e-9


@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.parametrize("kind", ["A", "C"])
def test_the_filter_equals_scipys_sosfilt_then_lfilter_chain(kind: Weighting, rate: int) -> None:
    # The FIR runs first, on the chunk's FFT, its wrap-around fixed from the previous chunk's
    # samples: every output equals scipy's sosfilt + lfilter(fir) chain (the filter as first
    # written) to rounding, over chunks of every kind of length, state carried across them.
    rng = np.random.default_rng(7)
    d = design(kind, rate)
    f = WeightingFilter(kind, rate)
    zi_sos, zi_fir = None, None
    for n in (16000, 1, 63, 62, 61, 2, 4000, 64, 16000, 5, 16001):
        x = rng.standard_normal(n) * 0.1 + 0.2  # with a DC offset, which the filter removes
        if zi_sos is None:
            zi_sos, zi_fir = sig.sosfilt_zi(d.sos) * x[0], np.zeros(len(d.fir) - 1)
        y, zi_sos = sig.sosfilt(d.sos, x, zi=zi_sos)
        expected, zi_fir = sig.lfilter(d.fir, [1.0], y, zi=zi_fir)
        np.testing.assert_allclose(f.process(x), expected, rtol=0, atol=1e-11)


def test_rows_are_filtered_as_their_own_streams() -> None:
    # A batch of rows gives each row what its filter alone would: rows of different streams,
    # one fresh, one far into its stream.
    rng = np.random.default_rng(11)
    for kind in KINDS:
        alone = [WeightingFilter(kind, 16000) for _ in range(3)]
        batch = [WeightingFilter(kind, 16000) for _ in range(3)]
        alone[0].process(rng.standard_normal(16000))
        batch[0]._history, batch[0]._zi = alone[0]._history, alone[0]._zi
        x = rng.standard_normal((3, 16000)) * np.array([[0.1], [1e-4], [0.5]])
        got = weigh(kind, 16000, x, spectrum(x), batch)
        for i in range(3):
            np.testing.assert_allclose(got[i], alone[i].process(x[i]), rtol=0, atol=1e-12)
    fast_alone = [FastWeighting(16000) for _ in range(2)]
    fast_alone[1].process(np.ones(100))
    fast_batch = [FastWeighting(16000), FastWeighting(16000)]
    fast_batch[1]._state = fast_alone[1]._state
    sq = rng.standard_normal((2, 16000)) ** 2
    got_fast = fast_weigh(sq, fast_batch)
    for i in range(2):
        assert np.array_equal(got_fast[i], fast_alone[i].process(sq[i]))
