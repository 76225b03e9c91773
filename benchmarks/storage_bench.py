"""Storage for a year: bytes per device-day and dashboard query times, compact vs old schema.

    .venv/bin/python -m benchmarks.storage_bench [--devices 4] [--days 3] [--old-days 1]

(issue 11 asks for `--devices 20 --days 30`: hours of seeding on a small machine.)

Starts a throwaway PostgreSQL cluster (`services.localservers.start_postgres`) and in it
two databases, both built by ingest's own migrations (`services.ingest.db.migrations`):

- **compact** (every migration, 0006 included): `--devices` devices for `--days` days at the
  real cadence, written with COPY straight into the packed tables, one row per device-minute
  as ingest stores them: `levels_packed` (60 windows a row, all 41 bands as smallint
  centi-dB, drawn from 256 random spectra used in turn, so consecutive windows differ: no
  help for the compression) and `labels_packed` (60 top-5 windows with the default model
  id), plus one `level_summaries` row and one `indices` row a minute (the levels service's
  default intervals). No noise events or gaps are seeded. Day partitions are made first
  with `soundscape_ensure_partitions`, as ingest does. The rollups (`levels_minute`,
  `levels_hourly`, `labels_hourly`, `summaries_hourly`, `indices_hourly`,
  `labelled_hourly`) are then filled by `soundscape_recompute_rollups()`, migration 0006's
  recomputation over the seeded rows, which tests/ingest/test_storage.py finds equal to what
  ingest's incremental upserts store (ingest's own insert path, staging one row per label,
  was not used: it would make the seeding several times slower);
- **old** (migrations up to 0004: one `detections` row per label with its three indexes,
  `levels.bands` as jsonb): the same devices and rows for `--old-days` days (default 1).
  Its size is scaled per device-day; its query times are for what was seeded, so its week
  and month ranges read only `--old-days` of data (the output says so).

It prints the machine's load average, the load time (COPY, rollups, VACUUM ANALYZE),
bytes per device-day (`pg_total_relation_size` summed over each table's partitions, split
into heap, TOAST and indexes) of the raw tables and of the rollups, the average stored size
of each column of a packed row (`pg_column_size`, after compression), whether a year of
one sensor fits on a 64 GB card with the default retention
(keep everything), and the time of every public query of `services.dashboard.queries` for the
last hour, day, week and month with 1 device and with all of them, in the compact database
both as the page calls them (rollups beyond 6 h) and, for the four that take `rollups`,
reading raw rows ("compact, raw rows": before rollups). Times are wall-clock
medians of `--repeat` runs after one warm-up run (a query whose warm-up took over 2 s is
shown with that one run); a query over `--timeout` s is cancelled and shown as such.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from services.dashboard import core, queries
from services.ingest.db import migrations
from services.ingest.schema import BAND_ORDER, ROLLUP_TABLES
from services.localservers import start_postgres

#: The inference service's default model id (stored in every labels / detections row).
MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"
#: Labels drawn for the top-5 (AudioSet display names).
LABELS = (
    "Speech", "Car", "Bird", "Wind", "Vehicle", "Traffic noise, roadway noise", "Music",
    "Dog", "Rain", "Silence", "Bus", "Truck", "Engine", "Footsteps", "Bicycle", "Siren",
    "Chirp, tweet", "Outside, urban or manmade", "Inside, small room", "Wind noise (microphone)",
)  # fmt: skip
#: Levels service defaults: one summary and one indices window a minute.
SUMMARY_SECONDS = 60
INDICES_SECONDS = 60
#: Raw tables (what retention would drop) and rollups, per schema.
RAW_NEW = ("levels_packed", "labels_packed", "level_summaries", "indices")
RAW_OLD = ("levels", "detections", "level_summaries", "indices")
#: Dashboard presets and the bench's month.
RANGES = (
    ("hour", timedelta(hours=1)),
    ("day", timedelta(days=1)),
    ("week", timedelta(weeks=1)),
    ("month", timedelta(days=30)),
)
CARD_BYTES = 64e9
#: A query slower than this (s) in its warm-up run is not repeated: its one time is shown.
SLOW = 2.0
SYNC_ID = uuid.uuid4()


@dataclass(frozen=True, slots=True)
class Seeded:
    """What was seeded in one database and how long it took."""

    devices: int
    days: float
    copy_s: float
    rollup_s: float
    vacuum_s: float


def _ts(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def _band_pool(rng: random.Random, jsonb: bool) -> list[str]:
    """A few hundred distinct band spectra as COPY text (real[] or jsonb), reused in turn."""
    pool = []
    for _ in range(256):
        values = [round(rng.uniform(10, 70), 2) for _ in BAND_ORDER]
        if jsonb:
            pool.append(
                "{" + ", ".join(f'"{n}": {v}' for n, v in zip(BAND_ORDER, values, strict=True))
                + "}"
            )  # fmt: skip
        else:
            pool.append("{" + ",".join(str(v) for v in values) + "}")
    return pool


def _levels_lines(device: str, start: int, seconds: int, old: bool) -> Iterator[str]:
    rng = random.Random(f"{device}{start}")
    bands = _band_pool(rng, jsonb=old)
    sync_time = _ts(start + seconds)
    for i in range(seconds):
        t = start + i
        leq = 55 + 10 * math.sin(t / 3600) + rng.uniform(-3, 3)
        yield (
            f"{device}\t{_ts(t)}\t{t}\t1\t{leq:.2f}\t{leq - 4:.2f}\t{leq + 2:.2f}\t{leq + 15:.2f}"
            f"\t{leq - 120:.2f}\t{bands[i % len(bands)]}\tf\t0\t-38\t3.3\tf\t{SYNC_ID}"
            f"\t{sync_time}\n"
        )


def _labels_lines(
    device: str, start: int, seconds: int, old: bool, ids: dict[str, int]
) -> Iterator[str]:
    rng = random.Random(f"L{device}{start}")
    sync_time = _ts(start + seconds)
    for i in range(seconds):
        t = start + i
        top = rng.sample(LABELS, 5)
        scores = sorted((round(rng.random(), 4) for _ in range(5)), reverse=True)
        speech = "t" if "Speech" in top else "f"
        ms = round(rng.uniform(80, 200), 1)
        if old:
            for rank, (label, score) in enumerate(zip(top, scores, strict=True), 1):
                yield (
                    f"{label}\t{score}\t{device}\t{SYNC_ID}\t{sync_time}\t{_ts(t)}\t{t}\t1"
                    f"\t{MODEL}\t{rank}\t{speech}\t{ms}\n"
                )
        else:
            label_ids = ",".join(str(ids[label]) for label in top)
            yield (
                f"{device}\t{_ts(t)}\t{t}\t1\t{MODEL}\t{{{label_ids}}}"
                f"\t{{{','.join(map(str, scores))}}}\t{speech}\t{ms}\t{SYNC_ID}\t{sync_time}\n"
            )


def _centi_pool(rng: random.Random) -> list[str]:
    """A few hundred distinct band spectra as smallint centi-dB COPY text, reused in turn."""
    return [
        "{" + ",".join(str(round(rng.uniform(10, 70) * 100)) for _ in BAND_ORDER) + "}"
        for _ in range(256)
    ]


def _arr(values: Iterator[str] | list[str]) -> str:
    return "{" + ",".join(values) + "}"


def _packed_levels_lines(device: str, start: int, seconds: int) -> Iterator[str]:
    """levels_packed rows (one a minute) of the same windows as `_levels_lines`."""
    rng = random.Random(f"{device}{start}")
    bands = _centi_pool(rng)
    sync_time = f'"{_ts(start + seconds)}"'
    for m in range(start, start + seconds, 60):
        ts = range(m, min(m + 60, start + seconds))
        n = len(ts)
        leq = [55 + 10 * math.sin(t / 3600) + rng.uniform(-3, 3) for t in ts]
        ones = _arr(["1"] * n)
        yield (
            "\t".join(
                (
                    device,
                    _ts(m),
                    _arr([str((t - m) * 1_000_000) for t in ts]),
                    _arr([str(t) for t in ts]),
                    ones,
                    _arr([f"{v:.2f}" for v in leq]),
                    _arr([f"{v - 4:.2f}" for v in leq]),
                    _arr([f"{v + 2:.2f}" for v in leq]),
                    _arr([f"{v + 15:.2f}" for v in leq]),
                    _arr([f"{v - 120:.2f}" for v in leq]),
                    _arr([bands[t % len(bands)] for t in ts]),
                    _arr(["f"] * n),
                    _arr(["0"] * n),
                    _arr(["-38"] * n),
                    _arr(["3.3"] * n),
                    _arr(["f"] * n),
                    _arr([str(SYNC_ID)] * n),
                    _arr([sync_time] * n),
                )
            )
            + "\n"
        )


def _packed_labels_lines(
    device: str, start: int, seconds: int, ids: dict[str, int]
) -> Iterator[str]:
    """labels_packed rows (one a minute) of top-5 windows, as `_labels_lines` draws them."""
    rng = random.Random(f"L{device}{start}")
    sync_time = f'"{_ts(start + seconds)}"'
    for m in range(start, start + seconds, 60):
        ts = range(m, min(m + 60, start + seconds))
        n = len(ts)
        tops = [rng.sample(LABELS, 5) for _ in ts]
        scores = [sorted((rng.randrange(10000) for _ in range(5)), reverse=True) for _ in ts]
        yield (
            "\t".join(
                (
                    device,
                    _ts(m),
                    MODEL,
                    _arr([str((t - m) * 1_000_000) for t in ts]),
                    _arr([str(t) for t in ts]),
                    _arr(["1"] * n),
                    _arr([str(5 * (k + 1)) for k in range(n)]),
                    _arr([str(ids[label]) for top in tops for label in top]),
                    _arr([str(v) for sc in scores for v in sc]),
                    _arr(["t" if "Speech" in top else "f" for top in tops]),
                    _arr([f"{rng.uniform(80, 200):.1f}" for _ in ts]),
                    _arr([str(SYNC_ID)] * n),
                    _arr([sync_time] * n),
                )
            )
            + "\n"
        )


def _summary_lines(device: str, start: int, seconds: int) -> Iterator[str]:
    rng = random.Random(f"S{device}{start}")
    sync_time = _ts(start + seconds)
    for t in range(start, start + seconds, SUMMARY_SECONDS):
        laeq = 50 + 10 * math.sin(t / 3600) + rng.uniform(-2, 2)
        yield (
            f"{device}\t{_ts(t)}\t{t}\t{SUMMARY_SECONDS}\t{laeq:.2f}\t{laeq + 12:.2f}"
            f"\t{laeq - 10:.2f}\t{laeq + 4:.2f}\t{laeq - 2:.2f}\t{laeq - 7:.2f}\t1\tf"
            f"\t{SYNC_ID}\t{sync_time}\n"
        )


def _indices_lines(device: str, start: int, seconds: int) -> Iterator[str]:
    rng = random.Random(f"I{device}{start}")
    sync_time = _ts(start + seconds)
    for t in range(start, start + seconds, INDICES_SECONDS):
        v = [round(rng.random(), 4) for _ in range(7)]
        yield (
            f"{device}\t{_ts(t)}\t{t}\t{INDICES_SECONDS}\t{v[0] * 1000}\t{v[1] * 3}\t{v[2]}"
            f"\t{v[3] * 10}\t{v[4] * 2 - 1}\t{v[5]}\t{v[6]}\t{rng.randint(0, 20)}\t1"
            f"\t{SYNC_ID}\t{sync_time}\n"
        )


LEVELS_COLS = (
    "device, window_start, window_seq, window_duration, leq_db, laeq_db, lceq_db, peak_db, "
    "dbfs, bands, clipped, gain_db, sensitivity_dbv, vadc, uncalibrated, sync_id, sync_time"
)
LABELS_COLS = (
    "device, window_start, window_seq, window_duration, model, label_ids, scores, "
    "speech_present, inference_ms, sync_id, sync_time"
)
PACKED_LEVELS_COLS = (
    "device, minute, offsets_us, seqs, durations, leq_db, laeq_db, lceq_db, peak_db, dbfs, "
    "bands, clipped, gain_db, sensitivity_dbv, vadc, uncalibrated, sync_ids, sync_times"
)
PACKED_LABELS_COLS = (
    "device, minute, model, offsets_us, seqs, durations, ends, label_ids, scores, "
    "speech_present, inference_ms, sync_ids, sync_times"
)
DETECTIONS_COLS = (
    "label, rating, device, sync_id, sync_time, window_start, window_seq, window_duration, "
    "model, rank, speech_present, inference_ms"
)
SUMMARY_COLS = (
    "device, window_start, window_seq, window_duration, laeq_db, lamax_db, lamin_db, l10_db, "
    "l50_db, l90_db, coverage, uncalibrated, sync_id, sync_time"
)
INDICES_COLS = (
    "device, window_start, window_seq, window_duration, aci, adi, aei, bi, ndsi, ht, hf, "
    "events, coverage, sync_id, sync_time"
)


def _copy(conn: psycopg.Connection[Any], table: str, cols: str, lines: Iterator[str]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= 5000:
                copy.write("".join(chunk))
                chunk.clear()
        if chunk:
            copy.write("".join(chunk))


def _migrate(conn: psycopg.Connection[Any], upto: int | None) -> None:
    """Apply ingest's migrations (those up to `upto`), recorded as ingest records them."""
    conn.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for mig in migrations():
        if upto is not None and mig.version > upto:
            break
        conn.execute(mig.sql.encode())
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
            (mig.version, mig.name),
        )


