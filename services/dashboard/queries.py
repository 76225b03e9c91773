"""Read-only queries of the results database: a connection and parameters in, DataFrames out.

Every value travels as a query parameter; table names come from the fixed schema contract
(see docs/dashboard.md) through `psycopg.sql.Identifier`, never from user input.

Speed with a year of data rests on three habits:
- every time-range query names its devices (`device = ANY(%s)`) so PostgreSQL can walk the
  (device, window_start) primary-key index instead of scanning the table;
- time series are downsampled on the server with `date_bin`, a bounded number of buckets per
  device, so the page never fetches more than `max_points` rows per device and series;
- a range longer than `ROLLUP_AFTER` (6 h) reads ingest's rollups (`levels_minute`,
  `levels_hourly`, `labels_hourly`, `summaries_hourly`, `indices_hourly`) instead of the raw
  rows, when the display bucket is a whole number of rollup buckets (see `rollup_for`).
  Such a range is widened to whole rollup buckets: a rollup bucket counts when its start
  lies in [start rounded down to the rollup bucket, end).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, LiteralString

import pandas as pd
import psycopg
from psycopg import sql

from services.dashboard.core import BUCKET_ORIGIN, ROLLUP_AFTER

#: Tables without which there is nothing to show: created by ingest's first migration.
CORE_TABLES: Final = ("devices", "levels", "detections")
#: Tables the page uses when they exist.
OPTIONAL_TABLES: Final = ("level_summaries", "indices", "noise_events", "gaps")
#: Acoustic index columns of the indices table, in display order.
INDEX_COLUMNS: Final = ("aci", "adi", "aei", "bi", "ndsi", "ht", "hf", "events")

Connection = psycopg.Connection[Any]

MINUTE: Final = timedelta(minutes=1)
HOUR: Final = timedelta(hours=1)


def rollup_for(span: timedelta, bucket: timedelta | None, hourly: str, minute: str | None = None
               ) -> tuple[str, timedelta] | None:  # fmt: skip
    """(table, its bucket width) that a query over `span` in display buckets `bucket` reads,
    or None for the raw rows.

    Raw rows up to `ROLLUP_AFTER`; beyond it the hourly rollup when the display bucket is a
    whole number of hours (or there is none: a total over the range), else the per-minute one
    (where there is one) when it is a whole number of minutes, else the raw rows. Buckets
    share `BUCKET_ORIGIN` (a midnight UTC), so a whole number of rollup buckets also starts
    on a rollup bucket boundary: each rollup bucket falls into exactly one display bucket.
    """
    if span <= ROLLUP_AFTER:
        return None
    if bucket is None or bucket % HOUR == timedelta(0):
        return hourly, HOUR
    if minute is not None and bucket % MINUTE == timedelta(0):
        return minute, MINUTE
    return None


def _table_exists(conn: Connection, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _source(conn: Connection, start: datetime, end: datetime, bucket: timedelta | None,
            hourly: str, minute: str | None = None) -> tuple[str, timedelta] | None:  # fmt: skip
    """`rollup_for` for the range, None also when the rollup table does not exist (a
    database ingest has not migrated to 0005 yet)."""
    choice = rollup_for(end - start, bucket, hourly, minute)
    if choice is None or not _table_exists(conn, choice[0]):
        return None
    return choice


def _packed(conn: Connection) -> bool:
    """Whether levels and labels are stored a minute a row (migration 0006): their views
    then have a `minute` column, and a filter on it prunes what is read."""
    return _table_exists(conn, "levels_packed")


def frame(
    conn: Connection, query: LiteralString | sql.Composed, params: dict[str, Any]
) -> pd.DataFrame:
    """Run `query` and return its rows as a DataFrame with the query's column names."""
    with conn.cursor() as cur:
        cur.execute(query, params)
        columns = [col.name for col in cur.description or ()]
        rows = cur.fetchall()
    return pd.DataFrame.from_records(rows, columns=columns)


