"""Noise events: threshold, minimum duration, gaps, and the sound classes linked to them."""

from __future__ import annotations

import math

import pytest

from services.levels.events import EventLinker
from shared.messages import LabelScore, LabelsResult

T0 = 1_764_400_000.0


def linker(**over: float) -> EventLinker:
    args: dict[str, float] = dict(min_seconds=3.0, wait=10.0, classes=2, history_size=100)
    args.update(over)
    return EventLinker(**args)  # type: ignore[arg-type]


def feed(lk: EventLinker, levels: list[float], threshold: float = 65.0, now: float = 0.0) -> None:
    for s, level in enumerate(levels):
        lk.on_level("yor", s, T0 + s, 1.0, level, level + 2, threshold, s > 0, now)


def labels(second: int, *pairs: tuple[str, float]) -> LabelsResult:
    return LabelsResult(
        device="yor",
        seq=second,
        start=T0 + second,
        duration=1.0,
        model="tiny",
        labels=[LabelScore(label=label, score=score) for label, score in pairs],
    )


def test_event_with_levels_and_the_classes_heard_during_it() -> None:
    lk = linker()
    for s in range(8):
        lk.on_labels(labels(s, ("Speech", 0.2), ("Bus", 0.9 if 2 <= s < 6 else 0.0)))
    feed(lk, [50, 50, 70, 76, 70, 70, 50, 50])
    (ev,) = lk.due(now=0.0)  # labels already cover the event: no need to wait
    assert ev.start == T0 + 2 and ev.end == T0 + 6 and ev.duration == 4.0 and ev.seq == 2
    assert ev.threshold_db == 65.0
    assert ev.laeq_db == pytest.approx(10 * math.log10((3 * 1e7 + 10**7.6) / 4))
    assert ev.lamax_db == 78.0
    assert [c.label for c in ev.classes] == ["Bus", "Speech"]
    assert ev.classes[0].score == pytest.approx(0.9) and ev.classes[1].score == pytest.approx(0.2)


def test_short_excursions_are_not_events() -> None:
    lk = linker()
    feed(lk, [50, 70, 70, 50, 70, 50])
    assert lk.flush(now=0.0) == []


def test_a_gap_ends_an_event() -> None:
    lk = linker()
    for s in range(4):
        lk.on_level("yor", s, T0 + s, 1.0, 70, 72, 65, s > 0, 0.0)
    lk.on_level("yor", 9, T0 + 9, 1.0, 70, 72, 65, False, 0.0)  # after a gap
    events = lk.flush(now=0.0)
    assert [(e.start, e.duration) for e in events] == [(T0, 4.0)]  # then 1 s: too short


def test_waits_for_labels_then_gives_up() -> None:
    lk = linker(wait=5.0)
    feed(lk, [70, 70, 70, 50], now=100.0)
    assert lk.due(now=101.0) == []  # inference has not reported yet
    (ev,) = lk.due(now=105.0)
    assert ev.classes == []
    assert lk.due(now=200.0) == []


def test_labels_arriving_late_release_the_event() -> None:
    lk = linker(wait=60.0)
    feed(lk, [70, 70, 70, 50], now=0.0)
    lk.on_labels(labels(0, ("Dog", 0.5)))
    assert lk.due(now=1.0) == []  # labels do not reach the end of the event yet
    lk.on_labels(labels(2, ("Dog", 0.7)))
    (ev,) = lk.due(now=1.0)
    assert [(c.label, round(c.score, 3)) for c in ev.classes] == [
        ("Dog", 0.6)
    ]  # mean over the windows inference reported


def test_every_device_is_separate_and_history_is_bounded() -> None:
    lk = linker(history_size=3, max_devices=2)
    for dev in ("a", "b", "c"):
        lk.on_labels(
            LabelsResult(
                device=dev,
                seq=0,
                start=T0,
                duration=1.0,
                model="m",
                labels=[LabelScore(label="X", score=0.1)],
            )
        )
    assert set(lk._labels) == {"b", "c"}  # the least recently heard device went
    for s in range(10):
        lk.on_labels(labels(s, ("X", 0.1)))
    assert len(lk._labels["yor"].windows) == 3


def test_labels_arriving_out_of_order_still_release_the_event() -> None:
    lk = linker(wait=60.0)
    feed(lk, [70, 70, 70, 50], now=0.0)
    lk.on_labels(labels(2, ("Dog", 0.7)))  # the last window first
    lk.on_labels(labels(0, ("Dog", 0.5)))
    assert lk._labels["yor"].latest_end() == T0 + 3
    (ev,) = lk.due(now=1.0)
    assert [c.label for c in ev.classes] == ["Dog"]