def _seed(dsn: str, devices: Sequence[str], days: float, end: int, old: bool) -> Seeded:
    seconds = int(days * 86400)
    start = end - seconds
    with psycopg.connect(dsn, autocommit=True) as conn:
        _migrate(conn, 4 if old else None)
        ids: dict[str, int] = {}
        if not old:
            conn.execute(
                "SELECT soundscape_ensure_partitions(ARRAY(SELECT (d AT TIME ZONE 'UTC')::date "
                "FROM generate_series(to_timestamp(%s), to_timestamp(%s), interval '1 day') "
                "AS d))",
                (start, end + 86400),
            )
            conn.execute(
                "INSERT INTO label_names (name) SELECT unnest(%s::text[])", (list(LABELS),)
            )
            ids = dict(conn.execute("SELECT name, id FROM label_names").fetchall())
        t0 = time.perf_counter()
        for device in devices:
            # a day at a time, each its own transaction (as ingest's batches are)
            for day_start in range(start, end, 86400):
                n = min(86400, end - day_start)
                with conn.transaction():
                    if old:
                        _copy(conn, "levels", LEVELS_COLS, _levels_lines(device, day_start, n, old))
                        _copy(
                            conn,
                            "detections",
                            DETECTIONS_COLS,
                            _labels_lines(device, day_start, n, old, ids),
                        )
                    else:
                        _copy(
                            conn,
                            "levels_packed",
                            PACKED_LEVELS_COLS,
                            _packed_levels_lines(device, day_start, n),
                        )
                        _copy(
                            conn,
                            "labels_packed",
                            PACKED_LABELS_COLS,
                            _packed_labels_lines(device, day_start, n, ids),
                        )
                    _copy(
                        conn, "level_summaries", SUMMARY_COLS, _summary_lines(device, day_start, n)
                    )
                    _copy(conn, "indices", INDICES_COLS, _indices_lines(device, day_start, n))
        copy_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if not old:
            conn.execute("SELECT soundscape_recompute_rollups()")
        rollup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        vacuum_s = time.perf_counter() - t0
    return Seeded(len(devices), days, copy_s, rollup_s, vacuum_s)


