"""The compact schema against a real PostgreSQL: day partitions, rollups, retention, and the
migration of a prototype-era database (docs/ingest.md, "The database schema")."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.ingest import db
from services.ingest.app import main
from services.ingest.core import Result, Triage
from services.ingest.schema import BAND_ORDER
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
from tests.ingest.helpers import rows

pytestmark = pytest.mark.integration

DAY = 86_400.0
#: Monday 2026-11-23 00:00 UTC: a seeded week runs to Sunday.
WEEK0 = datetime(2026, 11, 23, tzinfo=UTC).timestamp()
DEVICES = ("yor", "ouse", "lab")
CADENCE = 1800.0  # one window per device every half hour: 336 a week
NAMES = ("Speech", "Hum", "Bird", "Car", "Wind", "Rain", "Dog")


@pytest.fixture
def schema(database: str) -> str:
    with psycopg.connect(database, autocommit=True) as conn:
        db.migrate(conn)
    return database


@pytest.fixture
def syncer(schema: str, tmp_path: Path) -> Iterator[Syncer]:
    with Syncer(Spool(tmp_path / "s.sqlite3", 1_000_000), schema, source="t", batch_size=500) as s:
        yield s


def window(device: str, start: float, rng: random.Random) -> list[WindowMessage]:
    """A levels and a labels result of one 1 s window."""
    seq = int(start)
    laeq = None if rng.random() < 0.1 else rng.uniform(30, 80)
    level = LevelsResult(
        device=device,
        seq=seq,
        start=start,
        duration=rng.choice([1.0, 0.5]),
        leq_db=rng.uniform(35, 90),
        laeq_db=laeq,
        lceq_db=None if laeq is None else laeq + rng.uniform(0, 5),
        bands={"1000": rng.uniform(20, 60), "63": rng.uniform(20, 60)},
        calibration=Calibration(),
        uncalibrated=False,
    )
    names = rng.sample(NAMES, 3)
    scores = sorted((rng.random() for _ in names), reverse=True)
    labels = LabelsResult(
        device=device,
        seq=seq,
        start=start,
        duration=1.0,
        model="m",
        labels=[LabelScore(label=n, score=s) for n, s in zip(names, scores, strict=True)],
    )
    if start % 3600 not in (0.0, 600.0):
        return [level, labels]
    lo = rng.uniform(30, 50)
    summary = LevelsSummary(
        device=device,
        seq=seq,
        start=start,
        duration=60.0,
        laeq_db=lo + 10,
        lamax_db=lo + rng.uniform(20, 40),
        lamin_db=lo - 5,
        l10_db=lo + 15,
        l50_db=lo + 8,
        l90_db=lo,
        coverage=rng.random(),
        uncalibrated=False,
    )
    index = IndicesResult(
        device=device,
        seq=seq,
        start=start,
        duration=300.0,
        aci=rng.uniform(100, 200),
        adi=None if rng.random() < 0.3 else rng.random(),
        aei=rng.random(),
        bi=rng.uniform(0, 10),
        ndsi=rng.uniform(-1, 1),
        ht=rng.random(),
        hf=rng.random(),
        events=rng.randrange(10),
    )
    return [level, labels, summary, index]


def results(msgs: Iterable[WindowMessage]) -> list[Result]:
    triage = Triage("p")
    out = []
    for msg in msgs:
        verdict = triage.message(msg.topic("p"), msg.encode(), None, 4e9)
        assert isinstance(verdict, Result), verdict
        out.append(verdict)
    return out


def week(rng: random.Random, offset: float = 0.0) -> list[WindowMessage]:
    return [
        msg
        for device in DEVICES
        for k in range(int(7 * DAY / CADENCE))
        for msg in window(device, WEEK0 + k * CADENCE + offset, rng)
    ]


def store(sync: Syncer, msgs: list[WindowMessage]) -> None:
    sync.spool.put(results(msgs))
    report = sync.sync()
    assert report.error is None, report.error
    assert sync.spool.depth() == 0


def check_rollups(dsn: str) -> None:
    """Every rollup row equals a recomputation from the raw rows, and no bucket is missing."""
    for unit, table in (("minute", "levels_minute"), ("hour", "levels_hourly")):
        energy = "sum(window_duration * power(10::float8, {c} / 10))"
        recomputed: list[Any] = rows(
            dsn,
            f"""
            SELECT device, date_trunc('{unit}', window_start, 'UTC') AS bucket,
                   sum(window_duration::float8), {energy.format(c="leq_db")},
                   coalesce(sum(window_duration::float8) FILTER (WHERE laeq_db IS NOT NULL), 0),
                   coalesce({energy.format(c="laeq_db")}, 0),
                   coalesce(sum(window_duration::float8) FILTER (WHERE lceq_db IS NOT NULL), 0),
                   coalesce({energy.format(c="lceq_db")}, 0), count(*)
            FROM levels GROUP BY 1, 2 ORDER BY 1, 2
            """,
        )
        stored: list[Any] = rows(
            dsn,
            f"SELECT device, bucket, seconds, leq_energy, laeq_seconds, laeq_energy, "
            f"lceq_seconds, lceq_energy, windows FROM {table} ORDER BY 1, 2",
        )
        assert len(stored) == len(recomputed) > 0
        for got, want in zip(stored, recomputed, strict=True):
            assert got[:2] == want[:2]
            assert got[8] == want[8]  # windows, exactly
            for seconds, energy_col in ((2, 3), (4, 5), (6, 7)):
                assert got[seconds] == pytest.approx(want[seconds], abs=1e-9)
                if want[seconds]:
                    mean = 10 * math.log10(got[energy_col] / got[seconds])
                    assert mean == pytest.approx(
                        10 * math.log10(want[energy_col] / want[seconds]), abs=0.01
                    )
    check_bands(dsn)
    recomputed = rows(
        dsn,
        "SELECT d.device, date_trunc('hour', d.window_start, 'UTC'), d.model, n.id, count(*), "
        "sum(d.rating), max(d.rating) FROM detections d JOIN label_names n ON n.name = d.label "
        "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
    stored = rows(
        dsn,
        "SELECT device, bucket, model, label_id, windows, score_sum, score_max "
        "FROM labels_hourly ORDER BY 1, 2, 3, 4",
    )
    assert len(stored) == len(recomputed) > 0
    for got, want in zip(stored, recomputed, strict=True):
        assert got[:5] == want[:5]
        assert got[5] == pytest.approx(want[5], abs=1e-6)
        assert got[6] == want[6]


def check_bands(dsn: str) -> None:
    """The per-band energetic means of levels_minute and levels_hourly equal a recomputation
    (in Python) from the bands of the levels view, within 0.01 dB."""
    windows: list[Any] = rows(
        dsn,
        "SELECT device, window_start, window_duration, bands FROM levels WHERE bands IS NOT NULL",
    )
    assert windows
    for unit, table in (("minute", "levels_minute"), ("hour", "levels_hourly")):
        sums: dict[tuple[str, datetime], list[tuple[float, float]]] = {}
        seconds: dict[tuple[str, datetime], float] = {}
        for device, start, duration, bands in windows:
            key = (
                device,
                start.replace(
                    second=0, microsecond=0, **({} if unit == "minute" else {"minute": 0})
                ),
            )
            acc = sums.setdefault(key, [(0.0, 0.0)] * len(BAND_ORDER))
            sums[key] = [
                acc[j]
                if v is None
                else (acc[j][0] + duration * 10 ** (v / 10), acc[j][1] + duration)
                for j, v in enumerate(bands)
            ]
            seconds[key] = seconds.get(key, 0.0) + duration
        found: list[Any] = rows(dsn, f"SELECT device, bucket, band_seconds, bands FROM {table}")
        stored = {(d, b): (s, m) for d, b, s, m in found if m is not None}
        assert stored.keys() == sums.keys()
        for key, acc in sums.items():
            got_seconds, got = stored[key]
            assert got_seconds == pytest.approx(seconds[key], abs=1e-9)
            want = [None if w == 0 else 10 * math.log10(e / w) for e, w in acc]
            assert [g is None for g in got] == [w is None for w in want]
            assert [g for g in got if g is not None] == pytest.approx(
                [w for w in want if w is not None], abs=0.01
            )


def check_hourly(dsn: str) -> None:
    """The summaries and indices rollups equal a recomputation from their raw rows."""
    d = "window_duration::float8"
    summaries = (
        "summaries_hourly",
        f"count(*), sum({d}), sum({d} * power(10::float8, laeq_db / 10)), max(lamax_db), "
        f"min(lamin_db), sum({d} * l10_db), sum({d} * l50_db), sum({d} * l90_db), "
        f"sum({d} * coverage) FROM level_summaries",
        "summaries, seconds, laeq_energy, lamax_db, lamin_db, l10_sum, l50_sum, l90_sum, "
        "coverage_seconds",
    )
    cols = ("aci", "adi", "aei", "bi", "ndsi", "ht", "hf", "events")
    indices = (
        "indices_hourly",
        "count(*), "
        + ", ".join(f"coalesce(sum({c}), 0), count({c})" for c in cols)
        + " FROM indices",
        "windows, " + ", ".join(f"{c}_sum, {c}_n" for c in cols),
    )
    for table, recompute, columns in (summaries, indices):
        want: list[Any] = rows(
            dsn,
            "SELECT device, date_trunc('hour', window_start, 'UTC'), window_duration, "
            f"{recompute} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        got: list[Any] = rows(
            dsn, f"SELECT device, bucket, window_duration, {columns} FROM {table} ORDER BY 1, 2, 3"
        )
        assert len(got) == len(want) > 0
        for g, w in zip(got, want, strict=True):
            assert g[:4] == w[:4]
            assert [float(x) for x in g[4:]] == pytest.approx([float(x) for x in w[4:]], rel=1e-9)


def partitions(dsn: str, table: str) -> list[str]:
    return [
        str(name)
        for (name,) in rows(
            dsn,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY 1",
            (table,),
        )
    ]


def day_names(table: str, days: Iterable[date]) -> set[str]:
    return {f"{table}_p{d:%Y%m%d}" for d in days}


def test_rollups_equal_a_recomputation_after_late_and_duplicate_batches(
    schema: str, syncer: Syncer
) -> None:
    rng = random.Random(11)
    first = week(rng)
    store(syncer, first)
    check_rollups(schema)
    # late rows: windows between the stored ones, in buckets that already have rows
    late = [m for m in week(rng, offset=600.0) if int(m.start - WEEK0) // 1800 % 3 == 0]
    store(syncer, late)
    # duplicates: the same windows again (other values, which must change nothing), mixed
    # with one new window
    again = [*week(random.Random(99))[::5], *window("yor", WEEK0 + 7.5, rng)]
    store(syncer, again)
    check_rollups(schema)
    check_hourly(schema)
    stored = rows(schema, "SELECT count(*), sum(windows) FROM levels_hourly")[0]
    levels = sum(isinstance(m, LevelsResult) for m in [*first, *late]) + 1
    assert stored[1] == levels
    # labels: one row per window, readable through the view as k rows
    assert rows(schema, "SELECT count(*) FROM labels")[0][0] == stored[1]
    assert rows(schema, "SELECT count(*) FROM detections")[0][0] == 3 * stored[1]
    stats = syncer.stats.snapshot()
    # 1 level + 3 label rows a window; 1 row a summary or indices result
    dups = again[:-2]
    assert stats["duplicate_rows"] == sum(3 if isinstance(m, LabelsResult) else 1 for m in dups)


def test_partitions_are_made_ahead_and_for_every_day_a_batch_touches(
    schema: str, syncer: Syncer
) -> None:
    rng = random.Random(3)
    old = datetime(2020, 2, 29, 23, 59, 59, tzinfo=UTC).timestamp()
    store(syncer, [*window("yor", old, rng), *window("yor", WEEK0 + 3 * DAY, rng)])
    today = datetime.now(UTC).date()
    ahead = {today + timedelta(days=k) for k in range(-1, 3)}
    wanted = ahead | {date(2020, 2, 29), date(2026, 11, 26)}
    for table in ("levels_packed", "labels_packed"):
        assert set(partitions(schema, table)) == day_names(table, wanted) | {f"{table}_default"}
        assert rows(schema, f"SELECT count(*) FROM {table}_default") == [(0,)]
    assert rows(schema, "SELECT count(*) FROM levels_packed_p20200229") == [(1,)]
    # the rollups: month partitions for the same days' months
    months = {d.replace(day=1) for d in wanted}
    got = set(partitions(schema, "levels_hourly"))
    assert got == {f"levels_hourly_p{m:%Y%m}" for m in months} | {"levels_hourly_default"}
    # idempotent: the same days again create nothing
    with psycopg.connect(schema, autocommit=True) as conn:
        assert db.ensure_partitions(conn, wanted, set()) == 0


def test_rows_of_a_day_without_partition_are_kept_and_moved_into_it(schema: str) -> None:
    t = datetime(2021, 6, 1, 12, tzinfo=UTC)
    with psycopg.connect(schema, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO levels (device, window_start, window_seq, window_duration, leq_db, "
            "uncalibrated, sync_id, sync_time) VALUES ('yor', %s, 1, 1, 50, false, %s, now())",
            (t, uuid.uuid4()),
        )
        conn.execute("SELECT soundscape_recompute_rollups()")
        assert rows(schema, "SELECT count(*) FROM levels_minute_default") == [(1,)]
        # 2 day partitions (levels, labels) and 6 month partitions (the rollups)
        assert db.ensure_partitions(conn, {t.date()}, set()) == 8
    assert rows(schema, "SELECT count(*) FROM levels_packed_default") == [(0,)]
    assert rows(schema, "SELECT count(*) FROM levels_packed_p20210601") == [(1,)]
    assert rows(schema, "SELECT count(*) FROM levels_minute_default") == [(0,)]
    assert rows(schema, "SELECT count(*) FROM levels_minute_p202106") == [(1,)]


def test_retention_drops_exactly_the_expired_partitions(schema: str) -> None:
    now = datetime(2026, 12, 10, 6, tzinfo=UTC)
    days = {date(2026, 11, 25) + timedelta(days=k) for k in range(16)}  # 25 Nov .. 10 Dec
    with psycopg.connect(schema, autocommit=True) as conn:
        db.ensure_partitions(conn, days, set())
        conn.execute(
            "INSERT INTO levels (device, window_start, window_seq, window_duration, leq_db, "
            "uncalibrated, sync_id, sync_time) SELECT 'yor', d + interval '1 hour', 1, 1, 50, "
            "false, gen_random_uuid(), now() FROM unnest(%s::timestamptz[]) AS d",
            ([datetime(d.year, d.month, d.day, tzinfo=UTC) for d in days],),
        )
        before = set(partitions(schema, "labels_packed"))
        dropped = db.drop_expired(conn, {"levels": 7, "labels": 0}, now)
    # kept 7 days back from 10 Dec 06:00: 3 Dec (its end, 4 Dec 00:00, is too recent) on
    expired = {d for d in days if d <= date(2026, 12, 2)}
    assert {(d.table, d.day) for d in dropped} == {("levels_packed", d) for d in expired}
    assert all(d.rows == 1 for d in dropped)
    left = set(partitions(schema, "levels_packed"))
    assert left & day_names("levels_packed", expired) == set()
    assert day_names("levels_packed", days - expired) <= left
    assert set(partitions(schema, "labels_packed")) == before  # 0 days: kept forever
    assert rows(schema, "SELECT min(window_start) FROM levels")[0][0] == datetime(
        2026, 12, 3, 1, tzinfo=UTC
    )


def test_ingest_maintains_through_the_owner_url(schema: str, tmp_path: Path) -> None:
    with psycopg.connect(schema, autocommit=True) as conn:
        db.ensure_partitions(conn, {date(2020, 1, 1)}, set())
    spool = Spool(tmp_path / "s.sqlite3", 10)
    with Syncer(
        spool, schema, source="t", batch_size=10, maintenance_dsn=schema,
        keep_days={"levels": 30, "labels": 30},
    ) as sync:  # fmt: skip
        assert sync.sync().error is None
        assert sync.sync().error is None  # not due again yet
        stats = sync.stats.snapshot()
    assert stats["maintenance_runs"] == 1
    assert stats["partitions_dropped"] == 2
    assert "levels_packed_p20200101" not in partitions(schema, "levels_packed")


def test_a_prototype_era_database_is_migrated(database: str) -> None:
    sync_id = uuid.uuid4()
    t = datetime(2025, 5, 26, 14, 57, 49, tzinfo=UTC)
    with psycopg.connect(database, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for mig in db.migrations()[:4]:
            conn.execute(mig.sql.encode())
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (mig.version, mig.name))
        for k, (label, rating) in enumerate((("Hum", 0.43894055), ("Mains hum", 0.3894045))):
            conn.execute(
                "INSERT INTO detections (label, rating, device, sync_id, sync_time, "
                "window_start, window_seq, window_duration, model, rank) "
                "VALUES (%s, %s, 'yor', %s, %s, %s, 7, 1, 'ast', %s)",
                (label, rating, sync_id, t, t - timedelta(seconds=30), k + 1),
            )
        conn.execute(
            "INSERT INTO levels (device, window_start, window_seq, window_duration, leq_db, "
            "laeq_db, bands, uncalibrated, sync_id, sync_time) VALUES "
            "('yor', %s, 7, 1, 60, 50, '{\"20\": 1.5, \"200000\": 2.5}', false, %s, %s)",
            (t - timedelta(seconds=30), sync_id, t),
        )
        later = [f"{m.version:04d}_{m.name}" for m in db.migrations() if m.version >= 5]
        assert db.migrate(conn) == later and later[0] == "0005_compact_partitions"
    got: list[Any] = rows(
        database,
        "SELECT label, rating, device, sync_id, sync_time, rank FROM detections ORDER BY rank",
    )
    assert got == [
        # scores are kept to 1e-4
        ("Hum", pytest.approx(0.43894055, abs=5e-5), "yor", sync_id, t, 1),
        ("Mains hum", pytest.approx(0.3894045, abs=5e-5), "yor", sync_id, t, 2),
    ]
    ((bands,),) = rows(database, "SELECT bands FROM levels")
    assert isinstance(bands, list) and len(bands) == len(BAND_ORDER)
    assert (bands[0], bands[-1], bands[1:-1]) == (1.5, 2.5, [None] * (len(BAND_ORDER) - 2))
    assert rows(database, "SELECT seconds, windows FROM levels_hourly") == [(1.0, 1)]
    assert rows(database, "SELECT windows FROM labels_hourly ORDER BY label_id") == [(1,), (1,)]
    assert rows(database, "SELECT name FROM band_names ORDER BY i") == [(n,) for n in BAND_ORDER]
    assert rows(
        database,
        "SELECT to_regclass('detections_old'), to_regclass('levels_old'), "
        "to_regclass('levels_0005'), to_regclass('labels_0005')",
    ) == [(None, None, None, None)]
    assert rows(database, "SELECT band_seconds, bands[1], bands[41] FROM levels_minute") == [
        (1.0, pytest.approx(1.5, abs=1e-4), pytest.approx(2.5, abs=1e-4))
    ]


def test_cli_maintain_drops_what_the_settings_expire(
    schema: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(schema, autocommit=True) as conn:
        db.ensure_partitions(conn, {date(2019, 1, 1)}, set())
    monkeypatch.setenv("SOUNDSCAPE_INGEST_KEEP_LEVELS_DAYS", "400")
    monkeypatch.delenv("SOUNDSCAPE_INGEST_KEEP_LABELS_DAYS", raising=False)
    assert main(["--database-url", schema, "--maintain"]) == 0
    assert "1 expired partitions dropped" in capsys.readouterr().out
    assert "levels_packed_p20190101" not in partitions(schema, "levels_packed")
    assert "labels_packed_p20190101" in partitions(schema, "labels_packed")  # kept forever


def test_rollup_retention_drops_exactly_the_expired_months(schema: str) -> None:
    now = datetime(2026, 12, 10, 6, tzinfo=UTC)
    months = [date(2026, m, 1) for m in range(6, 13)]  # June .. December
    with psycopg.connect(schema, autocommit=True) as conn:
        db.ensure_partitions(conn, set(months), set())
        conn.execute(
            "INSERT INTO levels_minute (device, bucket, seconds, leq_energy, laeq_seconds, "
            "laeq_energy, lceq_seconds, lceq_energy, windows) SELECT 'yor', d, 1, 1, 0, 0, 0, "
            "0, 1 FROM unnest(%s::timestamptz[]) AS d",
            ([datetime(m.year, m.month, 15, tzinfo=UTC) for m in months],),
        )
        hourly = set(partitions(schema, "labels_hourly"))
        # 100 days back from 10 Dec 06:00 is 1 Sep 06:00: June, July and August have ended
        dropped = db.drop_expired(conn, {"minute_rollups": 100}, now)
    assert [(d.table, d.day, d.rows) for d in dropped] == [
        ("levels_minute", date(2026, m, 1), 1) for m in (6, 7, 8)
    ]
    left = set(partitions(schema, "levels_minute"))
    assert left >= {f"levels_minute_p2026{m:02d}" for m in range(9, 13)}
    assert not left & {f"levels_minute_p2026{m:02d}" for m in (6, 7, 8)}
    assert "levels_minute_default" in left
    assert set(partitions(schema, "labels_hourly")) == hourly  # hourly: kept forever
    assert rows(schema, "SELECT min(bucket) FROM levels_minute") == [
        (datetime(2026, 9, 15, tzinfo=UTC),)
    ]
    assert db.expired(date(2026, 9, 1), 100, now, monthly=True) is False
    assert db.expired(date(2025, 12, 1), 10, datetime(2026, 1, 11, tzinfo=UTC), monthly=True)


def test_the_views_refuse_a_stored_window_and_read_back_what_was_inserted(schema: str) -> None:
    t = datetime(2026, 11, 23, 10, 0, 30, 250_000, tzinfo=UTC)
    sync_id = uuid.uuid4()
    with psycopg.connect(schema, autocommit=True) as conn:
        db.ensure_partitions(conn, {t.date()}, set())
        insert = (
            "INSERT INTO levels (device, window_start, window_seq, window_duration, leq_db, "
            "bands, uncalibrated, sync_id, sync_time) VALUES ('yor', %s, %s, 1, 61.234, %s, "
            "false, %s, now())"
        )
        bands: list[float | None] = [None] * len(BAND_ORDER)
        bands[17] = 55.555
        conn.execute(insert, (t, 1, bands, sync_id))
        conn.execute(insert, (t + timedelta(seconds=1), 2, None, sync_id))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, (t, 3, None, sync_id))
    got: list[Any] = rows(
        schema, "SELECT window_start, window_seq, leq_db, bands, minute FROM levels ORDER BY 1"
    )
    assert [g[0] for g in got] == [t, t + timedelta(seconds=1)]
    assert [g[1] for g in got] == [1, 2]
    assert got[0][2] == pytest.approx(61.234, abs=1e-5)
    assert got[0][3][17] == pytest.approx(55.56, abs=1e-4)  # centi-dB
    assert got[1][3] is None
    assert got[0][4] == t.replace(second=0, microsecond=0)
    assert rows(
        schema, "SELECT count(*), cardinality(offsets_us) FROM levels_packed GROUP BY 2"
    ) == [(1, 2)]


def test_a_0005_database_is_packed_by_0006_with_every_window_and_label(database: str) -> None:
    t = datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)
    sync_id = uuid.uuid4()
    windows = [  # (seconds after t, labels) of one device and minute, one of the next minute
        (0, [("Hum", 0.9), ("Car", 0.5)]),
        (1, [("Bird", 0.7)]),
        (2, [("Car", 0.6), ("Hum", 0.4), ("Dog", 0.1)]),
        (60, [("Dog", 0.8)]),
    ]
    with psycopg.connect(database, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for mig in db.migrations()[:5]:
            conn.execute(mig.sql.encode())
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (mig.version, mig.name))
        conn.execute("SELECT soundscape_ensure_partitions(ARRAY[%s::date])", (t.date(),))
        for k, (dt, labels) in enumerate(windows):
            for name, _ in labels:
                conn.execute(
                    "INSERT INTO label_names (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,)
                )
            conn.execute(
                "INSERT INTO labels (device, window_start, window_seq, window_duration, model, "
                "label_ids, scores, sync_id, sync_time) SELECT 'yor', %s, %s, 1, 'ast', "
                "ARRAY(SELECT id FROM label_names n JOIN unnest(%s::text[]) WITH ORDINALITY "
                "AS u(name, r) USING (name) ORDER BY r), %s::real[], %s, now()",
                (
                    t + timedelta(seconds=dt),
                    k,
                    [n for n, _ in labels],
                    [s for _, s in labels],
                    sync_id,
                ),
            )
            conn.execute(
                "INSERT INTO levels (device, window_start, window_seq, window_duration, leq_db, "
                "uncalibrated, sync_id, sync_time) VALUES ('yor', %s, %s, 1, %s, false, %s, now())",
                (t + timedelta(seconds=dt), k, 50 + k, sync_id),
            )
        assert db.migrate(conn)[0] == "0006_minute_rows"
    got = rows(
        database,
        "SELECT window_start, label, rating, rank FROM detections ORDER BY window_start, rank",
    )
    want = [
        (t + timedelta(seconds=dt), name, pytest.approx(score, abs=1e-4), rank)
        for dt, labels in windows
        for rank, (name, score) in enumerate(labels, start=1)
    ]
    assert got == want
    assert rows(database, "SELECT window_seq, leq_db FROM levels ORDER BY window_start") == [
        (k, 50.0 + k) for k in range(len(windows))
    ]
    assert rows(database, "SELECT count(*), sum(cardinality(offsets_us)) FROM labels_packed") == [
        (2, 4)
    ]
    assert rows(database, "SELECT sum(windows) FROM labelled_hourly") == [(4,)]
    assert rows(database, "SELECT sum(windows) FROM labels_hourly") == [(7,)]


def test_labels_inserted_into_detections_join_their_window_in_its_minute_row(
    schema: str,
) -> None:
    t = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    sync_id = uuid.uuid4()
    order = [
        (0, "Hum", 0.9),
        (10, "Car", 0.8),
        (0, "Bird", 0.5),
        (10, "Dog", 0.3),
        (0, "Rain", 0.2),
    ]
    with psycopg.connect(schema, autocommit=True) as conn:
        for dt, label, rating in order:
            conn.execute(
                "INSERT INTO detections (label, rating, device, sync_id, sync_time, window_start, "
                "window_seq, window_duration, model, rank) "
                "VALUES (%s, %s, 'yor', %s, now(), %s, %s, 1, 'ast', 1)",
                (label, rating, sync_id, t + timedelta(seconds=dt), dt),
            )
    got = rows(
        schema, "SELECT window_start, label, rank FROM detections ORDER BY window_start, rank"
    )
    assert got == [
        (t, "Hum", 1),
        (t, "Bird", 2),
        (t, "Rain", 3),
        (t + timedelta(seconds=10), "Car", 1),
        (t + timedelta(seconds=10), "Dog", 2),
    ]
    assert rows(schema, "SELECT ends FROM labels_packed") == [([3, 5],)]
