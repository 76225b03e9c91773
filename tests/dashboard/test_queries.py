"""Queries against a real PostgreSQL: downsampling, ranges, ordering, empty and missing tables."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from services.dashboard import core, db, queries
from services.dashboard.settings import DashboardSettings
from services.ingest.core import Result, Triage
from services.ingest.db import create_roles
from services.ingest.spool import Spool
from services.ingest.sync import Syncer
from shared.messages import (
    Calibration,
    IndicesResult,
    LabelScore,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    WindowMessage,
)
from tests.dashboard.data import Dataset

pytestmark = pytest.mark.integration

H = timedelta(hours=1)
ALL = ["lab", "ouse", "spare", "yor"]


def energy(*levels: float) -> float:
    return 10 * math.log10(sum(10 ** (x / 10) for x in levels) / len(levels))


@pytest.fixture
def conn(populated: tuple[str, Dataset]) -> Iterator[psycopg.Connection[Any]]:
    dsn, _ = populated
    with db.connect(DashboardSettings(database_url=dsn)) as connection:
        yield connection


@pytest.fixture
def data(populated: tuple[str, Dataset]) -> Dataset:
    return populated[1]


def test_missing_tables_are_reported(database: str) -> None:
    with psycopg.connect(database) as conn:
        assert queries.existing_tables(conn) == set()


def test_empty_schema_gives_empty_frames(schema_db: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(schema_db) as conn:
        tables = queries.existing_tables(conn)
        assert tables == set(queries.CORE_TABLES + queries.OPTIONAL_TABLES)
        assert queries.device_ids(conn) == []
        assert queries.device_overview(conn, []).empty
        levels = queries.level_series(conn, ["yor"], now - H, now, timedelta(minutes=1))
        assert levels.empty
        assert list(levels.columns) == [
            "device", "bucket", "leq_db", "leq_max_db", "leq_min_db", "laeq_db", "windows",
        ]  # fmt: skip
        assert queries.latest_detections(conn, ["yor"], now - H, now, 10).empty
        assert queries.top_classes(conn, ["yor"], now - H, now, 10).empty
        assert queries.indices_series(conn, ["yor"], now - H, now, timedelta(minutes=1)).empty
        assert queries.summary_series(conn, ["yor"], now - H, now, timedelta(minutes=1)).empty
        assert queries.noise_events(conn, ["yor"], now - H, now, 10).empty
        assert queries.gaps(conn, ["yor"], now - H, now, 10).empty


def test_device_ids_union_registry_and_results(conn: psycopg.Connection[Any]) -> None:
    assert queries.device_ids(conn) == ALL


def test_levels_downsampled_to_energetic_means(
    conn: psycopg.Connection[Any], data: Dataset
) -> None:
    t = data.t
    frame = queries.level_series(conn, ["yor", "ouse"], t - 3 * H, t, H)
    yor = frame[frame["device"] == "yor"].reset_index(drop=True)
    # Two one-hour buckets; the empty hour in between has no row at all.
    assert [b.to_pydatetime() for b in yor["bucket"]] == [t - 3 * H, t - H]
    assert list(yor["windows"]) == [3600, 3600]
    assert yor.loc[0, "leq_db"] == pytest.approx(60.0, abs=1e-9)
    assert yor.loc[0, "laeq_db"] == pytest.approx(55.0, abs=1e-9)
    assert yor.loc[1, "leq_db"] == pytest.approx(energy(60, 70), abs=1e-9)  # 67.40, not 65
    assert yor.loc[1, "laeq_db"] == pytest.approx(energy(50, 60), abs=1e-9)
    assert (yor.loc[1, "leq_min_db"], yor.loc[1, "leq_max_db"]) == (60.0, 70.0)
    ouse = frame[frame["device"] == "ouse"].reset_index(drop=True)
    assert list(ouse["windows"]) == [360]
    assert ouse.loc[0, "leq_db"] == pytest.approx(45.0, abs=1e-9)
    assert ouse["laeq_db"].isna().all()


def test_levels_bucket_count_follows_width(conn: psycopg.Connection[Any], data: Dataset) -> None:
    t = data.t
    frame = queries.level_series(conn, ["yor"], t - 3 * H, t, timedelta(minutes=1))
    assert len(frame) == 120
    assert set(frame["windows"]) == {60}
    # A year-wide range still returns one row per bucket that has data, nothing more.
    bucket = core.bucket_for(timedelta(days=365), 1500)
    year = queries.level_series(conn, ["yor"], t - timedelta(days=365), t, bucket)
    assert len(year) <= 2  # the data spans at most two 6-hour buckets
    assert year["windows"].sum() == 7200


def test_ranges_are_half_open_and_filter_devices(
    conn: psycopg.Connection[Any], data: Dataset
) -> None:
    t = data.t
    start = t - H
    frame = queries.level_series(conn, ["yor"], start, start + timedelta(seconds=10), H)
    assert list(frame["windows"]) == [10]
    assert queries.level_series(conn, ["nobody"], t - 3 * H, t, H).empty
    with pytest.raises(ValueError, match="after its start"):
        queries.level_series(conn, ["yor"], t, t, H)
    with pytest.raises(ValueError, match="positive"):
        queries.level_series(conn, ["yor"], t - H, t, timedelta(0))


def test_overview_and_states(conn: psycopg.Connection[Any], data: Dataset) -> None:
    frame = queries.device_overview(conn, ALL).set_index("device")
    assert list(frame.index) == ALL
    assert frame.loc["yor", "last_seen"].to_pydatetime() == data.t
    assert frame.loc["yor", "leq_db"] == 70.0  # the last window of yor is an odd one
    assert frame.loc["yor", "name"] == "York Road"
    assert bool(frame.loc["ouse", "uncalibrated"]) is True
    assert frame.loc["lab", "detection_time"].to_pydatetime() == data.t - timedelta(minutes=5)
    assert frame.loc["lab", "level_time"] is None or frame["level_time"].isna()["lab"]
    assert frame["last_seen"].isna()["spare"]
    states = core.with_states(frame.reset_index(), data.now, 30.0, 60.0).set_index("device")
    assert states.loc["ouse", "state"] == "online"
    assert states.loc["spare", "state"] == "never seen"
    expected_yor = "online" if (data.now - data.t).total_seconds() <= 120 else "offline"
    assert states.loc["yor", "state"] == expected_yor


def test_latest_detections_newest_first(conn: psycopg.Connection[Any], data: Dataset) -> None:
    t = data.t
    frame = queries.latest_detections(conn, ALL, t - H, t, limit=7)
    assert len(frame) == 7
    newest = frame.iloc[:5]
    assert {ts.to_pydatetime() for ts in newest["window_start"]} == {t - timedelta(minutes=1)}
    assert list(newest["label"]) == ["Speech", "Car", "Bird", "Wind", "Hum"]
    assert list(frame.columns[:5]) == ["window_start", "device", "label", "rating", "model"]
    strong = queries.latest_detections(conn, ALL, t - H, t, limit=100, min_score=0.4)
    assert set(strong["label"]) == {"Speech", "Car", "Bird"}
    assert set(strong.loc[strong["label"] == "Bird", "device"]) == {"lab"}
    early = queries.latest_detections(conn, ALL, t - H, t - timedelta(minutes=9), limit=100)
    assert len(early) == 5  # only the window at t-10min


def test_top_classes_counts_over_range(conn: psycopg.Connection[Any], data: Dataset) -> None:
    t = data.t
    frame = queries.top_classes(conn, ALL, t - H, t, limit=3)
    assert list(frame["label"]) == ["Bird", "Speech", "Car"]
    bird = frame.iloc[0]
    assert (bird["detections"], bird["devices"]) == (11, 2)
    assert bird["max_rating"] == pytest.approx(0.8)
    assert bird["mean_rating"] == pytest.approx((10 * 0.3 + 0.8) / 11, abs=1e-6)
    only_yor = queries.top_classes(conn, ["yor"], t - H, t, limit=10, min_score=0.25)
    assert list(only_yor["label"]) == ["Speech", "Car", "Bird"]


def test_indices_summaries_events_gaps(conn: psycopg.Connection[Any], data: Dataset) -> None:
    t = data.t
    indices = queries.indices_series(conn, ["yor"], t - H, t, timedelta(minutes=30))
    assert list(indices["events"]) == [12, 12]
    assert indices.loc[0, "aci"] == pytest.approx(102.5)  # mean of 100..105
    assert list(indices.columns[2:]) == list(queries.INDEX_COLUMNS)
    summaries = queries.summary_series(conn, ["yor"], t - H, t, H)
    assert summaries.loc[0, "laeq_db"] == pytest.approx(57.4)
    assert (summaries.loc[0, "lamax_db"], summaries.loc[0, "l90_db"]) == (75.0, 50.0)
    events = queries.noise_events(conn, ["yor"], t - H, t, 10)
    assert len(events) == 1
    assert events.loc[0, "classes"] == [{"label": "Car", "score": 0.8}]
    # An event that started before the range but lasts into it overlaps the range.
    start = t - timedelta(minutes=20)
    assert len(queries.noise_events(conn, ["yor"], start + timedelta(seconds=10), t, 10)) == 1
    assert queries.noise_events(conn, ["yor"], start + timedelta(seconds=40), t, 10).empty
    found = queries.gaps(conn, ["yor", "ouse"], t - H, t, 10)
    assert sorted(found["kind"]) == ["inference_overload", "spool_overflow"]
    nodes = dict(zip(found["kind"], found["node"], strict=True))
    assert nodes["inference_overload"] == "inference-1" and pd.isna(nodes["spool_overflow"])
    by_cause = queries.gaps_by_cause(conn, ["yor", "ouse"], t - H, t)
    assert by_cause.to_dict("records") == [
        {"device": "ouse", "kind": "spool_overflow", "gaps": 1, "seconds": 0.0},
        {"device": "yor", "kind": "inference_overload", "gaps": 1, "seconds": 60.0},
    ]
    # clipped to the range
    clipped = queries.gaps_by_cause(conn, ["yor"], t - timedelta(minutes=39, seconds=30), t)
    assert list(clipped["seconds"]) == [30.0]
    assert list(queries.gaps(conn, ["ouse"], t - H, t, 10)["kind"]) == ["spool_overflow"]
    assert queries.gaps(conn, ["yor"], t - timedelta(minutes=10), t, 10).empty


def test_connection_is_read_only_and_in_display_zone(populated: tuple[str, Dataset]) -> None:
    dsn, data = populated
    settings = DashboardSettings(database_url=dsn, timezone="Europe/London")
    with db.connect(settings) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM levels_packed")
        frame = queries.device_overview(conn, ["yor"])
        seen = frame.loc[0, "last_seen"]
        assert str(seen.tz) == "Europe/London"
        assert seen.to_pydatetime() == data.t
    assert "t_" in db.describe_target(settings)
    assert "postgres@" not in db.describe_target(settings)


def test_reader_role_of_ingest_can_read_everything(populated: tuple[str, Dataset]) -> None:
    """The read-only role `soundscape ingest --create-roles` makes is enough for every query."""
    dsn, data = populated
    suffix = uuid.uuid4().hex[:10]
    writer, reader = f"w_{suffix}", f"r_{suffix}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        try:
            create_roles(admin, writer, reader)
            settings = DashboardSettings(database_url=make_conninfo(dsn, user=reader))
            t = data.t
            with db.connect(settings) as conn:
                ids = queries.device_ids(conn)
                assert ids == ALL
                assert queries.existing_tables(conn) == set(
                    queries.CORE_TABLES + queries.OPTIONAL_TABLES
                )
                assert not queries.device_overview(conn, ids).empty
                assert not queries.level_series(conn, ids, t - H, t, H).empty
                assert not queries.summary_series(conn, ids, t - H, t, H).empty
                assert not queries.latest_detections(conn, ids, t - H, t, 5).empty
                assert not queries.top_classes(conn, ids, t - H, t, 5).empty
                assert not queries.indices_series(conn, ids, t - H, t, H).empty
                assert not queries.noise_events(conn, ids, t - H, t, 5).empty
                assert not queries.gaps(conn, ids, t - H, t, 5).empty
                # a week: the rollup tables, which the reader may read too
                week = t - timedelta(weeks=1)
                assert not queries.level_series(conn, ids, week, t, H).empty
                assert not queries.level_series(conn, ids, week, t, 10 * H / 60).empty
                assert not queries.top_classes(conn, ids, week, t, 5).empty
                assert not queries.indices_series(conn, ids, week, t, H).empty
                assert not queries.summary_series(conn, ids, week, t, H).empty
        finally:
            for role in (writer, reader):
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_chunks_measured_but_not_classified_are_counted(schema_db: str) -> None:
    """Levels of 12 one-second chunks; labels cover chunks 0-5 with 1 s windows and 8-11 with
    one 4 s window; chunks 6 and 7 were never classified (inference was down)."""
    t0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    sync = uuid.uuid4()
    with psycopg.connect(schema_db) as c:
        for i in range(12):
            c.execute(
                "INSERT INTO levels (device, window_start, window_seq, window_duration, leq_db,"
                " uncalibrated, sync_id, sync_time) VALUES ('yor', %s, %s, 1, 50, true, %s, %s)",
                (t0 + timedelta(seconds=i), i, sync, t0),
            )
        windows = [(i, 1.0) for i in range(6)] + [(8, 4.0)]
        for start, duration in windows:
            for rank, label in enumerate(["Speech", "Bird"], 1):
                c.execute(
                    "INSERT INTO detections (label, rating, device, sync_id, sync_time,"
                    " window_start, window_seq, window_duration, model, rank)"
                    " VALUES (%s, 0.5, 'yor', %s, %s, %s, %s, %s, 'm', %s)",
                    (label, sync, t0, t0 + timedelta(seconds=start), start, duration, rank),
                )
    with psycopg.connect(schema_db) as c:
        got = queries.classification_coverage(c, ["yor", "lab"], t0, t0 + H)
    assert got.to_dict("records") == [{"device": "yor", "measured": 12, "classified": 10}]


# --- Long ranges read the rollups ---------------------------------------------------------

#: Monday 2026-11-16 00:00 UTC: the seeded days start here.
DAY0 = datetime(2026, 11, 16, tzinfo=UTC)
ROLLUP_DAYS = 3
NAMES = ("Speech", "Hum", "Bird", "Car", "Wind", "Rain", "Dog")


def seed_through_ingest(dsn: str, tmp_path: Path) -> None:
    """Levels, labels and indices of two devices over three days, stored by ingest's Syncer
    (which maintains the rollups as batches land), with a duplicate batch and a late one.

    Every 7 min a 1 s window (levels with LAeq null one time in ten, top-3 labels); bursts of
    5 windows within one minute every 49 min; a 1 min level summary every 70 min; an indices
    row every 175 min, adi null one time in four.
    """
    rng = random.Random(11)
    msgs: list[WindowMessage] = []
    for device in ("yor", "ouse"):
        for k in range(ROLLUP_DAYS * 24 * 60 // 7):
            base = DAY0.timestamp() + 420.0 * k
            burst = 5 if k % 7 == 0 else 1
            for j in range(burst):
                start = base + 3.0 * j
                laeq = None if rng.random() < 0.1 else rng.uniform(30, 80)
                msgs.append(
                    LevelsResult(
                        device=device, seq=int(start), start=start, duration=1.0,
                        leq_db=rng.uniform(35, 90), laeq_db=laeq, lceq_db=None,
                        bands={"1000": rng.uniform(20, 60)}, calibration=Calibration(),
                        uncalibrated=False,
                    )
                )  # fmt: skip
                names = rng.sample(NAMES, 3)
                scores = sorted((rng.random() for _ in names), reverse=True)
                msgs.append(
                    LabelsResult(
                        device=device, seq=int(start), start=start, duration=1.0, model="m",
                        labels=[LabelScore(label=n, score=s) for n, s in zip(names, scores,
                                                                              strict=True)],
                    )
                )  # fmt: skip
            if k % 10 == 0:
                lo = rng.uniform(30, 50)
                msgs.append(
                    LevelsSummary(
                        device=device, seq=int(base), start=base, duration=60.0,
                        laeq_db=lo + 10, lamax_db=lo + rng.uniform(20, 40), lamin_db=lo - 5,
                        l10_db=lo + 15, l50_db=lo + 8, l90_db=lo, coverage=rng.random(),
                        uncalibrated=False,
                    )
                )  # fmt: skip
            if k % 25 == 0:
                msgs.append(
                    IndicesResult(
                        device=device, seq=int(base), start=base, duration=300.0,
                        aci=rng.uniform(100, 200),
                        adi=None if rng.random() < 0.25 else rng.random(), aei=rng.random(),
                        bi=rng.uniform(0, 10), ndsi=rng.uniform(-1, 1), ht=rng.random(),
                        hf=rng.random(), events=rng.randrange(10),
                    )
                )  # fmt: skip
    triage = Triage("p")
    late = msgs[:200]
    batches = [msgs[200:], msgs[200:1200], late]  # the second is a duplicate, the last late
    with Syncer(Spool(tmp_path / "s.sqlite3", 1_000_000), dsn, source="t", batch_size=2000) as s:
        for batch in batches:
            verdicts = [triage.message(m.topic("p"), m.encode(), None, 4e9) for m in batch]
            assert all(isinstance(v, Result) for v in verdicts)
            s.spool.put([v for v in verdicts if isinstance(v, Result)])
            report = s.sync()
            assert report.error is None, report.error


def close(want: pd.Series, have: pd.Series, tol: float, relative: bool) -> bool:
    """Equal within `tol` (times the value's size beyond 1 when `relative`), NaN where the
    other is NaN."""
    a, b = want.astype(float).to_numpy(), have.astype(float).to_numpy()
    both_nan = pd.isna(a) & pd.isna(b)
    near = abs(a - b) <= tol * ((1 + abs(a)) if relative else 1)
    return bool((both_nan | near).all())


def test_long_ranges_from_rollups_equal_the_raw_queries(schema_db: str, tmp_path: Path) -> None:
    seed_through_ingest(schema_db, tmp_path)
    devices = ["ouse", "yor"]
    start, end = DAY0, DAY0 + timedelta(days=ROLLUP_DAYS)
    level_buckets = (timedelta(minutes=10), H, 6 * H, timedelta(days=1))

    def answers(rollups: bool = True) -> dict[str, pd.DataFrame]:
        with psycopg.connect(schema_db) as conn:
            found = {
                f"levels {b}": queries.level_series(conn, devices, start, end, b, rollups)
                for b in level_buckets
            }
            for b in (H, 6 * H):
                found[f"indices {b}"] = queries.indices_series(
                    conn, devices, start, end, b, rollups
                )
                found[f"summaries {b}"] = queries.summary_series(
                    conn, devices, start, end, b, rollups
                )
            found["top"] = queries.top_classes(conn, devices, start, end, 10, rollups=rollups)
            found["top yor"] = queries.top_classes(conn, ["yor"], start, end, 3, rollups=rollups)
        return found

    rolled = answers()
    raw = answers(rollups=False)
    for name, frame in raw.items():
        assert not frame.empty, name
        got = rolled[name]
        assert list(got.columns) == list(frame.columns), name
        assert len(got) == len(frame), name
        for column in frame.columns:
            if column in ("leq_max_db", "leq_min_db"):
                continue  # of the rollup buckets, not of single windows (docstring)
            want, have = frame[column], got[column]
            if pd.api.types.is_float_dtype(want) or pd.api.types.is_float_dtype(have):
                # levels within 0.01 dB; scores and indices are stored as real (about 7
                # digits), the rollups sum them as double
                db = column.endswith("_db")
                assert close(want, have, 0.01 if db else 1e-6, relative=not db), (name, column)
            else:
                assert want.tolist() == have.tolist(), (name, column)
    assert raw["levels 1:00:00"]["laeq_db"].notna().all()
    assert raw["indices 1:00:00"]["adi"].notna().any()
    # The long answers really come from the rollups: they outlive the raw rows.
    with psycopg.connect(schema_db, autocommit=True) as conn:
        conn.execute("TRUNCATE levels_packed, labels_packed, indices, level_summaries")
    again = answers()
    for name, frame in rolled.items():
        pd.testing.assert_frame_equal(again[name], frame, check_exact=False)
