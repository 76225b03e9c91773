"""Read-only queries of the device page: one device, a connection and parameters in,
DataFrames out (the level, summary, indices and events series come from `queries`).

Each query is bounded for a month of one device: the hour x class heat map reads
`labels_hourly`; the band spectrogram reads the per-minute or hourly rollup's `bands` when
ingest keeps them (a `bands` column on `levels_minute` / `levels_hourly`: energetic means
in dB, in `band_names` order), else the raw `levels.bands` of at most `RAW_BANDS_MAX`; the
LAeq-per-class distribution joins raw labels and levels windows over at most
`CLASS_LEVELS_MAX`, the end of the range.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import pandas as pd
from psycopg import sql

from services.dashboard.core import BUCKET_ORIGIN
from services.dashboard.queries import Connection, frame

#: Longest span of raw `levels.bands` the spectrogram reads (the end of the range).
RAW_BANDS_MAX: Final = timedelta(hours=2)
#: Longest span whose label and level windows are matched for the LAeq-per-class chart.
CLASS_LEVELS_MAX: Final = timedelta(hours=24)


def has_column(conn: Connection, table: str, column: str) -> bool:
    """Whether `table` (in the search path) has `column`."""
    row = conn.execute(
        """
        SELECT EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = ANY(current_schemas(false))
                         AND table_name = %s AND column_name = %s)
        """,
        (table, column),
    ).fetchone()
    return bool(row and row[0])


def band_source(conn: Connection, span: timedelta, bucket: timedelta) -> tuple[str, str]:
    """(table, how it is read) of the spectrogram for `span` in `bucket`s: the hourly or
    per-minute rollup when it has `bands` and the bucket is whole rollup buckets, else raw."""
    if bucket % timedelta(hours=1) == timedelta(0) and has_column(conn, "levels_hourly", "bands"):
        return "levels_hourly", "rollup"
    if bucket % timedelta(minutes=1) == timedelta(0) and has_column(conn, "levels_minute", "bands"):
        return "levels_minute", "rollup"
    return "levels", "raw"


def band_levels(conn: Connection, device: str, start: datetime, end: datetime,
                bucket: timedelta, table: str = "levels") -> pd.DataFrame:  # fmt: skip
    """Energetic mean per bucket of each 1/3-octave band of one device.

    Columns: bucket, band (its nominal centre, e.g. '1000'), centre_hz, db. Bands without a
    value in the range are absent. `table` is one of `band_source`'s: a rollup's bands
    (minute or hour energetic means, weighted by their seconds) or raw `levels`.
    """
    weight = sql.SQL("r.band_seconds") if table != "levels" else sql.SQL("1")
    query = sql.SQL(
        """
        SELECT date_bin(%(bucket)s, r.{time}, %(origin)s) AS bucket, n.name AS band,
               n.centre_hz,
               10 * log10(sum({weight} * power(10::double precision,
                                               least(greatest(b.v, -300), 300) / 10.0))
                          / sum({weight})) AS db
        FROM {source} r
        CROSS JOIN LATERAL unnest(r.bands) WITH ORDINALITY AS b(v, i)
        JOIN band_names n ON n.i = b.i
        WHERE r.device = %(device)s AND r.{time} >= %(start)s AND r.{time} < %(end)s
          AND b.v IS NOT NULL
        GROUP BY 1, 2, 3
        ORDER BY 1, 3
        """
    ).format(
        # Raw rows through levels_between: it bounds the minute rows before unpacking them.
        source=sql.SQL("levels_between(ARRAY[%(device)s], %(start)s, %(end)s)")
        if table == "levels"
        else sql.Identifier(table),
        time=sql.Identifier("window_start" if table == "levels" else "bucket"),
        weight=weight,
    )
    params = {"device": device, "start": start, "end": end, "bucket": bucket}
    return frame(conn, query, {**params, "origin": BUCKET_ORIGIN})


def hour_class_counts(conn: Connection, device: str, start: datetime, end: datetime,
                      timezone: str, top: int) -> pd.DataFrame:  # fmt: skip
    """Analysis windows per hour of day (in `timezone`) of the `top` classes of the range,
    from `labels_hourly` (a window counts for every class of its top-k).

    Columns: hour (0-23), label, windows. Hours a class was never heard are absent.
    """
    return frame(
        conn,
        """
        WITH h AS (
            SELECT bucket, label_id, windows FROM labels_hourly
            WHERE device = %(device)s
              AND bucket >= date_trunc('hour', %(start)s::timestamptz, 'UTC')
              AND bucket < %(end)s
        ), top AS (
            SELECT label_id FROM h GROUP BY 1 ORDER BY sum(windows) DESC, 1 LIMIT %(top)s
        )
        SELECT extract(hour FROM h.bucket AT TIME ZONE %(tz)s)::int AS hour, n.name AS label,
               sum(h.windows)::bigint AS windows
        FROM h JOIN top USING (label_id) JOIN label_names n ON n.id = h.label_id
        GROUP BY 1, 2
        ORDER BY 2, 1
        """,
        {"device": device, "start": start, "end": end, "tz": timezone, "top": top},
    )


def class_levels(conn: Connection, device: str, start: datetime, end: datetime,
                 min_score: float, top: int) -> pd.DataFrame:  # fmt: skip
    """What makes the noise: LAeq of the seconds in which each class was the best label.

    Every level window (1 s chunk) is matched with the labels window of the same device that
    covers its start; the class is that window's top label (with a score of at least
    `min_score`). The `top` most frequent classes, each with: windows, laeq_db (energetic
    mean), p05, p25, p50, p75, p95, min_db, max_db (of the windows' LAeq, dB(A)). Reads the
    raw rows of at most `CLASS_LEVELS_MAX` at the end of the range.
    """
    start = max(start, end - CLASS_LEVELS_MAX)
    return frame(
        conn,
        """
        WITH s AS (
            -- Both streams in time order, a labels window before a level window of the same
            -- start; grp numbers the labels windows, so each level window falls in the group
            -- of the newest labels window that started at or before it (one sort, no range
            -- join of the two unpacked streams).
            SELECT lb.window_start AS t, 0 AS k, lb.label_ids[1] AS label_id,
                   lb.scores[1] AS score,
                   lb.window_start + make_interval(secs => lb.window_duration) AS until,
                   NULL::double precision AS laeq_db
            FROM labels_between(ARRAY[%(device)s], %(start)s, %(end)s) lb
            UNION ALL
            SELECT lv.window_start, 1, NULL, NULL, NULL, lv.laeq_db
            FROM levels_between(ARRAY[%(device)s], %(start)s, %(end)s) lv
            WHERE lv.laeq_db IS NOT NULL
        ), g AS (
            SELECT s.*, count(*) FILTER (WHERE k = 0) OVER (ORDER BY t, k) AS grp FROM s
        ), w AS (
            -- A group's one labels window lends its values to the group's level windows (the
            -- maximum ignores their nulls): no join, whose row estimates the unnested arrays
            -- would get wrong.
            SELECT label_id, laeq_db FROM (
                SELECT k, t, laeq_db, max(label_id) OVER (PARTITION BY grp) AS label_id,
                       max(score) OVER (PARTITION BY grp) AS score,
                       max(until) OVER (PARTITION BY grp) AS until
                FROM g
            ) x
            WHERE k = 1 AND t < until AND score >= %(min_score)s
        ), top AS (
            SELECT label_id FROM w GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT %(top)s
        )
        SELECT n.name AS label, count(*) AS windows,
               10 * log10(avg(power(10::double precision,
                                    least(greatest(w.laeq_db, -300), 300) / 10.0))) AS laeq_db,
               percentile_cont(0.05) WITHIN GROUP (ORDER BY w.laeq_db) AS p05,
               percentile_cont(0.25) WITHIN GROUP (ORDER BY w.laeq_db) AS p25,
               percentile_cont(0.50) WITHIN GROUP (ORDER BY w.laeq_db) AS p50,
               percentile_cont(0.75) WITHIN GROUP (ORDER BY w.laeq_db) AS p75,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY w.laeq_db) AS p95,
               min(w.laeq_db) AS min_db, max(w.laeq_db) AS max_db
        FROM w JOIN top USING (label_id) JOIN label_names n ON n.id = w.label_id
        GROUP BY n.name
        ORDER BY windows DESC, label
        """,
        {"device": device, "start": start, "end": end, "min_score": min_score, "top": top},
    )
