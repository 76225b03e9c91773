"""How fast the dashboard's queries are on a month of 1-second levels.

    .venv/bin/python -m benchmarks.dashboard_bench [--days 30] [--devices 1] [--keep]

Creates a throwaway database (on `SOUNDSCAPE_BENCH_PG`, default the local PostgreSQL),
applies ingest's migrations, fills `levels` with one row per second per device and
`labels` with five labels per second (the `detections` view) for the last `--detection-days`,
computes their rollups (`levels_minute`, `levels_hourly`, `labels_hourly`, as ingest
maintains them), runs ANALYZE, then times each dashboard query next to its baseline measured
in the same run:

- level series as the page reads them (the rollups for a range over 6 h), vs the raw rows
  downsampled in SQL with one range scan per date_bin bucket, vs one GROUP BY date_bin(...)
  over the range, and vs fetching every 1-second row into pandas (what a naive page would do);
- device ids by loose index scan (the page) vs SELECT DISTINCT;
- the overview, latest detections and top classes as the page runs them (top classes from
  `labels_hourly` and from the raw rows).

Figures are wall-clock medians of `--repeat` runs on a warm cache.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pandas as pd
import psycopg

from services.dashboard import core, queries
from services.ingest.db import migrate

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _fill(dsn: str, devices: list[str], days: float, detection_days: float, end: datetime) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        # day partitions for the seeded range, as ingest makes them for its batches
        conn.execute(
            "SELECT soundscape_ensure_partitions(ARRAY(SELECT (d AT TIME ZONE 'UTC')::date "
            "FROM generate_series(%(end)s - make_interval(days => %(n)s), %(end)s, "
            "interval '1 day') AS d))",
            {"end": end, "n": int(days) + 1},
        )
        conn.execute(
            "INSERT INTO label_names (name) SELECT unnest("
            "ARRAY['Speech','Car','Bird','Wind','Hum','Music','Dog']) ON CONFLICT DO NOTHING"
        )
        for device in devices:
            conn.execute(
                """
                INSERT INTO levels (device, window_start, window_seq, window_duration, leq_db,
                                    laeq_db, uncalibrated, sync_id, sync_time)
                SELECT %(d)s, %(end)s - make_interval(secs => i), i, 1,
                       55 + 10 * sin(i / 3600.0), 50 + 10 * sin(i / 3600.0), false,
                       %(sync)s, %(end)s
                FROM generate_series(1, %(n)s) AS i
                """,
                {"d": device, "end": end, "n": int(days * 86400), "sync": uuid.uuid4()},
            )
            # five labels a window, as ingest stores them (one labels row, the detections
            # view shows five rows)
            conn.execute(
                """
                INSERT INTO labels (device, window_start, window_seq, window_duration, model,
                                    label_ids, scores, sync_id, sync_time)
                SELECT %(d)s, %(end)s - make_interval(secs => i), i, 1, 'ast',
                       ARRAY(SELECT n.id FROM generate_series(0, 4) AS r
                             JOIN label_names n ON n.name = (ARRAY['Speech','Car','Bird','Wind',
                                 'Hum','Music','Dog'])[1 + (i + r) %% 7] ORDER BY r),
                       ARRAY(SELECT (1.0 / (r + 1))::real FROM generate_series(0, 4) AS r),
                       %(sync)s, %(end)s
                FROM generate_series(1, %(n)s) AS i
                """,
                {"d": device, "end": end, "n": int(detection_days * 86400), "sync": uuid.uuid4()},
            )
        # the rollups ingest maintains as batches land (rows inserted directly are not rolled
        # up; rows inserted into the levels / labels views are appended to their minute rows
        # one at a time by a trigger: slow, about 1 ms a row): the one recomputation
        conn.execute("SELECT soundscape_recompute_rollups()")
        for table in (
            "levels_packed",
            "labels_packed",
            "levels_minute",
            "levels_hourly",
            "labels_hourly",
        ):
            conn.execute(f"VACUUM ANALYZE {table}")


def _time(fn: Callable[[], Any], repeat: int) -> tuple[float, int]:
    fn()  # warm the cache
    runs = []
    result: Any = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), len(result)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # unwinds, so the `finally` blocks drop the throwaway database


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0, help="days of 1 s levels per device")
    parser.add_argument("--devices", type=int, default=1, help="number of devices")
    parser.add_argument(
        "--detection-days", type=float, default=3.0, help="days of detections per device"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per query")
    parser.add_argument("--pg", default=DEFAULT_PG, help="admin DSN (SOUNDSCAPE_BENCH_PG)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--pages",
        action="store_true",
        help="instead: every page in Chromium with --devices (default 20) and --days of "
        "rollups (benchmarks/dashboard_pages.py)",
    )
    parser.add_argument(
        "--baseline-root", help="--pages: also time the dashboard of this other checkout"
    )
    parser.add_argument(
        "--before-root",
        help="--pages: time these pages of another checkout too (e.g. before a change), "
        "row by row beside this one's, same measurement",
    )
    args = parser.parse_args(argv)
    if args.pages:
        from benchmarks import dashboard_pages

        devices = args.devices if args.devices != 1 else 20
        return dashboard_pages.run(
            args.pg, devices, args.days, args.baseline_root, args.before_root
        )

    name = f"bench_dashboard_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = args.pg.rsplit("/", 1)[0] + "/" + name
    devices = [f"dev{i:02d}" for i in range(args.devices)]
    end = datetime.now(UTC).replace(microsecond=0)
    try:
        t0 = time.perf_counter()
        _fill(dsn, devices, args.days, args.detection_days, end)
        print(
            f"filled {args.devices} device(s) x {args.days:g} days of 1 s levels "
            f"({int(args.devices * args.days * 86400):,} rows) and {args.detection_days:g} days "
            f"of detections ({int(args.devices * args.detection_days * 86400 * 5):,} rows) "
            f"in {time.perf_counter() - t0:.1f} s\n"
        )
        rows: list[tuple[str, str, float, int]] = []
        with psycopg.connect(dsn, autocommit=True) as conn:

            def raw(start: datetime) -> pd.DataFrame:
                cur = conn.execute(
                    "SELECT device, window_start, leq_db, laeq_db FROM levels "
                    "WHERE device = ANY(%s) AND window_start >= %s AND window_start < %s",
                    (devices, start, end),
                )
                return pd.DataFrame.from_records(cur.fetchall())

            def group_by(start: datetime, bucket: timedelta) -> list[Any]:
                cur = conn.execute(
                    "SELECT device, date_bin(%(b)s, window_start, %(o)s), "
                    "10 * log10(avg(power(10::double precision, leq_db / 10))), max(leq_db), "
                    "min(leq_db), 10 * log10(avg(power(10::double precision, laeq_db / 10))), "
                    "count(*) FROM levels WHERE device = ANY(%(d)s) AND window_start >= %(s)s "
                    "AND window_start < %(e)s GROUP BY 1, 2 ORDER BY 1, 2",
                    {"b": bucket, "o": core.BUCKET_ORIGIN, "d": devices, "s": start, "e": end},
                )
                return cur.fetchall()

            for label, span in (
                ("day", timedelta(days=1)),
                ("week", timedelta(weeks=1)),
                (f"{args.days:g} days", timedelta(days=args.days)),
            ):
                start = end - span
                bucket = core.chart_bucket(span, 1500)
                page = _time(
                    partial(queries.level_series, conn, devices, start, end, bucket), args.repeat
                )
                scans = _time(
                    partial(queries.level_series, conn, devices, start, end, bucket, False),
                    args.repeat,
                )
                grouped = _time(partial(group_by, start, bucket), args.repeat)
                naive = _time(partial(raw, start), args.repeat)
                source = queries.rollup_for(span, bucket, "levels_hourly", "levels_minute")
                rows.append((f"levels, {label} ({core.describe_bucket(bucket)} buckets)",
                             f"page: {source[0] if source else 'raw rows'}", *page))  # fmt: skip
                rows.append(("", "raw: per-bucket range scans", *scans))
                rows.append(("", "baseline: GROUP BY date_bin", *grouped))
                rows.append(("", "baseline: fetch every row", *naive))
            rows.append(
                ("device ids", "loose index scan", *_time(lambda: queries.device_ids(conn), 3))
            )
            rows.append(
                (
                    "",
                    "baseline: SELECT DISTINCT",
                    *_time(
                        lambda: conn.execute("SELECT DISTINCT device FROM levels").fetchall(), 3
                    ),
                )
            )
            rows.append(
                (
                    "device overview",
                    "LATERAL newest row",
                    *_time(lambda: queries.device_overview(conn, devices), args.repeat),
                )
            )
            day = end - timedelta(days=1)
            rows.append(
                (
                    "latest detections, day",
                    "LATERAL per device",
                    *_time(
                        lambda: queries.latest_detections(conn, devices, day, end, 200),
                        args.repeat,
                    ),
                )
            )
            for label, since in (("day", day), ("week", end - timedelta(weeks=1))):
                rows.append(
                    (
                        f"top classes, {label}",
                        "page: labels_hourly",
                        *_time(partial(queries.top_classes, conn, devices, since, end, 15),
                               args.repeat),
                    )
                )  # fmt: skip
                rows.append(
                    (
                        "",
                        "raw: GROUP BY label",
                        *_time(
                            partial(
                                queries.top_classes, conn, devices, since, end, 15, rollups=False
                            ),
                            args.repeat,
                        ),
                    )
                )
        width = max(len(r[0]) for r in rows)
        print(f"{'query':<{width}}  {'method':<26} {'median s':>9} {'rows':>10}")
        for what, method, seconds, count in rows:
            print(f"{what:<{width}}  {method:<26} {seconds:>9.3f} {count:>10,}")
    finally:
        if not args.keep:
            with psycopg.connect(args.pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"\nkept database {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
