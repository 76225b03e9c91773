"""Pure maths: AST frames and position embeddings; YAMNet's numpy log-mel front end."""

from __future__ import annotations

import numpy as np
import pytest

from services.inference import yamnet_features as yf
from services.inference.positions import adapt_positions, frames_for, grid_shape
from tests.support.audio import tone, white_noise


# --- AST input length --------------------------------------------------------------------
def test_frames_and_grid_of_common_windows() -> None:
    assert frames_for(1.0) == 98
    assert frames_for(10.24) == 1022
    assert frames_for(0.01) == 0
    assert grid_shape(1024) == (12, 101)  # the 1212 patches of AST's 10.24 s input
    assert grid_shape(98) == (12, 9)
    with pytest.raises(ValueError):
        grid_shape(15)


def embeddings(freq: int, time: int, hidden: int = 3) -> np.ndarray:
    """Position rows whose values say where they are: (f, t, channel)."""
    grid = np.zeros((freq, time, hidden), np.float32)
    grid[..., 0] = np.arange(freq)[:, None]
    grid[..., 1] = np.arange(time)[None, :]
    grid[..., 2] = 7
    tokens = np.full((2, hidden), -1.0, np.float32)
    return np.concatenate([tokens, grid.reshape(-1, hidden)])[None]


def grid_of(emb: np.ndarray, freq: int, hidden: int = 3) -> np.ndarray:
    return emb[0, 2:].reshape(freq, -1, hidden)


def test_start_keeps_the_first_time_columns() -> None:
    out = adapt_positions(embeddings(12, 101), 12, 101, 9, "start")
    assert out.shape == (1, 2 + 12 * 9, 3)
    assert np.all(out[0, :2] == -1)
    grid = grid_of(out, 12)
    assert np.array_equal(grid[..., 0], np.repeat(np.arange(12)[:, None], 9, 1))
    assert np.array_equal(grid[0, :, 1], np.arange(9))


def test_center_keeps_the_middle_columns() -> None:
    grid = grid_of(adapt_positions(embeddings(12, 101), 12, 101, 9, "center"), 12)
    assert np.array_equal(grid[0, :, 1], np.arange(46, 55))


def test_interpolate_spans_the_whole_axis() -> None:
    grid = grid_of(adapt_positions(embeddings(12, 101), 12, 101, 9, "interpolate"), 12)
    times = grid[0, :, 1]
    assert np.all(np.diff(times) > 0)
    assert times[0] < 6 and times[-1] > 94
    assert np.allclose(grid[..., 2], 7)
    same = adapt_positions(embeddings(12, 101), 12, 101, 101, "interpolate")
    assert np.allclose(same, embeddings(12, 101))


def test_adapt_checks_the_grid() -> None:
    with pytest.raises(ValueError, match="do not match"):
        adapt_positions(embeddings(12, 101), 12, 100, 9, "start")
    with pytest.raises(ValueError):
        adapt_positions(embeddings(12, 101), 12, 101, 0, "start")


# --- YAMNet log-mel ----------------------------------------------------------------------
def test_mel_matrix_like_tf_signal() -> None:
    w = yf.mel_matrix()
    assert w.shape == (257, 64)
    assert np.all(w[0] == 0)  # no weight on DC
    assert np.all(w.max(axis=0) > 0)  # every band has bins
    centres = np.argmax(w, axis=0)
    assert np.all(np.diff(centres) >= 0)
    freqs = np.linspace(0, 8000, 257)
    assert 110 <= freqs[centres[0]] <= 160 and 7200 <= freqs[centres[-1]] <= 7500
    assert float(yf.hertz_to_mel(700.0)) == pytest.approx(1127.0 * np.log(2))


def test_log_mel_frames_and_floor() -> None:
    spec = yf.log_mel(np.zeros(16_000, np.float32))
    assert spec.shape == (98, 64)
    assert np.allclose(spec, np.log(0.001))
    assert yf.log_mel(np.zeros(100, np.float32)).shape == (1, 64)


def test_log_mel_puts_a_tone_in_its_band() -> None:
    spec = yf.log_mel(tone(1000, 1.0))
    band = int(np.argmax(spec.mean(axis=0)))
    w = yf.mel_matrix()
    assert band == int(np.argmax(w[round(1000 / 8000 * 256)]))
    # magnitude (not power) of a 0.5-amplitude sine through a periodic Hann window
    assert spec.max() == pytest.approx(np.log(0.5 * 200 * w[32].max() + 0.001), abs=0.3)


def test_log_mel_matches_a_direct_stft() -> None:
    x = white_noise(0.5, seed=3)
    n = np.arange(400)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / 400)
    frame = x[160 * 5 : 160 * 5 + 400].astype(np.float64) * hann
    mag = np.abs(np.fft.rfft(frame, 512))
    expected = np.log(mag @ yf.mel_matrix().astype(np.float64) + 0.001)
    assert np.allclose(yf.log_mel(x)[5], expected, atol=1e-4)


def test_patches_of_96_frames_every_48() -> None:
    assert yf.patches(np.zeros(16_000, np.float32)).shape == (1, 1, 96, 64)
    assert yf.patches(np.zeros(32_000, np.float32)).shape == (3, 1, 96, 64)
    short = yf.patches(np.zeros(4_000, np.float32))
    assert short.shape == (1, 1, 96, 64)
    assert np.allclose(short, np.log(0.001))
    long = yf.log_mel(white_noise(2.0))
    assert np.array_equal(yf.patches(white_noise(2.0))[1, 0], long[48:144])
    with pytest.raises(ValueError):
        yf.log_mel(np.zeros((10, 2), np.float32))


def test_patches_cover_the_end_of_the_window() -> None:
    x = white_noise(1.4)  # 138 frames: patches every 48 from the start would leave 0.42 s
    spec = yf.log_mel(x)
    got = yf.patches(x)
    assert got.shape == (2, 1, 96, 64)
    assert np.array_equal(got[0, 0], spec[:96]) and np.array_equal(got[1, 0], spec[-96:])
    # 1 s (98 frames): the last 25 ms past one patch are not worth a second patch
    assert yf.patches(white_noise(1.0)).shape == (1, 1, 96, 64)


def test_batch_patches_are_each_windows_own_patches_in_order() -> None:
    noise = white_noise(6.0, rms=0.3, seed=3)
    # Lengths the service meets: 1 s windows, longer ones with 2-3 patches, a window just
    # short of one patch (padded) and one shorter than a frame, mixed in one batch.
    lengths = [16_000, 32_000, 16_000, 15_599, 100, 48_000, 16_000]
    windows = [noise[i * 4_000 : i * 4_000 + n] for i, n in enumerate(lengths)]
    got, counts = yf.batch_patches(windows)
    each = [yf.patches(w) for w in windows]
    assert counts == [len(p) for p in each] == [1, 3, 1, 1, 1, 5, 1]
    assert got.shape == (sum(counts), 1, 96, 64) and got.dtype == np.float32
    assert np.allclose(got, np.concatenate(each), atol=1e-6)
    same, ones = yf.batch_patches(windows[:1] * 4)
    assert ones == [1] * 4 and same.flags.c_contiguous
    assert np.allclose(same, np.concatenate([each[0]] * 4), atol=1e-6)
    empty, none = yf.batch_patches([])
    assert empty.shape == (0, 1, 96, 64) and none == []
    with pytest.raises(ValueError, match="mono"):
        yf.batch_patches([np.zeros((16_000, 2), np.float32)])
