"""Rows per second from the ingest spool into PostgreSQL, next to a row-by-row INSERT baseline.

    .venv/bin/python -m benchmarks.ingest_bench [--windows 20000] [--batch-size 10000]
                                                [--dsn postgresql://postgres@127.0.0.1/postgres]

Each window is one labels result (top-5: five label rows, staged apart and stored as one
`labels` row) and one levels result (one `levels` row), so `--windows 20000` is 40,000
results and 120,000 rows. In a throwaway
database (created on the server `--dsn` points at, or SOUNDSCAPE_BENCH_DATABASE_URL, then
dropped) it measures, in the same run:

- spool write: results/s committed into the SQLite spool (`Spool.put`, 1,000 per commit,
  synchronous=FULL), what ingest does before acknowledging;
- COPY sync: rows/s of `Syncer.sync()`: read the spool, COPY into staging tables, `INSERT ...
  SELECT ... ON CONFLICT DO NOTHING`, the `syncs` row, delete from the spool, `--batch-size`
  results per transaction (ingest's real path; the goal is >= 50,000 rows/s);
- replay: the same results synced again (every row a conflict, nothing stored twice);
- row-by-row INSERT baseline: the same rows into empty tables, one `INSERT ... ON CONFLICT DO
  NOTHING` statement per row, committed per `--batch-size` results (what a naive sync does).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from services.ingest import db
from services.ingest.core import Result, Triage
from services.ingest.schema import TABLES
from services.ingest.spool import Spool
from services.ingest.sync import Syncer
from shared.messages import Calibration, LabelScore, LabelsResult, LevelsResult

T0 = 1_764_400_000.0
NAMES = ("Speech", "Traffic noise, roadway noise", "Bird", "Wind", "Mains hum")


def results(windows: int) -> list[Result]:
    """Validated results, as ingest spools them, for `windows` one-second windows."""
    triage = Triage("bench")
    out: list[Result] = []
    for seq in range(windows):
        start = T0 + seq
        msgs = (
            LabelsResult(
                device="yor",
                seq=seq,
                start=start,
                duration=1.0,
                model="MIT/ast-finetuned-audioset-10-10-0.4593",
                labels=[LabelScore(label=n, score=0.9 - 0.1 * i) for i, n in enumerate(NAMES)],
                speech_present=seq % 7 == 0,
                inference_ms=48.0,
            ),
            LevelsResult(
                device="yor",
                seq=seq,
                start=start,
                duration=1.0,
                leq_db=55.0 + seq % 10,
                laeq_db=50.0,
                lceq_db=54.0,
                peak_db=70.0,
                dbfs=-40.0,
                calibration=Calibration(),
                uncalibrated=False,
            ),
        )
        for msg in msgs:
            verdict = triage.result(msg.topic("bench"), msg, T0 + seq)
            assert isinstance(verdict, Result), verdict
            out.append(verdict)
    return out


@contextmanager
def scratch_database(admin_dsn: str) -> Iterator[str]:
    """A fresh database with ingest's schema; dropped afterwards."""
    name = f"bench_ingest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            db.migrate(conn)
        yield dsn
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def row_by_row(dsn: str, data: list[Result], batch_size: int) -> tuple[int, float]:
    """(rows inserted, seconds): one INSERT statement per row, a commit per batch."""
    sync_id, sync_time = uuid.uuid4(), datetime.now(UTC)
    statements = {}
    marked = {"window_start": "to_timestamp(%s)", "bands": "soundscape_bands(%s::jsonb)"}
    for kind, table in TABLES.items():
        cols = ", ".join(table.names)
        marks = ", ".join(marked.get(name, "%s") for name in table.names)
        # labels, one row per label, go through the prototype's detections view (its
        # trigger appends each to its window's row; a view takes no ON CONFLICT)
        into = "detections" if table.name == "labels" else table.name
        conflict = (
            "" if into == "detections" else f" ON CONFLICT ({', '.join(table.key)}) DO NOTHING"
        )
        statements[kind] = (
            f"INSERT INTO {into} ({cols}, sync_id, sync_time) VALUES ({marks}, %s, %s){conflict}"
        ).encode()
    inserted = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        began = time.perf_counter()
        for first in range(0, len(data), batch_size):
            with conn.transaction(), conn.cursor() as cur:
                for res in data[first : first + batch_size]:
                    for row in res.rows:
                        cur.execute(statements[res.kind], (*row, sync_id, sync_time))
                        inserted += cur.rowcount
        return inserted, time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "SOUNDSCAPE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args(argv)

    data = results(args.windows)
    rows = sum(len(r.rows) for r in data)
    print(f"{args.windows} windows: {len(data)} results, {rows} rows; batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.dsn) as dsn:
        spool = Spool(Path(tmp) / "spool.sqlite3", len(data) + 1)
        with Syncer(spool, dsn, source="bench", batch_size=args.batch_size) as syncer:
            syncer.sync()  # empty spool: connect and check the schema outside the timing
            began = time.perf_counter()
            for first in range(0, len(data), 1000):
                spool.put(data[first : first + 1000])
            spool_s = time.perf_counter() - began

            began = time.perf_counter()
            copy = syncer.sync()
            copy_s = time.perf_counter() - began
            assert copy.error is None and copy.inserted == rows, copy

            spool.put(data)
            began = time.perf_counter()
            replay = syncer.sync()
            replay_s = time.perf_counter() - began
            assert replay.error is None and replay.inserted == 0, replay
        spool.close()
    with scratch_database(args.dsn) as dsn:
        inserted, base_s = row_by_row(dsn, data, args.batch_size)
        assert inserted == rows, inserted

    copy_rate, base_rate = rows / copy_s, rows / base_s
    print(f"{'path':<34}{'seconds':>10}{'rows/s':>12}")
    print(f"{'spool write (results/s)':<34}{spool_s:>10.2f}{len(data) / spool_s:>12,.0f}")
    print(f"{'COPY sync (ingest)':<34}{copy_s:>10.2f}{copy_rate:>12,.0f}")
    print(f"{'replay, all conflicts (COPY)':<34}{replay_s:>10.2f}{rows / replay_s:>12,.0f}")
    print(f"{'row-by-row INSERT baseline':<34}{base_s:>10.2f}{base_rate:>12,.0f}")
    print(
        f"COPY is {copy_rate / base_rate:.1f}x the baseline; goal 50,000 rows/s: "
        + ("met" if copy_rate >= 50_000 else "NOT met")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
