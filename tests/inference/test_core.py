"""The pure core: windows from chunks, the bounded queue, top-k, speech_present, results."""

from __future__ import annotations

import numpy as np
import pytest

from services.inference.core import (
    LabelOptions,
    RecentDevices,
    Window,
    WindowAssembler,
    WindowQueue,
    batch_ready,
    classify,
    queue_limit,
    resample,
    speech_indices,
    speech_present,
    speech_present_rows,
    top_k,
    top_k_rows,
)
from tests.inference.helpers import (
    FAKE_LABELS,
    RATE,
    T0,
    FakeClassifier,
    chunk,
    ramp,
    sample_index,
)
from tests.support.audio import tone


def feed(asm: WindowAssembler, device: str, seqs: list[int], n: int = RATE) -> list[Window]:
    out: list[Window] = []
    for seq in seqs:
        out += asm.add(chunk(device, seq, ramp(n, seq * n)))
    return out


# --- windowing ---------------------------------------------------------------------------
def test_default_window_is_each_chunk() -> None:
    asm = WindowAssembler(1.0)
    windows = feed(asm, "yor", [0, 1, 2])
    assert [(w.seq, w.start, w.duration) for w in windows] == [
        (0, T0, 1.0),
        (1, T0 + 1, 1.0),
        (2, T0 + 2, 1.0),
    ]
    for w in windows:
        assert len(w.samples) == RATE
        assert sample_index(w.samples)[0] == (w.seq * RATE) % 30000


