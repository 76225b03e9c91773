"""What inference loses becomes GapReports: overload drops, failed batches, chunks that never
arrived, and what arrived while it was down (from positions saved across a restart)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from services.inference.service import InferenceService
from services.inference.settings import InferenceSettings
from shared.messages import AudioChunk, GapReport, Message
from shared.mqtt import Incoming
from shared.streamstore import streams_path
from tests.inference.helpers import T0, FakeClassifier, chunk
from tests.support.audio import tone

PREFIX = "t"


@dataclass
class Published:
    """A `Publisher` that keeps what it is given."""

    got: list[Message] = field(default_factory=list)

    def publish(self, msg: Message, content_type: str | None = None) -> None:
        self.got.append(msg)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    @property
    def gaps(self) -> list[GapReport]:
        return [m for m in self.got if isinstance(m, GapReport)]


def make(state_dir: Path, **over: object) -> tuple[InferenceService, Published]:
    settings = InferenceSettings(
        node_id="inf-1",
        threads=1,
        state_dir=state_dir,
        **over,  # type: ignore[arg-type]
    )
    out = Published()
    return InferenceService(settings, FakeClassifier(), PREFIX, out), out


async def feed(service: InferenceService, chunks: Sequence[AudioChunk]) -> None:
    for ch in chunks:
        await service.handle(Incoming(AudioChunk.topic_for(PREFIX, ch.device), ch.encode()))


def one_second(seq: int) -> AudioChunk:
    return chunk("yor", seq, tone(1000, 1.0))


async def test_overload_drops_become_one_merged_report(tmp_path: Path) -> None:
    service, _ = make(tmp_path, queue_seconds=2)
    await feed(service, [one_second(s) for s in range(6)])  # nobody classifies: 4 dropped
    assert service.queue.dropped == 4
    (gap,) = service.gaps.flush()
    assert (gap.cause, gap.node, gap.device, gap.count) == ("inference_overload", "inf-1", "yor", 4)
    assert (gap.start, gap.end) == (T0, T0 + 4)


async def test_a_hole_in_the_stream_is_audio_missing_unless_workers_share(tmp_path: Path) -> None:
    service, _ = make(tmp_path)
    await feed(service, [one_second(s) for s in (0, 1, 5, 6)])
    (gap,) = service.gaps.flush()
    assert (gap.cause, gap.start, gap.end, gap.count) == ("audio_missing", T0 + 2, T0 + 5, 3)
    shared, _ = make(tmp_path / "shared", sole_worker=False)
    await feed(shared, [one_second(s) for s in (0, 1, 5, 6)])
    assert shared.gaps.flush() == []
    assert not streams_path(tmp_path / "shared", "inf-1").exists()  # no positions kept


async def test_a_restart_reports_what_arrived_while_it_was_down(tmp_path: Path) -> None:
    first, _ = make(tmp_path)
    await feed(first, [one_second(s) for s in range(3)])
    first.positions.save_all(first.assembler.streams)  # what work() does when it stops
    first.positions.close()
    again, _ = make(tmp_path)
    await feed(again, [one_second(s) for s in (10, 11)])  # seq 3..9 came while it was down
    (gap,) = again.gaps.flush()
    assert (gap.cause, gap.start, gap.end, gap.count) == ("service_down", T0 + 3, T0 + 10, 7)
    again.positions.close()


@pytest.mark.allow_log_exceptions
async def test_a_failed_batch_is_reported_and_work_publishes_gaps_when_it_stops(
    tmp_path: Path,
) -> None:
    class Broken(FakeClassifier):
        def scores(self, windows: Sequence[np.ndarray]) -> np.ndarray:
            raise RuntimeError("model gone")

    settings = InferenceSettings(node_id="inf-1", threads=1, state_dir=tmp_path, max_wait_ms=0)
    out = Published()
    service = InferenceService(settings, Broken(), PREFIX, out)
    worker = asyncio.create_task(service.work())
    await feed(service, [one_second(0)])
    async with asyncio.timeout(10):
        while not service.stats["failed"]:  # noqa: ASYNC110 (a counter, not an event)
            await asyncio.sleep(0.01)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    (gap,) = out.gaps
    assert (gap.cause, gap.start, gap.end, gap.count) == ("inference_failed", T0, T0 + 1, 1)
    assert streams_path(tmp_path, "inf-1").exists()


async def test_a_fleet_whose_chunks_arrive_at_once_fits_the_queue(tmp_path: Path) -> None:
    # 100 sensors, each chunk in the same instant, nobody classifying yet: a queue of a fixed
    # 64 windows dropped 36; sized in seconds per device heard it holds all 100, twice over.
    service, out = make(tmp_path, queue_seconds=2)
    for seq in range(2):
        await feed(service, [chunk(f"s{i:03d}", seq, tone(1000, 1.0)) for i in range(100)])
    assert len(service.queue) == 200 and service.queue.dropped == 0
    assert service.counters()["queue_limit"] == 200
    await feed(service, [chunk(f"s{i:03d}", 2, tone(1000, 1.0)) for i in range(100)])
    assert service.queue.dropped == 100  # a third second each is beyond 2 s: oldest dropped
    (gap,) = [g for g in service.gaps.flush() if g.device == "s000"]
    assert (gap.cause, gap.count, gap.start) == ("inference_overload", 1, T0)
    assert out.gaps == []  # reports are merged and published once due


async def test_devices_gone_quiet_shrink_the_queue_and_report_what_it_drops(
    tmp_path: Path,
) -> None:
    service, _ = make(tmp_path, queue_seconds=3)
    await feed(service, [chunk(f"s{i}", 0, tone(1000, 1.0)) for i in range(4)])
    await feed(service, [chunk("s0", seq, tone(1000, 1.0)) for seq in (1, 2)])
    assert service.queue.maxlen == 12 and len(service.queue) == 6
    later = time.monotonic() + 120.0  # past RECENT_SECONDS: only s0 is heard from since
    service.recent.seen("s0", later)
    service._resize_queue(later + 1.0)
    assert service.queue.maxlen == 3 and service.queue.dropped == 3
    lost = sorted((g.device, g.cause) for g in service.gaps.flush())
    assert lost == [
        ("s0", "inference_overload"),
        ("s1", "inference_overload"),
        ("s2", "inference_overload"),
    ]
