"""The results schema (ingest's migrations) and a small, exactly known data set."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from services.ingest.db import migrate

LABELS = (("Speech", 0.9), ("Car", 0.5), ("Bird", 0.3), ("Wind", 0.2), ("Hum", 0.1))


def apply_schema(dsn: str) -> None:
    """Create the results tables exactly as ingest does: its versioned migrations."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)


def recompute_rollups(dsn: str) -> None:
    """Fill the rollup tables from the raw rows, with migration 0005's own recomputation
    (ingest maintains them as batches land; rows inserted directly, as `populate` does, are
    not rolled up until this runs)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT soundscape_recompute_rollups()")


@dataclass(frozen=True)
class Dataset:
    """Times of the inserted data: `t` is on the hour, everything of yor ends at `t`."""

    t: datetime
    now: datetime


def populate(dsn: str) -> Dataset:
    """Insert the known data set (see the comments) and return its reference times.

    - devices: yor and ouse (with coordinates), spare (none, never reports); lab reports
      detections without a devices row.
    - yor levels, 1 s windows: [t-3h, t-2h) Leq 60 / LAeq 55; nothing in [t-2h, t-1h);
      [t-1h, t) Leq alternating 60/70 and LAeq 50/60 (energetic means 67.40 and 57.40).
    - ouse levels every 10 s over [t-1h, t) at 45 dB, no LAeq, uncalibrated; plus one at now-5s.
    - detections of yor at t-10min ... t-1min (5 labels each), one Bird 0.8 of lab at t-5min.
    - indices, level summaries, a noise event and two gaps (yor, ouse).
    - the rollups of all of it, as ingest would have made them (`recompute_rollups`).
    """
    now = datetime.now(UTC).replace(microsecond=0)
    t = now.replace(minute=0, second=0)
    sync = {"sync_id": uuid.uuid4(), "sync_time": now}
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(
            """
            INSERT INTO devices (id, name, latitude, longitude, model, sync_interval,
                                 noise_threshold_db, updated_at)
            VALUES ('yor', 'York Road', 53.959, -1.081, 'AudioMoth', 30, 65, %(now)s),
                   ('ouse', 'Ouse Bridge', 53.957, -1.084, 'AudioMoth', 30, 65, %(now)s),
                   ('spare', NULL, NULL, NULL, 'AudioMoth', 3600, 65, %(now)s)
            """,
            {"now": now},
        )
        conn.execute(
            """
            INSERT INTO levels (device, window_start, window_seq, window_duration, leq_db,
                                laeq_db, uncalibrated, sync_id, sync_time)
            SELECT 'yor', %(t)s - interval '3 hours' + make_interval(secs => i), i, 1, 60, 55,
                   false, %(sync_id)s, %(sync_time)s
            FROM generate_series(0, 3599) AS i
            UNION ALL
            SELECT 'yor', %(t)s - interval '1 hour' + make_interval(secs => i), 7200 + i, 1,
                   CASE WHEN i %% 2 = 0 THEN 60 ELSE 70 END,
                   CASE WHEN i %% 2 = 0 THEN 50 ELSE 60 END, false, %(sync_id)s, %(sync_time)s
            FROM generate_series(0, 3599) AS i
            UNION ALL
            SELECT 'ouse', %(t)s - interval '1 hour' + make_interval(secs => 10 * i), i, 1, 45,
                   NULL, true, %(sync_id)s, %(sync_time)s
            FROM generate_series(0, 359) AS i
            UNION ALL
            SELECT 'ouse', %(recent)s, 100000, 1, 47, NULL, true, %(sync_id)s, %(sync_time)s
            """,
            {"t": t, "recent": max(now - timedelta(seconds=5), t), **sync},
        )
        rows = [
            ("yor", t - timedelta(minutes=m), label, score, rank)
            for m in range(1, 11)
            for rank, (label, score) in enumerate(LABELS, start=1)
        ] + [("lab", t - timedelta(minutes=5), "Bird", 0.8, 1)]
        with conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO detections (label, rating, device, sync_id, sync_time, window_start,
                                        window_seq, window_duration, model, rank)
                VALUES (%s, %s, %s, %s, %s, %s, 0, 1, 'ast', %s)
                """,
                [
                    (lbl, score, dev, sync["sync_id"], now, start, rank)
                    for dev, start, lbl, score, rank in rows
                ],
            )
        conn.execute(
            """
            INSERT INTO indices (device, window_start, window_seq, window_duration, aci, adi,
                                 aei, bi, ndsi, ht, hf, events, sync_id, sync_time)
            SELECT 'yor', %(t)s - interval '1 hour' + make_interval(mins => 5 * i), i, 300,
                   100 + i, 2.0, 0.3, 5.0, 0.5, 0.9, 0.8, 2, %(sync_id)s, %(sync_time)s
            FROM generate_series(0, 11) AS i
            """,
            {"t": t, **sync},
        )
        conn.execute(
            """
            INSERT INTO level_summaries (device, window_start, window_seq, window_duration, laeq_db,
                lamax_db, lamin_db, l10_db, l50_db, l90_db, coverage, uncalibrated,
                sync_id, sync_time)
            SELECT 'yor', %(t)s - interval '1 hour' + make_interval(mins => i), i, 60, 57.4, 75,
                   45, 65, 58, 50, 1, false, %(sync_id)s, %(sync_time)s
            FROM generate_series(0, 59) AS i
            """,
            {"t": t, **sync},
        )
        conn.execute(
            """
            INSERT INTO noise_events (device, window_start, window_seq, window_duration,
                                      threshold_db, laeq_db, lamax_db, classes, sync_id,
                                      sync_time)
            VALUES ('yor', %(start)s, 0, 30, 65, 70, 80, %(classes)s, %(sync_id)s, %(sync_time)s)
            """,
            {
                "start": t - timedelta(minutes=20),
                "classes": json.dumps([{"label": "Car", "score": 0.8}]),
                **sync,
            },
        )
        conn.execute(
            """
            INSERT INTO gaps (uid, device, kind, first_start, last_start, count, recorded_at,
                              node, sync_id, sync_time)
            VALUES (gen_random_uuid(), 'yor', 'inference_overload', %(a)s, %(b)s, 60, %(now)s,
                    'inference-1', %(sync_id)s, %(sync_time)s),
                   (gen_random_uuid(), 'ouse', 'spool_overflow', %(a)s, %(a)s, 3, %(now)s,
                    NULL, %(sync_id)s, %(sync_time)s)
            """,
            {"a": t - timedelta(minutes=40), "b": t - timedelta(minutes=39), "now": now, **sync},
        )
    recompute_rollups(dsn)
    return Dataset(t=t, now=now)