def test_windows_share_the_buffer_read_only() -> None:
    # Overlapping windows are views of one buffer: none may be written through.
    windows = feed(WindowAssembler(1.0, 0.5), "yor", [0, 1, 2])
    assert len(windows) == 5
    for w in windows:
        with pytest.raises(ValueError, match="read-only"):
            w.samples[0] = 1.0
    assert np.array_equal(windows[0].samples[RATE // 2 :], windows[1].samples[: RATE // 2])


def test_long_windows_join_consecutive_chunks_with_hop() -> None:
    asm = WindowAssembler(3.0, 1.0)
    windows = feed(asm, "yor", list(range(6)))
    assert [w.seq for w in windows] == [0, 1, 2, 3]
    assert [w.start for w in windows] == [T0, T0 + 1, T0 + 2, T0 + 3]
    for w in windows:
        assert len(w.samples) == 3 * RATE
        idx = sample_index(w.samples)
        expected = np.arange(w.seq * RATE, w.seq * RATE + 3 * RATE) % 30000
        assert np.array_equal(idx, expected)


def test_window_and_hop_need_not_align_with_chunks() -> None:
    asm = WindowAssembler(0.75, 0.5)
    windows = feed(asm, "yor", [0, 1, 2])
    # starts every 0.5 s while 0.75 s fits in the 3 s received
    assert [round(w.start - T0, 3) for w in windows] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert [w.seq for w in windows] == [0, 0, 1, 1, 2]
    assert all(len(w.samples) == 12_000 for w in windows)
    assert sample_index(windows[3].samples)[0] == 24_000 % 30000


def test_hop_longer_than_window_skips_audio() -> None:
    asm = WindowAssembler(1.0, 2.5)
    windows = feed(asm, "yor", list(range(8)))
    assert [round(w.start - T0, 3) for w in windows] == [0.0, 2.5, 5.0]
    assert [w.seq for w in windows] == [0, 2, 5]
    assert sample_index(windows[1].samples)[0] == 40_000 % 30000


def test_gap_resets_the_assembly_and_is_counted() -> None:
    asm = WindowAssembler(2.0, 1.0)
    windows = feed(asm, "yor", [0, 1, 2, 5, 6, 7])
    # 0-1, 1-2, then the gap (3, 4 missing) discards the partial window; 5-6, 6-7
    assert [w.seq for w in windows] == [0, 1, 5, 6]
    assert asm.counters["gaps"] == 1
    assert asm.counters["missing_chunks"] == 2


def test_capture_restart_and_rate_change_start_afresh() -> None:
    asm = WindowAssembler(1.0)
    feed(asm, "yor", [10, 11])
    again = feed(asm, "yor", [0])
    assert [w.seq for w in again] == [0]
    other = asm.add(chunk("yor", 1, ramp(48_000), rate=48_000))
    assert [(w.rate, len(w.samples)) for w in other] == [(48_000, 48_000)]
    assert asm.counters["restarts"] == 2
    assert asm.counters["gaps"] == 0


def test_a_time_jump_with_contiguous_seq_starts_afresh() -> None:
    """Capture keeps seq contiguous across a gap in its audio (an xrun, a clock step, an
    arecord restart): it ends the segment with a short chunk and starts the next chunk at
    the new time. A window must not join the audio on both sides of that jump."""
    asm = WindowAssembler(1.0)
    windows = asm.add(chunk("yor", 0, ramp(RATE)))
    windows += asm.add(chunk("yor", 1, ramp(4_800, RATE), start=T0 + 1))  # 0.3 s, then a gap
    windows += asm.add(chunk("yor", 2, ramp(RATE, 2 * RATE), start=T0 + 6))
    windows += asm.add(chunk("yor", 3, ramp(RATE, 3 * RATE), start=T0 + 7))
    assert [(w.seq, w.start) for w in windows] == [(0, T0), (2, T0 + 6), (3, T0 + 7)]
    assert sample_index(windows[1].samples)[0] == (2 * RATE) % 30000
    assert asm.counters["discontinuities"] == 1
    assert asm.counters["gaps"] == 0 and asm.counters["restarts"] == 0
    long = WindowAssembler(3.0)
    got = feed(long, "yor", [0, 1])
    got += long.add(chunk("yor", 2, ramp(RATE, 2 * RATE), start=T0 + 2.5))  # 0.5 s jump
    for seq in (3, 4):
        got += long.add(chunk("yor", seq, ramp(RATE, seq * RATE), start=T0 + seq + 0.5))
    assert [(w.seq, w.start) for w in got] == [(2, T0 + 2.5)]  # not (0, T0) across the jump
    assert long.counters["discontinuities"] == 1


def test_duplicate_and_late_chunks_are_dropped_not_a_restart() -> None:
    asm = WindowAssembler(2.0)
    windows = feed(asm, "yor", [0, 1, 2])
    windows += feed(asm, "yor", [2, 1])  # a chunk delivered twice, one late
    windows += feed(asm, "yor", [3, 4, 5])
    assert [w.seq for w in windows] == [0, 2, 4]
    assert asm.counters["late_chunks"] == 2
    assert asm.counters["restarts"] == 0 and asm.counters["gaps"] == 0
    # seq 0 is always a new run of capture, whatever its time says (a clock behind)
    again = asm.add(chunk("yor", 0, ramp(RATE), start=T0 + 1))
    again += asm.add(chunk("yor", 1, ramp(RATE, RATE), start=T0 + 2))
    assert [w.seq for w in again] == [0] and asm.counters["restarts"] == 1


def test_devices_are_assembled_independently() -> None:
    asm = WindowAssembler(2.0)
    windows: list[Window] = []
    for seq in range(4):
        windows += feed(asm, "a", [seq])
        windows += feed(asm, "b", [seq + 100])
    assert [(w.device, w.seq) for w in windows] == [("a", 0), ("b", 100), ("a", 2), ("b", 102)]


def test_least_recent_device_is_evicted_beyond_the_limit() -> None:
    asm = WindowAssembler(2.0, max_devices=2)
    feed(asm, "a", [0])
    feed(asm, "b", [0])
    feed(asm, "c", [0])
    assert asm.devices == 2
    assert asm.counters["evicted_devices"] == 1
    assert feed(asm, "a", [1]) == []  # its first half was forgotten


def test_stereo_is_mixed_to_mono() -> None:
    left = tone(440, 1.0)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    (w,) = WindowAssembler(1.0).add(chunk("yor", 0, stereo))
    assert w.samples.shape == (RATE,)
    assert np.allclose(w.samples, left / 2, atol=1 / 32768)


def test_bad_window_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        WindowAssembler(0.0)
    with pytest.raises(ValueError):
        WindowAssembler(1.0, -1.0)


# --- queue and batching ------------------------------------------------------------------
def window(seq: int) -> Window:
    return Window("yor", seq, T0 + seq, RATE, np.zeros(RATE, np.float32))


def test_queue_drops_the_oldest_when_full() -> None:
    q = WindowQueue(3)
    dropped = [q.put(window(i), now=float(i)) for i in range(5)]
    assert [d.seq if d else None for d in dropped] == [None, None, None, 0, 1]
    assert q.dropped == 2 and len(q) == 3
    assert q.oldest_since() == 2.0
    assert [w.seq for w in q.take(2)] == [2, 3]
    assert [w.seq for w in q.take(10)] == [4]
    assert q.oldest_since() is None


def test_batch_waits_for_size_or_time() -> None:
    assert not batch_ready(0, None, 10.0, 4, 0.05)
    assert not batch_ready(2, 10.0, 10.01, 4, 0.05)
    assert batch_ready(2, 10.0, 10.06, 4, 0.05)
    assert batch_ready(4, 10.0, 10.0, 4, 0.05)
    assert batch_ready(1, 10.0, 10.0, 4, 0.0)
    # A queue smaller than the batch cap: full is ready (a burst must not overflow it).
    assert not batch_ready(9, 10.0, 10.0, 32, 0.05, capacity=10)
    assert batch_ready(10, 10.0, 10.0, 32, 0.05, capacity=10)


# --- results -----------------------------------------------------------------------------
def test_top_k_highest_first_with_names() -> None:
    scores = np.array([0.1, 0.7, 0.3, 0.7, 0.0, 0.2, 0.05, 0.01])
    got = top_k(scores, FAKE_LABELS, 3)
    assert [(s.label, s.score) for s in got] == [
        ("Whispering", 0.7),
        ("Sine wave", 0.7),
        ("Music", 0.3),
    ]
    assert len(top_k(scores, FAKE_LABELS, 100)) == len(FAKE_LABELS)


def test_top_k_rejects_broken_scores() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        top_k(np.array([0.1, np.nan] + [0.0] * 6), FAKE_LABELS, 2)
    with pytest.raises(ValueError, match="shape"):
        top_k(np.zeros(3), FAKE_LABELS, 2)


def test_top_k_rows_is_top_k_of_each_row_ties_included() -> None:
    rng = np.random.default_rng(5)
    rows = rng.random((40, len(FAKE_LABELS)))
    # Ties across the cut and inside the top, as int8 scores have them, and a flat row.
    rows[1] = [0.5, 0.5, 0.5, 0.5, 0.1, 0.5, 0.2, 0.5]
    rows[2] = [0.2, 0.9, 0.3, 0.3, 0.3, 0.0, 0.3, 0.1]
    rows[3] = 0.25
    rows[4] = np.round(rows[4], 1)
    for k in (1, 3, 5, len(FAKE_LABELS), 100):
        got = top_k_rows(rows, FAKE_LABELS, k)
        for row, labels in zip(rows, got, strict=True):
            order = np.argsort(-row, kind="stable")[: min(k, len(row))]
            assert [(s.label, s.score) for s in labels] == [
                (FAKE_LABELS[i], float(row[i])) for i in order
            ]
    assert [s.label for s in top_k_rows(rows[1:2], FAKE_LABELS, 3)[0]] == [
        "Speech",
        "Whispering",
        "Music",
    ]
    with pytest.raises(ValueError, match="non-finite"):
        top_k_rows(np.array([[0.1] * 8, [np.inf] + [0.0] * 7]), FAKE_LABELS, 2)
    with pytest.raises(ValueError, match="shape"):
        top_k_rows(np.zeros((2, 3)), FAKE_LABELS, 2)


def test_speech_present_rows_is_each_rows_flag() -> None:
    rows = np.array([[0.05, 0.3, 0.9, 0, 0, 0, 0, 0], [0.1, 0.2, 0.9, 0, 0, 0, 0, 0]])
    assert speech_present_rows(rows, [0, 1], 0.25) == [True, False]
    assert speech_present_rows(rows, [], 0.25) == [None, None]


def test_speech_present_sees_quiet_speech_below_the_top_k() -> None:
    idx = speech_indices(FAKE_LABELS, ["Speech", "whispering", "Not a label"])
    assert idx == [0, 1]
    scores = np.array([0.05, 0.3, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert "Whispering" not in [s.label for s in top_k(scores, FAKE_LABELS, 5)]
    assert speech_present(scores, idx, 0.25) is True
    assert speech_present(scores, idx, 0.5) is False
    assert speech_present(scores, [], 0.5) is None


def test_classify_builds_one_result_per_window() -> None:
    fake = FakeClassifier()
    windows = [
        Window("yor", 0, T0, RATE, tone(1000, 1.0)),
        Window("yor", 1, T0 + 1, RATE, np.zeros(RATE, np.float32)),
        Window("pi2", 7, T0 + 7, 48_000, tone(1000, 1.0, rate=48_000)),
    ]
    options = LabelOptions("fake-model", top_k=2, speech_indices=(0,), speech_threshold=0.5)
    results = classify(fake, windows, options)
    assert fake.calls == [3]
    assert [(r.device, r.seq, r.start, r.duration) for r in results] == [
        ("yor", 0, T0, 1.0),
        ("yor", 1, T0 + 1, 1.0),
        ("pi2", 7, T0 + 7, 1.0),
    ]
    assert [r.labels[0].label for r in results] == ["Sine wave", "Silence", "Sine wave"]
    assert all(len(r.labels) == 2 and r.model == "fake-model" for r in results)
    assert all(r.speech_present is False for r in results)
    assert all(r.inference_ms is not None and r.inference_ms >= 0 for r in results)


def test_classify_checks_the_score_shape() -> None:
    class Wrong(FakeClassifier):
        def scores(self, windows: object) -> np.ndarray:
            return np.zeros((1, 3), np.float32)

    with pytest.raises(ValueError, match="shape"):
        classify(Wrong(), [window(0), window(1)], LabelOptions("x"))


def test_resample_to_model_rate() -> None:
    out = resample(tone(1000, 1.0, rate=48_000), 48_000, RATE)
    assert out.dtype == np.float32 and len(out) == RATE
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(int(np.argmax(spectrum)) - 1000) <= 1


def test_queue_is_seconds_of_audio_for_each_device_heard() -> None:
    assert queue_limit(10.0, 1.0, 0) == 10  # before any device: one device's worth
    assert queue_limit(10.0, 1.0, 100) == 1000
    assert queue_limit(10.0, 0.5, 3) == 60  # windows every half second
    assert queue_limit(0.2, 1.0, 5) == 5  # at least one window per device
    recent = RecentDevices(horizon=60.0)
    for i in range(100):
        recent.seen(f"d{i}", now=0.0)
    recent.seen("d0", now=50.0)
    recent.prune(now=70.0)
    assert len(recent) == 1 and "d0" in recent and "d1" not in recent


def test_a_smaller_queue_drops_its_oldest_and_counts_them() -> None:
    q = WindowQueue(5)
    for i in range(5):
        q.put(window(i), now=float(i))
    assert [w.seq for w in q.resize(2)] == [0, 1, 2]
    assert q.dropped == 3 and len(q) == 2 and q.maxlen == 2
    assert q.resize(10) == [] and q.maxlen == 10
