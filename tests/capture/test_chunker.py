"""Exact chunks across reads of any size: the chunker, and the whole pipeline on live blocks."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.capture.chunker import Chunker
from services.capture.core import CapturePipeline, FileBlock, FileStart, LiveBlock

T0 = 1_764_400_000.0


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given (sorted, deduplicated) offsets."""
    points = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=200, deadline=None, database=None)
@given(
    chunk_frames=st.integers(1, 400),
    channels=st.integers(1, 3),
    total=st.integers(0, 5000),
    cuts=st.lists(st.integers(0, 20_000), max_size=40),
)
def test_chunks_are_exact_and_contiguous(
    chunk_frames: int, channels: int, total: int, cuts: list[int]
) -> None:
    frame = 2 * channels
    data = np.random.default_rng(total).integers(0, 256, total * frame, dtype=np.uint8).tobytes()
    chunker = Chunker(chunk_frames, 16000, frame)
    assert chunker.restart(T0) == []
    out = []
    for block in splits(data, cuts):
        out += chunker.feed(block)
    out += chunker.flush()
    assert b"".join(c.pcm for c in out) == data
    assert [c.seq for c in out] == list(range(len(out)))
    assert all(len(c.pcm) == chunk_frames * frame for c in out[:-1])
    assert [c.start for c in out] == [T0 + i * chunk_frames / 16000 for i in range(len(out))]


def test_restart_emits_the_unfinished_chunk_and_starts_a_new_segment() -> None:
    chunker = Chunker(4, 10, 2)
    chunker.restart(T0)
    assert [c.seq for c in chunker.feed(bytes(10))] == [0]  # 5 frames: one chunk, 1 waits
    assert chunker.next_time() == T0 + 0.5
    cut = chunker.restart(T0 + 60)
    assert [(c.seq, c.start, len(c.pcm)) for c in cut] == [(1, T0 + 0.4, 2)]
    assert [(c.seq, c.start) for c in chunker.feed(bytes(8))] == [(2, T0 + 60)]


@settings(max_examples=100, deadline=None, database=None)
@given(
    rate=st.sampled_from([8000, 16000, 48000]),
    chunk_ms=st.sampled_from([250, 500, 1000]),
    seconds=st.floats(0.0, 3.0),
    cuts=st.lists(st.integers(0, 400_000), max_size=30),
)
def test_live_pipeline_is_gapless_across_arbitrary_reads(
    rate: int, chunk_ms: int, seconds: float, cuts: list[int]
) -> None:
    """Blocks of any size (odd byte counts too), stamped as a real-time source would be."""
    frames = round(seconds * rate)
    ramp = (np.arange(frames) % 65536 - 32768).astype("<i2").tobytes()
    pipe = CapturePipeline("yor", rate, chunk_seconds=chunk_ms / 1000)
    out = []
    done = 0
    for block in splits(ramp, cuts):
        done += len(block)
        t = (done // 2) / rate  # read just after its last whole frame was captured
        out += pipe.handle(LiveBlock(block, 100.0 + t, T0 + t))
    out += pipe.finish()
    assert b"".join(c.pcm for c in out) == ramp
    assert [c.seq for c in out] == list(range(len(out)))
    assert all(c.samples == rate * chunk_ms // 1000 for c in out[:-1])
    for a, b in itertools.pairwise(out):
        assert b.start == a.start + a.samples / rate or abs(b.start - a.end) < 1e-6
    if out:
        assert abs(out[0].start - T0) < 1e-6
    assert pipe.counters["gaps"] == 0 and pipe.counters["samples"] == frames


def test_file_segments_keep_their_own_start_times_and_every_sample() -> None:
    pipe = CapturePipeline("yor", 16000, chunk_seconds=1.0)
    a = np.arange(24000, dtype="<i2").tobytes()
    b = np.arange(8000, dtype="<i2").tobytes()
    out = pipe.handle(FileStart("a.wav", T0, 16000, 1))
    out += pipe.handle(FileBlock(a[:1001]))  # half a frame
    out += pipe.handle(FileBlock(a[1001:]))
    out += pipe.handle(FileStart("b.wav", T0 + 600, 16000, 1))
    out += pipe.handle(FileBlock(b))
    out += pipe.finish()
    assert [(c.seq, c.start, c.samples) for c in out] == [
        (0, T0, 16000),
        (1, T0 + 1, 8000),
        (2, T0 + 600, 8000),
    ]
    assert b"".join(c.pcm for c in out) == a + b
    assert pipe.counters["files"] == 2 and pipe.counters["chunks"] == 3
