"""The shared stream-continuity rules: what a chunk means for its device's stream, which
steps are lost audio, how losses merge into reports, and positions on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.continuity import GapCollector, Lost, Position, Streams, judge
from shared.streamstore import PositionSaver, StreamStore, open_store, streams_path

T0 = 1_764_399_960.0
RATE = 16000


def streams(**over: object) -> Streams:
    kw: dict[str, object] = {"tolerance": 0.05, "late_horizon": 300.0, "seq_zero_restarts": False}
    kw.update(over)
    return Streams(**kw)  # type: ignore[arg-type]


def feed(s: Streams, seqs_starts: list[tuple[int, float]], device: str = "yor") -> list[Lost]:
    """1 s chunks; the losses found."""
    lost = []
    for seq, start in seqs_starts:
        step = s.step(device, seq, start, start + 1.0, RATE)
        found = s.gap_of(device, step, seq)
        if found is not None:
            lost.append(found)
    return lost


@pytest.mark.parametrize(
    ("seq", "start", "rate", "zero_restarts", "kind"),
    [
        (5, T0 + 5, RATE, False, "continuous"),
        (5, T0 + 5.04, RATE, False, "continuous"),  # jitter within the tolerance
        (5, T0 + 7, RATE, False, "jump"),  # capture's own loss: seq contiguous, time jumps
        (5, T0 + 3, RATE, False, "jump"),  # capture re-anchored backwards
        (8, T0 + 8, RATE, False, "hole"),
        (3, T0 + 3, RATE, False, "late"),  # out of order
        (7, T0 + 2, RATE, False, "late"),  # a straggler of capture's previous run
        (4, T0 + 4, RATE, False, "late"),  # a repeat
        (0, T0, RATE, False, "late"),  # levels: seq 0 can be late too
        (0, T0, RATE, True, "restart"),  # inference: seq 0 is always a new run
        (0, T0 + 9, RATE, False, "restart"),  # capture restarted, later
        (3, T0 - 400, RATE, False, "restart"),  # far behind: not late forever
        (5, T0 + 5, 48000, False, "restart"),  # rate changed
    ],
)
def test_judge(seq: int, start: float, rate: int, zero_restarts: bool, kind: str) -> None:
    prev = Position(4, T0 + 5, RATE)  # seq 4 ended at T0 + 5
    got = judge(
        prev, seq, start, rate, tolerance=0.05, late_horizon=300, seq_zero_restarts=zero_restarts
    )
    assert got == kind
    assert judge(None, 0, T0, RATE, tolerance=0.05, late_horizon=1, seq_zero_restarts=True) == (
        "first"
    )


def test_a_hole_while_running_is_audio_missing_with_the_missing_chunks() -> None:
    s = streams()
    lost = feed(s, [(0, T0), (1, T0 + 1), (4, T0 + 4), (5, T0 + 5)])
    assert lost == [Lost("yor", T0 + 2, T0 + 4, "audio_missing", 2)]


def test_capture_losses_late_chunks_and_restarts_are_not_this_services_loss() -> None:
    s = streams()
    # a jump (capture reports it), a late repeat, a capture restart at seq 0
    assert feed(s, [(0, T0), (1, T0 + 1), (2, T0 + 5), (1, T0 + 1), (0, T0 + 20)]) == []
    assert s.get("yor") == Position(0, T0 + 21, RATE)


def test_chunks_this_service_dropped_itself_are_not_missing() -> None:
    s = streams()
    feed(s, [(0, T0), (1, T0 + 1)])
    for seq in (2, 3, 5):  # dropped on overload (reported as such) while 4 and 6 wait
        s.skip("yor", seq)
    assert feed(s, [(4, T0 + 4)]) == []
    assert feed(s, [(6, T0 + 6)]) == []  # the mark for 5 was kept for it
    assert feed(s, [(9, T0 + 9)]) == [Lost("yor", T0 + 7, T0 + 9, "audio_missing", 2)]
    s.skip("yor", 10)
    assert feed(s, [(12, T0 + 12)]) == [Lost("yor", T0 + 10, T0 + 12, "audio_missing", 1)]


def test_with_a_shared_subscription_a_hole_is_not_a_loss() -> None:
    assert feed(streams(holes=False), [(0, T0), (2, T0 + 2)]) == []


def test_after_a_restart_the_first_chunk_reports_service_down() -> None:
    s = streams()
    s.restore({"yor": Position(9, T0 + 10, RATE)}, started=T0 + 40)
    # capture went on: seq 10..39 arrived while the service was down
    lost = feed(s, [(40, T0 + 40), (41, T0 + 41)])
    assert lost == [Lost("yor", T0 + 10, T0 + 40, "service_down", 30)]


def test_after_a_restart_nothing_missed_is_nothing_reported() -> None:
    s = streams()
    s.restore({"yor": Position(9, T0 + 10, RATE)}, started=T0 + 11)
    assert feed(s, [(10, T0 + 10), (12, T0 + 12)]) == [
        Lost("yor", T0 + 11, T0 + 12, "audio_missing", 1)  # resumed only for the first chunk
    ]


def test_after_a_restart_a_capture_restart_is_down_only_until_the_service_started() -> None:
    s = streams()
    s.restore({"yor": Position(9, T0 + 10, RATE)}, started=T0 + 30)
    # capture restarted too (seq 0), its first chunk long after: the device may have been off
    assert feed(s, [(0, T0 + 3600)]) == [Lost("yor", T0 + 10, T0 + 30, "service_down", None)]
    other = streams()
    other.restore({"yor": Position(9, T0 + 10, RATE)}, started=T0 + 5)  # started before it
    assert feed(other, [(0, T0 + 3600)]) == []


def test_positions_are_bounded_and_dirty_ones_are_taken_once() -> None:
    s = streams(max_devices=2)
    for device in ("a", "b", "c"):
        feed(s, [(0, T0)], device)
    assert len(s) == 2 and s.get("a") is None
    assert set(s.take_dirty()) == {"b", "c"}
    assert s.take_dirty() == {}


def test_the_collector_merges_neighbouring_losses_and_closes_them() -> None:
    c = GapCollector("levels-1", merge_s=10, hold_s=2, max_span_s=60)
    assert c.add(Lost("yor", T0, T0 + 1, "levels_overload", 1), now=0) == []
    assert c.add(Lost("yor", T0 + 3, T0 + 4, "levels_overload", 1), now=1) == []
    assert c.add(Lost("pi2", T0, T0 + 1, "levels_overload", 1), now=1) == []
    assert c.due(now=2.5) == []  # yor was extended at 1, pi2 added at 1
    (yor, pi2) = sorted(c.due(now=3.5), key=lambda r: r.device, reverse=True)
    assert (yor.start, yor.end, yor.count, yor.node) == (T0, T0 + 4, 2, "levels-1")
    assert (pi2.device, pi2.cause) == ("pi2", "levels_overload")
    # far apart: the first is closed when the second starts
    c.add(Lost("yor", T0, T0 + 1, "levels_overload", 1), now=10)
    closed = c.add(Lost("yor", T0 + 100, T0 + 101, "levels_overload", 1), now=10)
    assert [(r.start, r.end) for r in closed] == [(T0, T0 + 1)]
    # a long overload is cut into spans of max_span_s
    spans = []
    for i in range(200):
        spans += c.add(Lost("yor", T0 + 101 + i, T0 + 102 + i, "levels_overload", 1), now=11)
    assert len(spans) == 3 and all(r.seconds >= 60 for r in spans)
    assert sum(r.count or 0 for r in spans + c.flush()) == 201
    assert len(c) == 0


def test_positions_survive_a_restart_on_disk(tmp_path: Path) -> None:
    path = streams_path(tmp_path, "levels-1")
    assert path == tmp_path / "levels-1-streams.sqlite3"
    store = StreamStore(path)
    s = streams()
    feed(s, [(0, T0), (1, T0 + 1)])
    saver = PositionSaver(store, interval=1.0)
    assert saver.maybe_save(s, now=100.0)
    feed(s, [(2, T0 + 2)])
    assert not saver.maybe_save(s, now=100.5)  # at most once a second
    saver.close()
    again = StreamStore(path)
    assert again.load() == {"yor": Position(1, T0 + 2, RATE)}  # the last commit, not seq 2
    final = PositionSaver(again)
    assert final.save_all(s)
    assert again.load() == {"yor": Position(2, T0 + 3, RATE)}
    final.close()


def test_an_unusable_state_dir_is_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert open_store(blocker, "levels-1") is None
    assert "gaps while this service is down will not be reported" in caplog.text
    assert not PositionSaver(None).save_all(streams())