def _energy_mean(column: str) -> sql.Composed:
    """SQL for the energetic mean of a dB column: 10 log10(mean(10^(L/10))).

    Levels are clamped to +-300 dB first so one corrupt row cannot overflow the power
    (`greatest` ignores NULLs, hence the FILTER: a bucket without values stays NULL).
    """
    return sql.SQL(
        "10 * log10(avg(power(10::double precision, least(greatest({col}, -300), 300) / 10.0))"
        " FILTER (WHERE {col} IS NOT NULL))"
    ).format(col=sql.Identifier(column))


def existing_tables(
    conn: Connection, names: Iterable[str] = CORE_TABLES + OPTIONAL_TABLES
) -> set[str]:
    """Which of `names` exist (as tables or views) in the connection's search path."""
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(current_schemas(false))
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND c.relname = ANY(%(names)s)
        """,
        {"names": list(names)},
    ).fetchall()
    return {row[0] for row in rows}


def device_ids(conn: Connection) -> list[str]:
    """Every device id known: the devices table and any device that has levels or detections.

    Distinct devices of the big tables are found with a loose index scan (one index probe per
    device), not by reading every row.
    """
    found: set[str] = {row[0] for row in conn.execute("SELECT id FROM devices").fetchall()}
    tables = ("levels_packed", "labels_packed") if _packed(conn) else ("levels", "detections")
    for table in tables:
        query = sql.SQL(
            """
            WITH RECURSIVE d(device) AS (
                (SELECT device FROM {t} WHERE device IS NOT NULL ORDER BY device LIMIT 1)
                UNION ALL
                SELECT (SELECT t.device FROM {t} t WHERE t.device > d.device
                        ORDER BY t.device LIMIT 1)
                FROM d WHERE d.device IS NOT NULL
            )
            SELECT device FROM d WHERE device IS NOT NULL
            """
        ).format(t=sql.Identifier(table))
        found.update(row[0] for row in conn.execute(query).fetchall())
    return sorted(found)


def device_overview(conn: Connection, devices: Sequence[str]) -> pd.DataFrame:
    """One row per device: registry fields, newest level and detection, and `last_seen`.

    Columns: device, name, latitude, longitude, model, sync_interval, noise_threshold_db,
    level_time, leq_db, laeq_db, uncalibrated, detection_time, last_seen (the end of the
    newest window with any result; NaT when the device never reported). The newest window
    is looked for in the device's newest minute row only (one index probe a partition).
    """
    if _packed(conn):
        newest_level = sql.SQL(
            "AND minute = (SELECT max(minute) FROM levels_packed WHERE device = ids.device)"
        )
        newest_label = sql.SQL(
            "AND minute = (SELECT max(minute) FROM labels_packed WHERE device = ids.device)"
        )
    else:
        newest_level = newest_label = sql.SQL("")
    query = sql.SQL(
        """
        SELECT ids.device, dv.name, dv.latitude, dv.longitude, dv.model, dv.sync_interval,
               dv.noise_threshold_db,
               lv.window_start AS level_time, lv.leq_db, lv.laeq_db, lv.uncalibrated,
               dt.window_start AS detection_time,
               greatest(
                   lv.window_start + make_interval(secs => coalesce(lv.window_duration, 0)),
                   dt.window_start + make_interval(secs => coalesce(dt.window_duration, 0))
               ) AS last_seen
        FROM unnest(%(devices)s::text[]) AS ids(device)
        LEFT JOIN devices dv ON dv.id = ids.device
        LEFT JOIN LATERAL (
            SELECT window_start, window_duration, leq_db, laeq_db, uncalibrated FROM levels
            WHERE device = ids.device {newest_level} ORDER BY window_start DESC LIMIT 1
        ) lv ON true
        LEFT JOIN LATERAL (
            SELECT window_start, window_duration FROM {labels}
            WHERE device = ids.device AND window_start IS NOT NULL {newest_label}
            ORDER BY window_start DESC LIMIT 1
        ) dt ON true
        ORDER BY ids.device
        """
    ).format(
        newest_level=newest_level,
        newest_label=newest_label,
        labels=sql.Identifier("labels" if _packed(conn) else "detections"),
    )
    return frame(conn, query, {"devices": list(devices)})


def level_series(
    conn: Connection,
    devices: Sequence[str],
    start: datetime,
    end: datetime,
    bucket: timedelta,
    rollups: bool = True,
) -> pd.DataFrame:
    """Per-chunk levels downsampled to `bucket`: energetic means, so a bucket's Leq is true.

    Columns: device, bucket (start time), leq_db, leq_max_db, leq_min_db, laeq_db, windows
    (number of chunks in the bucket). Ordered by device, then time; empty buckets are absent.

    `levels` is the big table (one row per device per second), so each (device, bucket) is
    one range scan of the (device, window_start) key: no sort of the whole range, memory
    bounded by the number of buckets. A plain GROUP BY date_bin(...) sorts every row (the
    planner cannot know the bucket count) and spilled to disk at a week of data.

    Longer than `ROLLUP_AFTER`, it reads `levels_minute` or `levels_hourly` (see
    `rollup_for`): Leq and LAeq are 10 log10(sum(energy) / sum(seconds)), i.e. weighted by
    window duration (equal to the raw query's mean when every window has the same length),
    `windows` the sum of the rollup's; `leq_max_db` and `leq_min_db` are then the loudest
    and quietest rollup bucket's Leq (minute or hour), not of a single window.
    With `rollups` false it reads the raw rows at any range (benchmarks, tests).
    """
    source = (
        _source(conn, start, end, bucket, "levels_hourly", "levels_minute") if rollups else None
    )
    if source is not None:
        return _level_rollup(conn, devices, start, end, bucket, *source)
    if _packed(conn):
        # one pass over the range's minute rows, unpacking only the three arrays used
        packed = sql.SQL(
            """
            SELECT device, date_bin(%(bucket)s, window_start, %(origin)s) AS bucket,
                   {leq} AS leq_db, max(leq_db) AS leq_max_db, min(leq_db) AS leq_min_db,
                   {laeq} AS laeq_db, count(*) AS windows
            FROM (
                SELECT p.device, p.minute + u.off * interval '1 microsecond' AS window_start,
                       u.leq::float8 AS leq_db, u.laeq::float8 AS laeq_db
                FROM levels_packed p
                CROSS JOIN LATERAL unnest(p.offsets_us, p.leq_db, p.laeq_db) AS u(off, leq, laeq)
                WHERE p.device = ANY(%(devices)s)
                  AND p.minute >= date_trunc('minute', %(start)s::timestamptz, 'UTC')
                  AND p.minute < %(end)s
            ) l
            WHERE window_start >= %(start)s AND window_start < %(end)s
            GROUP BY 1, 2 ORDER BY 1, 2
            """
        ).format(leq=_energy_mean("leq_db"), laeq=_energy_mean("laeq_db"))
        return frame(conn, packed, _range(devices, start, end, bucket))
    query = sql.SQL(
        """
        SELECT ids.device, b.bucket, a.leq_db, a.leq_max_db, a.leq_min_db, a.laeq_db, a.windows
        FROM unnest(%(devices)s::text[]) AS ids(device)
        CROSS JOIN generate_series(
            date_bin(%(bucket)s, %(start)s::timestamptz, %(origin)s), %(end)s, %(bucket)s
        ) AS b(bucket)
        CROSS JOIN LATERAL (
            SELECT {leq} AS leq_db, max(leq_db) AS leq_max_db, min(leq_db) AS leq_min_db,
                   {laeq} AS laeq_db, count(*) AS windows
            FROM levels
            WHERE device = ids.device
              AND window_start >= greatest(b.bucket, %(start)s)
              AND window_start < least(b.bucket + %(bucket)s, %(end)s)
        ) AS a
        WHERE a.windows > 0 AND b.bucket < %(end)s
        ORDER BY 1, 2
        """
    ).format(leq=_energy_mean("leq_db"), laeq=_energy_mean("laeq_db"))
    return frame(conn, query, _range(devices, start, end, bucket))


def _level_rollup(conn: Connection, devices: Sequence[str], start: datetime, end: datetime,
                  bucket: timedelta, table: str, width: timedelta) -> pd.DataFrame:  # fmt: skip
    """`level_series` from a levels rollup table of bucket `width` (see `level_series`)."""
    query = sql.SQL(
        """
        SELECT device, date_bin(%(bucket)s, bucket, %(origin)s) AS bucket,
               10 * log10(sum(leq_energy) / nullif(sum(seconds), 0)) AS leq_db,
               max(10 * log10(leq_energy / nullif(seconds, 0))) AS leq_max_db,
               min(10 * log10(leq_energy / nullif(seconds, 0))) AS leq_min_db,
               10 * log10(sum(laeq_energy) / nullif(sum(laeq_seconds), 0)) AS laeq_db,
               sum(windows)::bigint AS windows
        FROM {table}
        WHERE device = ANY(%(devices)s)
          AND bucket >= date_bin(%(width)s, %(start)s::timestamptz, %(origin)s)
          AND bucket < %(end)s
        GROUP BY 1, 2
        HAVING sum(windows) > 0
        ORDER BY 1, 2
        """
    ).format(table=sql.Identifier(table))
    params = {**_range(devices, start, end, bucket), "width": width}
    return frame(conn, query, params)


def summary_series(
    conn: Connection,
    devices: Sequence[str],
    start: datetime,
    end: datetime,
    bucket: timedelta,
    rollups: bool = True,
) -> pd.DataFrame:
    """Level summaries (LAeq, LAmax, LAmin, L10/L50/L90) downsampled to `bucket`.

    LAeq is an energetic mean, LAmax/LAmin the extremes; L10/L50/L90 are averaged, which is an
    approximation when a bucket holds more than one summary. Columns: device, bucket, laeq_db,
    lamax_db, lamin_db, l10_db, l50_db, l90_db, coverage.

    Longer than `ROLLUP_AFTER`, with a bucket of whole hours (and `rollups` true), it reads
    `summaries_hourly` (the range widened to whole hours, see `rollup_for`): LAeq is
    10 log10(sum(laeq_energy) / sum(seconds)), L10/L50/L90 and coverage sum(X_sum) /
    sum(seconds): weighted by summary duration, the same as the raw means when every
    summary has the same length.
    """
    if rollups and _source(conn, start, end, bucket, "summaries_hourly") is not None:
        rollup = """
            SELECT device, date_bin(%(bucket)s, bucket, %(origin)s) AS bucket,
                   10 * log10(sum(laeq_energy) / nullif(sum(seconds), 0)) AS laeq_db,
                   max(lamax_db) AS lamax_db, min(lamin_db) AS lamin_db,
                   sum(l10_sum) / nullif(sum(seconds), 0) AS l10_db,
                   sum(l50_sum) / nullif(sum(seconds), 0) AS l50_db,
                   sum(l90_sum) / nullif(sum(seconds), 0) AS l90_db,
                   sum(coverage_seconds) / nullif(sum(seconds), 0) AS coverage
            FROM summaries_hourly
            WHERE device = ANY(%(devices)s)
              AND bucket >= date_trunc('hour', %(start)s::timestamptz, 'UTC')
              AND bucket < %(end)s
            GROUP BY 1, 2 HAVING sum(summaries) > 0 ORDER BY 1, 2
            """
        return frame(conn, rollup, _range(devices, start, end, bucket))
    query = sql.SQL(
        """
        SELECT device, date_bin(%(bucket)s, window_start, %(origin)s) AS bucket,
               {laeq} AS laeq_db, max(lamax_db) AS lamax_db, min(lamin_db) AS lamin_db,
               avg(l10_db) AS l10_db, avg(l50_db) AS l50_db, avg(l90_db) AS l90_db,
               avg(coverage) AS coverage
        FROM level_summaries
        WHERE device = ANY(%(devices)s) AND window_start >= %(start)s AND window_start < %(end)s
        GROUP BY 1, 2 ORDER BY 1, 2
        """
    ).format(laeq=_energy_mean("laeq_db"))
    return frame(conn, query, _range(devices, start, end, bucket))


def latest_detections(
    conn: Connection,
    devices: Sequence[str],
    start: datetime,
    end: datetime,
    limit: int,
    min_score: float = 0.0,
) -> pd.DataFrame:
    """The newest detections in the range, newest first, best score first within a window.

    Columns: window_start, device, label, rating, model, rank, window_duration, sync_time.
    """
    params = {**_range(devices, start, end), "limit": limit, "min_score": min_score}
    if _packed(conn):
        # the device's minute rows newest first, each sorted on its own: the walk stops
        # once `limit` rows are found
        return frame(
            conn,
            """
            SELECT d.window_start, d.device, d.label, d.rating, d.model, d.rank,
                   d.window_duration, d.sync_time
            FROM unnest(%(devices)s::text[]) AS ids(device)
            CROSS JOIN LATERAL (
                SELECT w.* FROM (
                    SELECT DISTINCT minute FROM labels_packed
                    WHERE device = ids.device
                      AND minute >= date_trunc('minute', %(start)s::timestamptz, 'UTC')
                      AND minute < %(end)s
                    ORDER BY minute DESC
                ) m
                CROSS JOIN LATERAL (
                    SELECT * FROM detections
                    WHERE device = ids.device AND minute = m.minute
                      AND window_start >= %(start)s AND window_start < %(end)s
                      AND rating >= %(min_score)s
                    ORDER BY window_start DESC
                ) w
                LIMIT %(limit)s
            ) d
            ORDER BY d.window_start DESC, d.rating DESC, d.device, d.label
            LIMIT %(limit)s
            """,
            params,
        )
    return frame(
        conn,
        """
        SELECT d.window_start, d.device, d.label, d.rating, d.model, d.rank,
               d.window_duration, d.sync_time
        FROM unnest(%(devices)s::text[]) AS ids(device)
        CROSS JOIN LATERAL (
            SELECT * FROM detections
            WHERE device = ids.device AND window_start >= %(start)s AND window_start < %(end)s
              AND rating >= %(min_score)s
            ORDER BY window_start DESC LIMIT %(limit)s
        ) d
        ORDER BY d.window_start DESC, d.rating DESC, d.device, d.label
        LIMIT %(limit)s
        """,
        params,
    )


def top_classes(
    conn: Connection,
    devices: Sequence[str],
    start: datetime,
    end: datetime,
    limit: int,
    min_score: float = 0.0,
    rollups: bool = True,
) -> pd.DataFrame:
    """The most often detected classes in the range.

    Columns: label, detections (rows), devices (how many devices heard it), mean_rating,
    max_rating. Ordered by detections, most first.

    Longer than `ROLLUP_AFTER` and with `min_score` 0, it reads `labels_hourly` (the range
    widened to whole hours, see `rollup_for`): detections is the sum of its `windows`,
    mean_rating sum(score_sum) / sum(windows), max_rating max(score_max). The rollup holds
    no single scores, so a `min_score` above 0 reads the raw rows at any range, as does
    `rollups` false.
    """
    if rollups and min_score <= 0 and _source(conn, start, end, None, "labels_hourly") is not None:
        return frame(
            conn,
            """
            SELECT n.name AS label, sum(h.windows)::bigint AS detections,
                   count(DISTINCT h.device) AS devices,
                   (sum(h.score_sum) / sum(h.windows))::double precision AS mean_rating,
                   max(h.score_max)::double precision AS max_rating
            FROM labels_hourly h JOIN label_names n ON n.id = h.label_id
            WHERE h.device = ANY(%(devices)s)
              AND h.bucket >= date_trunc('hour', %(start)s::timestamptz, 'UTC')
              AND h.bucket < %(end)s AND h.windows > 0
            GROUP BY n.name
            ORDER BY detections DESC, mean_rating DESC, label
            LIMIT %(limit)s
            """,
            {**_range(devices, start, end), "limit": limit},
        )
    params = {**_range(devices, start, end), "limit": limit, "min_score": min_score}
    if _packed(conn):
        # minutes wholly inside the range: their label arrays as they are; the (at most
        # two) minutes at its edges through the view, window by window
        return frame(
            conn,
            """
            WITH r AS (
                SELECT p.device, u.id, ((u.s / 10000.0::float8)::real)::float8 AS rating
                FROM labels_packed p
                CROSS JOIN LATERAL unnest(p.label_ids, p.scores) AS u(id, s)
                WHERE p.device = ANY(%(devices)s) AND p.minute >= %(start)s
                  AND p.minute < %(end)s AND p.minute + interval '1 minute' <= %(end)s
                UNION ALL
                SELECT l.device, u.id, u.s::float8
                FROM labels_between(%(devices)s, %(start)s, %(end)s) l
                CROSS JOIN LATERAL unnest(l.label_ids, l.scores) AS u(id, s)
                WHERE l.minute < %(start)s OR l.minute + interval '1 minute' > %(end)s
            )
            SELECT n.name AS label, a.detections, a.devices, a.mean_rating, a.max_rating
            FROM (
                SELECT id, count(*) AS detections, count(DISTINCT device) AS devices,
                       avg(rating) AS mean_rating, max(rating) AS max_rating
                FROM r WHERE rating >= %(min_score)s GROUP BY id
            ) a JOIN label_names n ON n.id = a.id
            ORDER BY a.detections DESC, a.mean_rating DESC, label
            LIMIT %(limit)s
            """,
            params,
        )
    return frame(
        conn,
        """
        SELECT label, count(*) AS detections, count(DISTINCT device) AS devices,
               avg(rating)::double precision AS mean_rating,
               max(rating)::double precision AS max_rating
        FROM detections
        WHERE device = ANY(%(devices)s) AND window_start >= %(start)s AND window_start < %(end)s
          AND rating >= %(min_score)s
        GROUP BY label
        ORDER BY detections DESC, mean_rating DESC, label
        LIMIT %(limit)s
        """,
        params,
    )


def indices_series(
    conn: Connection,
    devices: Sequence[str],
    start: datetime,
    end: datetime,
    bucket: timedelta,
    rollups: bool = True,
) -> pd.DataFrame:
    """Acoustic indices averaged per `bucket` (events summed).

    Columns: device, bucket, then INDEX_COLUMNS. Ordered by device, then time.

    Longer than `ROLLUP_AFTER`, with a bucket of whole hours, it reads `indices_hourly` (the
    range widened to whole hours, see `rollup_for`): each mean is sum(X_sum) / sum(X_n),
    as the raw `avg` (null where no value), events sum(events_sum). With `rollups` false it
    reads the raw rows at any range.
    """
    if rollups and _source(conn, start, end, bucket, "indices_hourly") is not None:
        means = sql.SQL(", ").join(
            sql.SQL("(sum({s}) / nullif(sum({n}), 0))::double precision AS {c}").format(
                s=sql.Identifier(f"{c}_sum"), n=sql.Identifier(f"{c}_n"), c=sql.Identifier(c)
            )
            for c in INDEX_COLUMNS
            if c != "events"
        )
        rollup = sql.SQL(
            """
            SELECT device, date_bin(%(bucket)s, bucket, %(origin)s) AS bucket, {means},
                   (CASE WHEN sum(events_n) > 0 THEN sum(events_sum) END)::bigint AS events
            FROM indices_hourly
            WHERE device = ANY(%(devices)s)
              AND bucket >= date_trunc('hour', %(start)s::timestamptz, 'UTC')
              AND bucket < %(end)s
            GROUP BY 1, 2 ORDER BY 1, 2
            """
        ).format(means=means)
        return frame(conn, rollup, _range(devices, start, end, bucket))
    averages = sql.SQL(", ").join(
        sql.SQL("avg({c})::double precision AS {c}").format(c=sql.Identifier(c))
        for c in INDEX_COLUMNS
        if c != "events"
    )
    query = sql.SQL(
        """
        SELECT device, date_bin(%(bucket)s, window_start, %(origin)s) AS bucket,
               {averages}, sum(events)::bigint AS events
        FROM indices
        WHERE device = ANY(%(devices)s) AND window_start >= %(start)s AND window_start < %(end)s
        GROUP BY 1, 2 ORDER BY 1, 2
        """
    ).format(averages=averages)
    return frame(conn, query, _range(devices, start, end, bucket))


def noise_events(
    conn: Connection, devices: Sequence[str], start: datetime, end: datetime, limit: int
) -> pd.DataFrame:
    """Noise events that overlap the range, newest first.

    Columns: window_start, device, window_duration, threshold_db, laeq_db, lamax_db, classes
    (the JSON list of {label, score}).
    """
    return frame(
        conn,
        """
        SELECT window_start, device, window_duration, threshold_db, laeq_db, lamax_db, classes
        FROM noise_events
        WHERE device = ANY(%(devices)s)
          AND window_start >= %(start)s - interval '1 hour' AND window_start < %(end)s
          AND window_start + make_interval(secs => window_duration) > %(start)s
        ORDER BY window_start DESC, device
        LIMIT %(limit)s
        """,
        {**_range(devices, start, end), "limit": limit},
    )


#: `gaps.device` of the broker's own drops (it does not say whose messages): shown with every
#: selection of devices.
BROKER_DEVICE: Final = "*"


def gaps(
    conn: Connection, devices: Sequence[str], start: datetime, end: datetime, limit: int
) -> pd.DataFrame:
    """Recorded gaps (audio or results known to be lost) that overlap the range, newest first;
    the broker's drops (device `*`) with any selection.

    Columns: first_start, last_start, device, kind (the cause), node (who lost it), count,
    recorded_at. (`node` is read through to_jsonb so that a database not yet migrated by
    ingest, without the column, still shows its gaps.)
    """
    return frame(
        conn,
        """
        SELECT first_start, last_start, device, kind, to_jsonb(g) ->> 'node' AS node, count,
               recorded_at
        FROM gaps g
        WHERE (device = ANY(%(devices)s) OR device = %(broker)s)
          AND first_start < %(end)s AND last_start >= %(start)s
        ORDER BY last_start DESC, id DESC
        LIMIT %(limit)s
        """,
        {**_range(devices, start, end), "limit": limit, "broker": BROKER_DEVICE},
    )


def gaps_by_cause(
    conn: Connection, devices: Sequence[str], start: datetime, end: datetime
) -> pd.DataFrame:
    """Per device and cause, the gaps that overlap the range: how many, and the seconds of
    the range they cover (each gap clipped to the range; overlapping gaps of one device and
    cause, e.g. from two services, count once each).

    Columns: device, kind, gaps, seconds.
    """
    return frame(
        conn,
        """
        SELECT device, kind, count(*) AS gaps,
               sum(extract(epoch FROM least(last_start, %(end)s)
                                      - greatest(first_start, %(start)s)))::float8 AS seconds
        FROM gaps
        WHERE (device = ANY(%(devices)s) OR device = %(broker)s)
          AND first_start < %(end)s AND last_start >= %(start)s
        GROUP BY device, kind
        ORDER BY device, kind
        """,
        {**_range(devices, start, end), "broker": BROKER_DEVICE},
    )


def classification_coverage(
    conn: Connection, devices: Sequence[str], start: datetime, end: datetime
) -> pd.DataFrame:
    """Per device, how many measured chunks (levels rows) in the range some labels window
    covers: a chunk measured but never classified is a gap (inference down or overloaded,
    audio lost on the way), not silence.

    Columns: device, measured, classified.

    Longer than `ROLLUP_AFTER` (with migration 0006's `labelled_hourly`) it reads the hourly
    rollups, the range widened to whole hours: measured is the sum of `levels_hourly.windows`;
    classified is estimated per hour as min(measured, measured x labelled seconds / measured
    seconds), the labelled seconds of the model that labelled most (exact when label windows
    tile the measured chunks, as the inference service's do). Up to `ROLLUP_AFTER` it is
    exact: one sweep over both streams in time order, a chunk counting as classified when a
    labels window that started at or before it has not ended yet.
    """
    params = _range(devices, start, end)
    if (end - start) > ROLLUP_AFTER and _table_exists(conn, "labelled_hourly"):
        return frame(
            conn,
            """
            WITH c AS (
                SELECT device, bucket, max(seconds) AS labelled FROM labelled_hourly
                WHERE device = ANY(%(devices)s)
                  AND bucket >= date_trunc('hour', %(start)s::timestamptz, 'UTC')
                  AND bucket < %(end)s
                GROUP BY 1, 2
            )
            SELECT m.device, sum(m.windows)::bigint AS measured,
                   sum(least(m.windows, round(m.windows * coalesce(c.labelled, 0)
                                              / nullif(m.seconds, 0))))::bigint AS classified
            FROM levels_hourly m LEFT JOIN c ON c.device = m.device AND c.bucket = m.bucket
            WHERE m.device = ANY(%(devices)s)
              AND m.bucket >= date_trunc('hour', %(start)s::timestamptz, 'UTC')
              AND m.bucket < %(end)s AND m.windows > 0
            GROUP BY 1 ORDER BY 1
            """,
            params,
        )
    if _packed(conn):
        return frame(
            conn,
            """
            WITH ev AS (
                -- only the arrays needed, unpacked straight from the minute rows
                SELECT p.device, p.minute + u.off * interval '1 microsecond' AS t, 1 AS chunk,
                       NULL::timestamptz AS ends
                FROM levels_packed p CROSS JOIN LATERAL unnest(p.offsets_us) AS u(off)
                WHERE p.device = ANY(%(devices)s)
                  AND p.minute >= date_trunc('minute', %(start)s::timestamptz, 'UTC')
                  AND p.minute < %(end)s
                UNION ALL
                SELECT p.device, p.minute + u.off * interval '1 microsecond', 0,
                       p.minute + u.off * interval '1 microsecond' + u.d * interval '1 second'
                FROM labels_packed p
                CROSS JOIN LATERAL unnest(p.offsets_us, p.durations) AS u(off, d)
                WHERE p.device = ANY(%(devices)s)
                  AND p.minute >= date_trunc('minute', %(start)s::timestamptz, 'UTC')
                                  - interval '1 hour'
                  AND p.minute < %(end)s
            ), swept AS (
                SELECT device, t, chunk, max(ends) OVER (PARTITION BY device ORDER BY t, chunk
                                                         ROWS UNBOUNDED PRECEDING) AS covered
                FROM ev
            )
            SELECT device, count(*) AS measured, count(*) FILTER (WHERE covered > t) AS classified
            FROM swept WHERE chunk = 1 AND t >= %(start)s AND t < %(end)s
            GROUP BY device ORDER BY device
            """,
            params,
        )
    return frame(
        conn,
        """
        SELECT l.device, count(*) AS measured,
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM detections d
                   WHERE d.device = l.device
                     AND d.window_start <= l.window_start
                     AND d.window_start > l.window_start - interval '1 hour'
                     AND d.window_start + make_interval(secs => d.window_duration)
                         > l.window_start
               )) AS classified
        FROM levels l
        WHERE l.device = ANY(%(devices)s)
          AND l.window_start >= %(start)s AND l.window_start < %(end)s
        GROUP BY l.device
        ORDER BY l.device
        """,
        params,
    )


def _range(
    devices: Sequence[str], start: datetime, end: datetime, bucket: timedelta | None = None
) -> dict[str, Any]:
    if end <= start:
        raise ValueError("the end of the time range must be after its start")
    params: dict[str, Any] = {"devices": list(devices), "start": start, "end": end}
    if bucket is not None:
        if bucket <= timedelta(0):
            raise ValueError("bucket width must be positive")
        params.update(bucket=bucket, origin=BUCKET_ORIGIN)
    return params