def _sizes(dsn: str, tables: Sequence[str]) -> dict[str, int]:
    """pg_total_relation_size (heap, indexes, TOAST) of each table, summed over partitions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            t: int(
                conn.execute(
                    # pg_partition_tree is empty for a table that is not partitioned
                    "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) "
                    "FROM pg_partition_tree(%(t)s::regclass)), "
                    "pg_total_relation_size(%(t)s::regclass))",
                    {"t": t},
                ).fetchone()[0]  # type: ignore[index]
            )
            for t in tables
        }


def _breakdown(dsn: str, tables: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """(heap, TOAST, indexes) bytes of each table, summed over its partitions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        out = {}
        for t in tables:
            row = conn.execute(
                "SELECT coalesce(sum(pg_relation_size(c.oid)), 0), "
                "coalesce(sum(pg_total_relation_size(nullif(c.reltoastrelid, 0))), 0), "
                "coalesce(sum(pg_indexes_size(c.oid)), 0) "
                # a plain table is its own one-row tree
                "FROM (SELECT relid FROM pg_partition_tree(%(t)s::regclass) UNION "
                "SELECT %(t)s::regclass) p JOIN pg_class c ON c.oid = p.relid",
                {"t": t},
            ).fetchone()
            assert row is not None
            out[t] = (int(row[0]), int(row[1]), int(row[2]))
        return out


