"""A seeded fleet for the page tests, the browser test and the benchmark: every table the
dashboard reads, filled in SQL (generate_series), fast enough for a test.

Layout, for `n` devices `dev-01 ...` and a `spare` (in the registry, with coordinates, that
never reports), relative to `now` (the seeding time):
- raw rows over [raw_start, raw_end) = `RAW` minutes ending `QUIET` before now (whole minutes):
  1 s levels (with 1/3-octave bands up to 8 kHz), 1 s labels windows (top-5; the best class
  changes every 30 s and sets the level: 50 + 2 x its id dB(A)), a level summary a minute,
  an indices window every 5 min; ingest's rollups recomputed from them;
- older history as rollups only: per minute for `minute_hours` before raw_start, per hour for
  `hour_days` (what retention would leave after dropping raw partitions);
- dev-01 has one more level row `RECENT` before now, so it is online; the others are offline;
- a noise event per device, a gap for the first two devices, and two syncs.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg

#: Label names by id (ids 1..12).
LABELS: Final = (
    "Speech", "Vehicle", "Car", "Bird", "Wind", "Siren", "Music", "Dog", "Footsteps", "Rain",
    "Engine", "Bus",
)  # fmt: skip
#: Raw minutes per device, and how long before the seeding time they end.
RAW: Final = timedelta(minutes=90)
QUIET: Final = timedelta(minutes=10)
RECENT: Final = timedelta(seconds=5)
#: Nominal 1/3-octave bands with values: band_names i = 1..27 (20 Hz .. 8 kHz).
BANDS_WITH_VALUES: Final = 27
MODEL: Final = "yamnet"


@dataclass(frozen=True)
class Fleet:
    """What was seeded."""

    devices: list[str]
    spare: str
    now: datetime
    raw_start: datetime
    raw_end: datetime


def device_ids(n: int) -> list[str]:
    """dev-01, dev-02, ..."""
    return [f"dev-{i:02d}" for i in range(1, n + 1)]


def seed_fleet(dsn: str, n: int, minute_hours: float = 20, hour_days: float = 2) -> Fleet:
    """Seed the schema (already migrated) at `dsn`; see the module docstring."""
    now = datetime.now(UTC).replace(microsecond=0)
    raw_end = (now - QUIET).replace(second=0)
    raw_start = raw_end - RAW
    devices = device_ids(n)
    sync = uuid.uuid4()
    p: dict[str, Any] = {
        "devices": devices,
        "raw_start": raw_start,
        "raw_end": raw_end,
        "sync": sync,
        "now": now,
        "model": MODEL,
        "minute_from": raw_start - timedelta(hours=minute_hours),
        "hour_from": raw_start - timedelta(days=hour_days),
        "nbands": BANDS_WITH_VALUES,
        "nlabels": len(LABELS),
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT soundscape_ensure_partitions(ARRAY(SELECT d::date FROM generate_series("
            "%(a)s::timestamptz AT TIME ZONE 'UTC', %(b)s::timestamptz AT TIME ZONE 'UTC', "
            "interval '1 day') d))",
            {"a": raw_start - timedelta(days=1), "b": now + timedelta(days=1)},
        )
        with conn.transaction():
            _registry(conn, devices, now)
            conn.execute(
                "INSERT INTO label_names (id, name) SELECT i, n FROM unnest(%s::text[]) "
                "WITH ORDINALITY AS u(n, i)",
                (list(LABELS),),
            )
            _raw(conn, p)
            _events(conn, devices, raw_start, sync, now)
        conn.execute("SELECT soundscape_recompute_rollups()")
        _history(conn, p)
        conn.execute("ANALYZE")
    return Fleet(devices, "spare", now, raw_start, raw_end)


def _registry(conn: psycopg.Connection[object], devices: list[str], now: datetime) -> None:
    rows = [
        (d, f"Sensor {d}", 53.95 + 0.004 * (i % 5), -1.09 + 0.006 * (i // 5), i == 2)
        for i, d in enumerate(devices)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO devices (id, name, latitude, longitude, model, sync_interval, "
            "noise_threshold_db, calibration, updated_at) VALUES (%s, %s, %s, %s, 'AudioMoth', "
            "5, 65, CASE WHEN %s THEN NULL ELSE '{\"gain_db\": 25}'::jsonb END, %s)",
            [(*r, now) for r in rows],
        )
        cur.execute(
            "INSERT INTO devices (id, name, latitude, longitude, model, sync_interval, "
            "noise_threshold_db, updated_at) VALUES ('spare', 'Spare, not installed', "
            "53.948, -1.095, 'AudioMoth', 5, 65, %s)",
            (now,),
        )


def _raw(conn: psycopg.Connection[object], p: dict[str, Any]) -> None:
    # The best class of second t on device k: ((t / 30) + k) mod 12 + 1.
    conn.execute(
        """
        WITH s AS (
            SELECT d.device, d.k, t,
                   ((extract(epoch FROM t)::bigint / 30 + d.k) %% %(nlabels)s) + 1 AS best
            FROM unnest(%(devices)s::text[]) WITH ORDINALITY AS d(device, k)
            CROSS JOIN generate_series(%(raw_start)s::timestamptz,
                                       %(raw_end)s::timestamptz - interval '1 second',
                                       interval '1 second') AS t
        )
        INSERT INTO levels (device, window_start, window_seq, window_duration, leq_db, laeq_db,
                            lceq_db, bands, uncalibrated, sync_id, sync_time)
        SELECT device, t, extract(epoch FROM t)::bigint, 1, 53 + 2 * best + (k %% 3),
               50 + 2 * best + (k %% 3), 56 + 2 * best,
               ARRAY(SELECT CASE WHEN i <= %(nbands)s
                                 THEN (40 + 2 * best - abs(i - 14) + (i %% 3))::real END
                     FROM generate_series(1, 41) AS i),
               k = 3, %(sync)s, %(raw_end)s
        FROM s
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO labels (device, window_start, window_seq, window_duration, model, label_ids,
                            scores, speech_present, inference_ms, sync_id, sync_time)
        SELECT d.device, t, extract(epoch FROM t)::bigint, 1, %(model)s,
               ARRAY(SELECT (((extract(epoch FROM t)::bigint / 30 + d.k + j)
                              %% %(nlabels)s) + 1)::smallint
                     FROM generate_series(0, 4) AS j),
               ARRAY[0.8, 0.4, 0.2, 0.1, 0.05]::real[], false, 40, %(sync)s, %(raw_end)s
        FROM unnest(%(devices)s::text[]) WITH ORDINALITY AS d(device, k)
        CROSS JOIN generate_series(%(raw_start)s::timestamptz,
                                   %(raw_end)s::timestamptz - interval '1 second',
                                   interval '1 second') AS t
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO level_summaries (device, window_start, window_seq, window_duration, laeq_db,
            lamax_db, lamin_db, l10_db, l50_db, l90_db, coverage, uncalibrated, sync_id,
            sync_time)
        SELECT d, t, extract(epoch FROM t)::bigint, 60, 60, 75, 45, 64, 58, 52, 1, false,
               %(sync)s, %(raw_end)s
        FROM unnest(%(devices)s::text[]) AS d
        CROSS JOIN generate_series(%(raw_start)s::timestamptz,
                                   %(raw_end)s::timestamptz - interval '1 minute',
                                   interval '1 minute') AS t
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO indices (device, window_start, window_seq, window_duration, aci, adi, aei,
                             bi, ndsi, ht, hf, events, sync_id, sync_time)
        SELECT d, t, extract(epoch FROM t)::bigint, 300, 150, 2.1, 0.4, 6, 0.3, 0.9, 0.7, 3,
               %(sync)s, %(raw_end)s
        FROM unnest(%(devices)s::text[]) AS d
        CROSS JOIN generate_series(%(raw_start)s::timestamptz,
                                   %(raw_end)s::timestamptz - interval '5 minutes',
                                   interval '5 minutes') AS t
        """,
        p,
    )
    # dev-01 reported just now: online.
    conn.execute(
        """
        INSERT INTO levels (device, window_start, window_seq, window_duration, leq_db, laeq_db,
                            uncalibrated, sync_id, sync_time)
        VALUES (%(first)s, %(recent)s, 1, 1, 61, 58, false, %(sync)s, %(now)s)
        """,
        {**p, "first": p["devices"][0], "recent": p["now"] - RECENT},
    )


def _events(conn: psycopg.Connection[object], devices: list[str], raw_start: datetime,
            sync: uuid.UUID, now: datetime) -> None:  # fmt: skip
    classes = json.dumps([{"label": "Siren", "score": 0.7}, {"label": "Vehicle", "score": 0.4}])
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO noise_events (device, window_start, window_seq, window_duration, "
            "threshold_db, laeq_db, lamax_db, classes, sync_id, sync_time) "
            "VALUES (%s, %s, 0, 20, 65, 71, 82, %s, %s, %s)",
            [(d, raw_start + timedelta(minutes=20), classes, sync, now) for d in devices],
        )
        cur.executemany(
            "INSERT INTO gaps (device, kind, first_start, last_start, count, recorded_at, node, "
            "sync_id, sync_time) VALUES (%s, %s, %s, %s, 30, %s, 'stack-inference', %s, %s)",
            [
                (d, "inference_overload", raw_start + timedelta(minutes=5),
                 raw_start + timedelta(minutes=5, seconds=29), now, sync, now)
                for d in devices[:2]
            ],
        )  # fmt: skip
        cur.executemany(
            "INSERT INTO syncs (sync_id, sync_time, source, rows, offered, results, gaps) "
            "VALUES (%s, %s, 'stack-ingest', %s, %s, %s, 0)",
            [
                (sync, now, 1000, 1000, 1000),
                (uuid.uuid4(), now - timedelta(seconds=30), 50, 50, 50),
            ],
        )


def _history(conn: psycopg.Connection[object], p: dict[str, Any]) -> None:
    """Rollups of the time before the raw rows (whose own rollups ingest's recomputation
    made): ON CONFLICT DO NOTHING keeps those."""
    conn.execute(
        """
        INSERT INTO levels_minute (device, bucket, seconds, leq_energy, laeq_seconds,
                                   laeq_energy, lceq_seconds, lceq_energy, windows)
        SELECT d, b, 60, 60 * power(10, (58 + 6 * sin(extract(epoch FROM b) / 7200) + k) / 10),
               60, 60 * power(10, (55 + 6 * sin(extract(epoch FROM b) / 7200) + k) / 10),
               60, 60 * power(10, 6.1), 60
        FROM unnest(%(devices)s::text[]) WITH ORDINALITY AS u(d, k)
        CROSS JOIN generate_series(%(minute_from)s::timestamptz,
                                   %(raw_start)s::timestamptz - interval '1 minute',
                                   interval '1 minute') AS b
        ON CONFLICT DO NOTHING
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO levels_hourly (device, bucket, seconds, leq_energy, laeq_seconds,
                                   laeq_energy, lceq_seconds, lceq_energy, windows)
        SELECT d, b, 3600, 3600 * power(10, (58 + 6 * sin(extract(epoch FROM b) / 7200) + k) / 10),
               3600, 3600 * power(10, (55 + 6 * sin(extract(epoch FROM b) / 7200) + k) / 10),
               3600, 3600 * power(10, 6.1), 3600
        FROM unnest(%(devices)s::text[]) WITH ORDINALITY AS u(d, k)
        CROSS JOIN generate_series(date_trunc('hour', %(hour_from)s::timestamptz, 'UTC'),
                                   date_trunc('hour', %(raw_start)s::timestamptz, 'UTC')
                                   - interval '1 hour', interval '1 hour') AS b
        ON CONFLICT DO NOTHING
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO labels_hourly (device, bucket, model, label_id, windows, score_sum,
                                   score_max)
        SELECT d, b, %(model)s, l, 300 + 20 * ((l + extract(hour FROM b)::int) %% 7),
               150, 0.8
        FROM unnest(%(devices)s::text[]) AS d
        CROSS JOIN generate_series(date_trunc('hour', %(hour_from)s::timestamptz, 'UTC'),
                                   date_trunc('hour', %(raw_start)s::timestamptz, 'UTC')
                                   - interval '1 hour', interval '1 hour') AS b
        CROSS JOIN generate_series(1, %(nlabels)s) AS l
        ON CONFLICT DO NOTHING
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO summaries_hourly (device, bucket, window_duration, summaries, seconds,
            laeq_energy, lamax_db, lamin_db, l10_sum, l50_sum, l90_sum, coverage_seconds)
        SELECT d, b, 60, 60, 3600, 3600 * power(10, 5.6), 78, 42, 3600 * 63, 3600 * 57,
               3600 * 50, 3600
        FROM unnest(%(devices)s::text[]) AS d
        CROSS JOIN generate_series(date_trunc('hour', %(hour_from)s::timestamptz, 'UTC'),
                                   date_trunc('hour', %(raw_start)s::timestamptz, 'UTC')
                                   - interval '1 hour', interval '1 hour') AS b
        ON CONFLICT DO NOTHING
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO indices_hourly (device, bucket, window_duration, windows,
            aci_sum, aci_n, adi_sum, adi_n, aei_sum, aei_n, bi_sum, bi_n, ndsi_sum, ndsi_n,
            ht_sum, ht_n, hf_sum, hf_n, events_sum, events_n)
        SELECT d, b, 300, 12, 12 * (140 + 20 * sin(extract(epoch FROM b) / 20000)), 12,
               24, 12, 4.8, 12, 72, 12, 3.6, 12, 10.8, 12, 8.4, 12, 36, 12
        FROM unnest(%(devices)s::text[]) AS d
        CROSS JOIN generate_series(date_trunc('hour', %(hour_from)s::timestamptz, 'UTC'),
                                   date_trunc('hour', %(raw_start)s::timestamptz, 'UTC')
                                   - interval '1 hour', interval '1 hour') AS b
        ON CONFLICT DO NOTHING
        """,
        p,
    )
