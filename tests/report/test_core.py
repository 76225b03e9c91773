"""Lden, Lday, Levening, Lnight, hourly LAeq and coverage of synthetic days.

The expected values are computed by hand from the Directive's formula, e.g. for the varied
day: Lday = 10 log10(mean(10^(L/10))) over [60, 70] x 6 = 67.4036; Lden =
10 log10((12 x 10^(Lday/10) + 4 x 10^((Levening+5)/10) + 8 x 10^((Lnight+10)/10)) / 24).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.report import core
from tests.report.helpers import bucket, hourly

LONDON = core.zone_of("Europe/London")
DAY = [60.0, 70.0] * 6
EVENING = [55.0, 57.0, 59.0, 61.0]


def _day_buckets(
    day: date, night: list[float | None], zone: str = "Europe/London"
) -> list[core.Bucket]:
    spans = core.period_spans(day, core.zone_of(zone))
    return (
        hourly(spans["day"], list(DAY))
        + hourly(spans["evening"], list(EVENING))
        + hourly(spans["night"], night)
    )


def _one(
    day: date, buckets: list[core.Bucket], events: list[datetime] | None = None
) -> core.DayReport:
    (report,) = core.day_reports("yor", "Europe/London", day, day, buckets, events or [])
    return report


def test_steady_periods_give_the_textbook_lden() -> None:
    day = date(2026, 6, 10)
    spans = core.period_spans(day, LONDON)
    buckets = (
        hourly(spans["day"], [60.0] * 12)
        + hourly(spans["evening"], [55.0] * 4)
        + hourly(spans["night"], [50.0] * 8)
    )
    report = _one(day, buckets)
    assert report.lden_db == pytest.approx(60.0, abs=0.01)
    assert report.periods["night"].laeq_db == pytest.approx(50.0, abs=0.01)
    # Summer time: 07:00 BST is 06:00 UTC.
    assert spans["day"].start == datetime(2026, 6, 10, 6, tzinfo=UTC)


def test_ordinary_day_matches_hand_computed_values() -> None:
    day = date(2026, 6, 10)
    report = _one(day, _day_buckets(day, [50.0, 52.0, 54.0, 56.0, 58.0, 60.0, 62.0, 64.0]))
    p = report.periods
    assert p["day"].laeq_db == pytest.approx(67.4036, abs=0.01)
    assert p["evening"].laeq_db == pytest.approx(58.5592, abs=0.01)
    assert p["night"].laeq_db == pytest.approx(59.1879, abs=0.01)
    assert report.lden_db == pytest.approx(67.7034, abs=0.01)
    assert [p[n].hours for n in ("day", "evening", "night")] == [12, 4, 8]
    assert all(p[n].coverage == pytest.approx(1.0) for n in p)


def test_spring_forward_night_is_seven_hours() -> None:
    # Clocks go forward at 01:00 GMT on Sunday 29 March 2026: Saturday's night is 7 h.
    day = date(2026, 3, 28)
    night = [50.0, 52.0, 54.0, 56.0, 58.0, 60.0, 62.0]
    report = _one(day, _day_buckets(day, list(night)))
    assert report.periods["night"].hours == 7
    assert report.periods["night"].laeq_db == pytest.approx(57.7018, abs=0.01)
    assert report.lden_db == pytest.approx(67.0390, abs=0.01)
    assert report.periods["night"].span.end == datetime(2026, 3, 29, 6, tzinfo=UTC)


def test_fall_back_night_is_nine_hours() -> None:
    # Clocks go back at 02:00 BST on Sunday 25 October 2026: Saturday's night is 9 h.
    day = date(2026, 10, 24)
    night = [50.0, 52.0, 54.0, 56.0, 58.0, 60.0, 62.0, 64.0, 66.0]
    report = _one(day, _day_buckets(day, list(night)))
    assert report.periods["night"].hours == 9
    assert report.periods["night"].laeq_db == pytest.approx(60.7174, abs=0.01)
    assert report.lden_db == pytest.approx(68.6032, abs=0.01)
    assert report.periods["night"].span.start == datetime(2026, 10, 24, 22, tzinfo=UTC)


def test_the_days_the_clocks_change_are_24_hours_from_07_to_07() -> None:
    for day in (date(2026, 3, 29), date(2026, 10, 25)):
        spans = core.period_spans(day, LONDON)
        assert [spans[n].seconds / 3600 for n in ("day", "evening", "night")] == [12, 4, 8]


@pytest.mark.parametrize(
    ("day", "count", "repeated"),
    [
        (date(2026, 3, 29), 23, None),
        (date(2026, 10, 25), 25, "01:00"),
        (date(2026, 6, 1), 24, None),
    ],
)
def test_local_hours_of_a_calendar_day(day: date, count: int, repeated: str | None) -> None:
    hours = core.hour_spans(day, LONDON)
    assert len(hours) == count
    assert all(span.seconds == 3600 for _, span in hours)
    labels = [span.start.astimezone(LONDON).strftime("%H:%M") for _, span in hours]
    if day.month == 3:
        assert "01:00" not in labels and labels[:2] == ["00:00", "02:00"]
    if repeated:
        assert labels.count(repeated) == 2
    assert [n for n, _ in hours].count("evening") == 4
    assert [n for n, _ in hours].count("day") == 12


def test_hourly_laeq_and_events_per_hour() -> None:
    day = date(2026, 10, 25)
    hours = core.hour_spans(day, LONDON)
    buckets = [bucket(span.start, 40.0 + k) for k, (_, span) in enumerate(hours)]
    second_one_am = hours[2][1].start  # the second 01:00 (GMT)
    events = [second_one_am + timedelta(minutes=5), second_one_am + timedelta(minutes=50)]
    rows = core.hour_reports("yor", "Europe/London", day, day, buckets, events)
    assert len(rows) == 25
    assert [r.figure.laeq_db for r in rows] == pytest.approx([40.0 + k for k in range(25)])
    assert [r.figure.events for r in rows] == [0, 0, 2] + [0] * 22
    out = core.hour_row(rows[2])
    assert out["start_local"] == "2026-10-25T01:00:00+00:00"
    assert core.hour_row(rows[1])["start_local"] == "2026-10-25T01:00:00+01:00"
    assert out["period"] == "night" and out["coverage"] == 1.0


def test_missing_hours_give_partial_coverage() -> None:
    day = date(2026, 6, 10)
    spans = core.period_spans(day, LONDON)
    buckets = (
        hourly(spans["day"], [None, None, None, *DAY[3:]])
        + hourly(spans["evening"], [55.0, None, 55.0, 55.0])
        + hourly(spans["night"], [50.0] * 8)
    )
    # Half an hour measured in the last evening hour: it counts as 1800 of the 14400 s.
    buckets[-9] = bucket(buckets[-9].start, 55.0, seconds=1800.0)
    p = _one(day, buckets).periods
    assert p["day"].coverage == pytest.approx(0.75)
    assert p["day"].laeq_db == pytest.approx(67.7815, abs=0.01)
    assert p["evening"].coverage == pytest.approx((2 * 3600 + 1800) / 14400)
    assert p["evening"].laeq_db == pytest.approx(55.0, abs=0.01)
    assert p["night"].coverage == pytest.approx(1.0)


def test_partly_measured_hour_weighs_by_its_seconds() -> None:
    day = date(2026, 6, 10)
    spans = core.period_spans(day, LONDON)
    buckets = hourly(spans["day"], [60.0] * 11 + [None])
    buckets.append(bucket(spans["day"].start + timedelta(hours=11), 80.0, seconds=1800.0))
    p = _one(day, buckets).periods
    assert p["day"].laeq_db == pytest.approx(67.2463, abs=0.01)


def test_an_empty_period_is_none_and_so_is_lden() -> None:
    day = date(2026, 6, 10)
    spans = core.period_spans(day, LONDON)
    report = _one(day, hourly(spans["day"], list(DAY)))
    assert report.periods["evening"].laeq_db is None
    assert report.periods["evening"].coverage == 0.0
    assert report.periods["night"].laeq_db is None
    assert report.lden_db is None
    row = core.day_row(report)
    assert row["levening_db"] is None and row["lden_db"] is None
    assert row["lday_db"] == pytest.approx(67.40, abs=0.005)
    assert list(row) == list(core.DAY_COLUMNS)
    (nothing,) = core.day_reports("yor", None, day, day, [], [])
    assert all(f.laeq_db is None for f in nothing.periods.values())
    assert nothing.timezone == "UTC"


def test_events_are_counted_in_their_period() -> None:
    day = date(2026, 6, 10)
    spans = core.period_spans(day, LONDON)
    events = [
        spans["day"].start,  # 07:00 exactly: day
        spans["evening"].start - timedelta(seconds=1),  # 18:59:59: day
        spans["evening"].start,  # 19:00: evening
        spans["night"].start + timedelta(hours=2),  # 01:00 next morning: night
        spans["night"].end,  # 07:00 next day: not this Lden day
    ]
    p = _one(day, _day_buckets(day, [50.0] * 8), events).periods
    assert (p["day"].events, p["evening"].events, p["night"].events) == (2, 1, 1)


def test_zone_with_half_hour_offset_needs_minute_buckets() -> None:
    kolkata = core.zone_of("Asia/Kolkata")
    day = date(2026, 1, 5)
    assert core.bucket_width(day, day, LONDON) == 3600
    assert core.bucket_width(day, day, kolkata) == 60
    spans = core.period_spans(day, kolkata)
    assert spans["day"].start == datetime(2026, 1, 5, 1, 30, tzinfo=UTC)
    minutes = [
        bucket(spans["day"].start + timedelta(minutes=k), 60.0, seconds=60.0, width=60)
        for k in range(12 * 60)
    ]
    (report,) = core.day_reports("blr", "Asia/Kolkata", day, day, minutes, [])
    assert report.periods["day"].laeq_db == pytest.approx(60.0)
    assert report.periods["day"].coverage == pytest.approx(1.0)
    whole_hours = [
        bucket(datetime(2026, 1, 5, 1, tzinfo=UTC) + timedelta(hours=k), 60.0) for k in range(24)
    ]
    with pytest.raises(ValueError, match="finer rollups"):
        core.day_reports("blr", "Asia/Kolkata", day, day, whole_hours, [])


def test_boundary_in_a_skipped_hour_is_the_jump() -> None:
    # Havana moves its clocks from 00:00 to 01:00 on 8 March 2026: midnight never happens.
    havana = core.zone_of("America/Havana")
    assert core.wall_start(date(2026, 3, 8), 0, havana) == datetime(2026, 3, 8, 5, tzinfo=UTC)
    assert len(core.hour_spans(date(2026, 3, 8), havana)) == 23


def test_unknown_zone_and_reversed_range_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        core.zone_of("Mars/Olympus")
    with pytest.raises(ValueError, match="before"):
        core.day_reports("yor", None, date(2026, 1, 2), date(2026, 1, 1), [], [])