def _per_row(dsn: str) -> str:
    """Average stored bytes of one packed minute row's columns (pg_column_size, i.e. after
    compression), for the docs' "where the bytes go"."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        parts = []
        for table, cols in (
            ("levels_packed", PACKED_LEVELS_COLS),
            ("labels_packed", PACKED_LABELS_COLS),
        ):
            names = [c.strip() for c in cols.split(",")]
            avgs = ", ".join(f"avg(pg_column_size({c}))" for c in names)
            row = conn.execute(
                f"SELECT {avgs}, avg(pg_column_size(t.*)) FROM (SELECT * FROM {table} LIMIT 2000) t"
            ).fetchone()
            assert row is not None
            cells = ", ".join(f"{n} {float(v):.0f}" for n, v in zip(names, row, strict=False))
            parts.append(f"  {table}: row {float(row[-1]):.0f} B: {cells}")
        return "\n".join(parts)


def _queries(
    conn: psycopg.Connection[Any],
    devices: list[str],
    start: datetime,
    end: datetime,
    rollups: bool = True,
) -> list[tuple[str, Callable[[], Any]]]:
    """Every public query of services.dashboard.queries, called as the page calls them
    (with `rollups` false, only those that take it, reading raw rows)."""
    bucket = core.bucket_for(end - start, 1500)
    if not rollups:
        return [
            (
                "level_series",
                lambda: queries.level_series(conn, devices, start, end, bucket, rollups=False),
            ),
            (
                "summary_series",
                lambda: queries.summary_series(conn, devices, start, end, bucket, rollups=False),
            ),
            (
                "top_classes",
                lambda: queries.top_classes(conn, devices, start, end, 15, rollups=False),
            ),
            (
                "indices_series",
                lambda: queries.indices_series(conn, devices, start, end, bucket, rollups=False),
            ),
        ]
    return [
        ("device_ids", lambda: queries.device_ids(conn)),
        ("device_overview", lambda: queries.device_overview(conn, devices)),
        ("level_series", lambda: queries.level_series(conn, devices, start, end, bucket)),
        ("summary_series", lambda: queries.summary_series(conn, devices, start, end, bucket)),
        (
            "latest_detections",
            lambda: queries.latest_detections(conn, devices, start, end, 200),
        ),
        ("top_classes", lambda: queries.top_classes(conn, devices, start, end, 15)),
        ("indices_series", lambda: queries.indices_series(conn, devices, start, end, bucket)),
        ("noise_events", lambda: queries.noise_events(conn, devices, start, end, 200)),
        ("gaps", lambda: queries.gaps(conn, devices, start, end, 200)),
        ("gaps_by_cause", lambda: queries.gaps_by_cause(conn, devices, start, end)),
        (
            "classification_coverage",
            lambda: queries.classification_coverage(conn, devices, start, end),
        ),
    ]


def _time(conn: psycopg.Connection[Any], fn: Callable[[], Any], repeat: int) -> str:
    """Median seconds of `repeat` runs after a warm-up, or why there is no figure."""
    try:
        t0 = time.perf_counter()
        fn()
        warm = time.perf_counter() - t0
        if warm > SLOW:
            return f"{warm:.3f} (1 run)"
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
    except psycopg.errors.QueryCanceled:
        return "timeout"
    except psycopg.errors.UndefinedTable:
        # a query of a newer dashboard reading a table the old schema lacks
        return "n/a (no table)"
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
    return f"{statistics.median(runs):.3f}"


def _time_all(
    dsn: str, devices: list[str], end: datetime, repeat: int, timeout: float, rollups: bool = True
) -> dict[tuple[str, str, int], str]:
    """{(query, range, device count): median seconds} for 1 device and for all."""
    out: dict[tuple[str, str, int], str] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
        for label, span in RANGES:
            for group in sorted({1, len(devices)}):
                for name, fn in _queries(conn, devices[:group], end - span, end, rollups):
                    out[(name, label, group)] = _time(conn, fn, repeat)
    return out


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4, help="devices seeded")
    parser.add_argument("--days", type=float, default=3.0, help="days seeded (compact schema)")
    parser.add_argument("--old-days", type=float, default=1.0, help="days seeded (old schema)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per query")
    parser.add_argument("--timeout", type=float, default=20.0, help="statement timeout, s")
    parser.add_argument("--skip-old", action="store_true", help="do not seed the old schema")
    args = parser.parse_args(argv)

    devices = [f"dev{i:02d}" for i in range(args.devices)]
    end_dt = datetime.now(UTC).replace(microsecond=0)
    end = int(end_dt.timestamp())
    # a SIGTERM (e.g. from `timeout`) still stops the cluster and removes it (finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="storage_bench_"))
    pg = start_postgres(workdir)
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as admin:
            admin.execute("CREATE DATABASE compact")
            admin.execute("CREATE DATABASE old")
        base = pg.dsn.rsplit("/", 1)[0]
        schemas: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
            ("compact (0001-0006)", f"{base}/compact", RAW_NEW, ROLLUP_TABLES)
        ]
        if not args.skip_old:
            schemas.append(("old (0001-0004)", f"{base}/old", RAW_OLD, ()))
        print(_load())
        print(
            f"throwaway PostgreSQL {pg.port}; {args.devices} device(s); compact schema "
            f"{args.days:g} days, old schema {args.old_days:g} days; seeded up to {end_dt}\n"
        )
        per_day: dict[str, tuple[float, float]] = {}
        timings: dict[str, dict[tuple[str, str, int], str]] = {}
        for title, dsn, raw, rollups in schemas:
            days = args.old_days if title.startswith("old") else args.days
            seeded = _seed(dsn, devices, days, end, old=title.startswith("old"))
            device_days = seeded.devices * seeded.days
            rows = int(device_days * 86400)
            print(
                f"{title}: loaded {rows:,} levels and {rows:,} labels windows "
                f"({device_days:g} device-days) - COPY {seeded.copy_s:.1f} s, rollups "
                f"{seeded.rollup_s:.1f} s, VACUUM ANALYZE {seeded.vacuum_s:.1f} s"
            )
            sizes = _sizes(dsn, (*raw, *rollups))
            parts = _breakdown(dsn, (*raw, *rollups))
            for t, n in sizes.items():
                heap, toast, index = (_mb(x / device_days) for x in parts[t])
                print(
                    f"  {t:<18} {_mb(n):>12}  {_mb(n / device_days):>10} per device-day "
                    f"(heap {heap}, TOAST {toast}, indexes {index})"
                )
            if not title.startswith("old"):
                print(_per_row(dsn))
            raw_b = sum(sizes[t] for t in raw) / device_days
            roll_b = sum(sizes[t] for t in rollups) / device_days
            per_day[title] = (raw_b, roll_b)
            print(f"  raw {_mb(raw_b)} + rollups {_mb(roll_b)} per device-day\n")
            print(f"  {_load()}")
            timings[title] = _time_all(dsn, devices, end_dt, args.repeat, args.timeout)
            if not title.startswith("old"):
                timings["compact, raw rows"] = _time_all(
                    dsn, devices, end_dt, args.repeat, args.timeout, rollups=False
                )
            print(f"  queries timed; {_load()}", flush=True)

        print("A year of one sensor with the default retention (keep everything, 0 days):")
        for title, (raw_b, roll_b) in per_day.items():
            year = 365 * (raw_b + roll_b)
            scaled = " (scaled from the seeded days)" if title.startswith("old") else ""
            verdict = "fits" if year < CARD_BYTES else "does NOT fit"
            print(
                f"  {title}: {year / 1e9:,.1f} GB{scaled}: {verdict} on a 64 GB card "
                f"({100 * year / CARD_BYTES:.0f} % of it)"
            )
        if len(per_day) == 2:
            new, old = (sum(v) for v in per_day.values())
            print(f"  the compact schema is {old / new:.1f} times smaller per device-day")
            month = old * 30 * args.devices
            print(f"  old schema, {args.devices} devices x 30 days (scaled): {month / 1e9:,.1f} GB")

        titles = list(timings)
        n = len(devices)
        print(
            f"\nDashboard queries, median s of {args.repeat} after a warm-up "
            f"(timeout {args.timeout:g} s); ranges end at {end_dt}"
        )
        if not args.skip_old:
            print(
                f"(old schema holds only {args.old_days:g} day(s): its week and month read "
                "that much data)"
            )
        head = f"{'query':<24} {'range':<6} {'devices':>7}"
        print(head + "".join(f" {t:>22}" for t in titles))
        for label, _ in RANGES:
            for group in sorted({1, n}):
                for name in dict.fromkeys(k[0] for k in timings[titles[0]]):
                    cells = "".join(
                        f" {timings[t].get((name, label, group), '-'):>22}" for t in titles
                    )
                    print(f"{name:<24} {label:<6} {group:>7}{cells}")
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
