"""What levels loses becomes GapReports: chunks dropped on overload, chunks that never
arrived, and what arrived while it was down (positions saved across a restart)."""

from __future__ import annotations

from pathlib import Path

from services.levels.app import LevelsService
from services.levels.core import LevelsCore
from services.levels.settings import LevelsSettings
from shared.continuity import Lost
from shared.devices import DeviceRegistry
from shared.messages import AudioChunk
from shared.settings import MqttSettings
from shared.streamstore import streams_path
from tests.support.audio import tone

T0 = 1_764_399_960.0
RATE = 16000


def chunk(seq: int, device: str = "yor") -> AudioChunk:
    return AudioChunk.from_float(device, seq, T0 + seq, RATE, tone(1000, 1.0, RATE, 0.1))


def service(state_dir: Path, **over: object) -> LevelsService:
    settings = LevelsSettings(node_id="levels-1", state_dir=state_dir, **over)  # type: ignore[arg-type]
    return LevelsService(settings, MqttSettings(topic_prefix="t"), DeviceRegistry())


def test_the_core_says_which_audio_never_arrived() -> None:
    core = LevelsCore(DeviceRegistry())
    outs = [core.process(chunk(s)) for s in (0, 1, 4, 5)]
    assert [o.lost for o in outs] == [
        None,
        None,
        Lost("yor", T0 + 2, T0 + 4, "audio_missing", 2),
        None,
    ]
    # forgetting an idle device keeps its stream position: a hole after it is still seen
    core.flush_all()
    assert core.process(chunk(7)).lost == Lost("yor", T0 + 6, T0 + 7, "audio_missing", 1)


async def test_overload_drops_are_one_merged_report(tmp_path: Path) -> None:
    svc = service(tmp_path, queue_size=2)
    for seq in range(5):
        svc._enqueue(chunk(seq))
    assert svc.stats["dropped"] == 3
    # what was queued is measured; the dropped chunks are not reported a second time as missing
    while not svc.chunks.empty():
        await svc._measure_chunk(svc.chunks.get_nowait()[0], 0.0)
    await svc._measure_chunk(chunk(5), 0.0)
    (gap,) = svc.gaps.flush()
    assert (gap.cause, gap.node, gap.start, gap.end, gap.count) == (
        "levels_overload",
        "levels-1",
        T0 + 2,
        T0 + 5,
        3,
    )
    svc.positions.close()


async def test_a_restart_reports_what_arrived_while_it_was_down(tmp_path: Path) -> None:
    first = service(tmp_path)
    for seq in range(3):
        await first._measure_chunk(chunk(seq), 0.0)
    first.positions.save_all(first.core.streams)  # what measure() does when it stops
    first.positions.close()
    assert streams_path(tmp_path, "levels-1").exists()
    again = service(tmp_path)
    await again._measure_chunk(chunk(20), 0.0)
    await again._measure_chunk(chunk(21), 0.0)
    (gap,) = again.gaps.flush()
    assert (gap.cause, gap.start, gap.end, gap.count) == ("service_down", T0 + 3, T0 + 20, 17)
    assert again.stats["chunks"] == 2
    again.positions.close()
