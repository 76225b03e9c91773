"""The SQLite spool: durable, de-duplicating, bounded (oldest dropped, gap recorded)."""

from __future__ import annotations

from pathlib import Path

from services.ingest.core import Gap
from services.ingest.spool import Spool
from tests.ingest.helpers import T0, as_results, labels, level


def test_put_is_durable_across_reopening_and_ignores_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path, 100)
    results = as_results([level(i) for i in range(5)] + [labels(0)])
    first = spool.put(results)
    assert (first.stored, first.duplicates, first.dropped) == (6, 0, 0)
    again = spool.put(results[:3])
    assert (again.stored, again.duplicates) == (0, 3)
    spool.close()

    reopened = Spool(path, 100)
    assert reopened.depth() == 6
    batch = reopened.take(10)
    assert [r.key for r in batch.results] == [r.key for r in results]
    assert batch.results[0].rows == results[0].rows  # rows survive the round trip exactly
    reopened.close()


def test_take_gives_the_oldest_first_and_done_forgets_only_that_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 100)
    spool.put(as_results([level(i) for i in range(10)]))
    batch = spool.take(4)
    assert [r.start for r in batch.results] == [T0 + i for i in range(4)]
    spool.put(as_results([level(10)]))
    spool.done(batch)
    assert spool.depth() == 7
    assert spool.take(100).results[0].start == T0 + 4


def test_a_failed_sync_leaves_the_batch_in_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 100)
    spool.put(as_results([level(i) for i in range(3)]))
    batch = spool.take(10)
    spool.release()
    assert spool.depth() == 3
    assert spool.take(10).ids == batch.ids


def test_a_full_spool_keeps_the_newest_and_records_one_gap(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 50)
    dropped = 0
    for first in range(0, 80, 7):  # many small puts, as results arrive
        out = spool.put(as_results([level(i) for i in range(first, min(first + 7, 80))]))
        dropped += out.dropped
    assert dropped == 30
    assert spool.depth() == 50
    assert [r.start for r in spool.take(100).results] == [T0 + i for i in range(30, 80)]
    assert spool.pending_gaps() == [Gap("yor", "levels", T0, T0 + 29, 30)]


def test_a_gap_handed_to_a_sync_is_sealed_and_later_drops_start_a_new_one(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 2)
    spool.put(as_results([level(i) for i in range(4)]))
    batch = spool.take(1)
    assert [g.gap.count for g in batch.gaps] == [2]
    spool.release()
    spool.put(as_results([level(i) for i in range(4, 6)]))
    assert [g.count for g in spool.pending_gaps()] == [2, 2]


def test_results_in_flight_are_not_dropped_while_a_sync_runs(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 3)
    spool.put(as_results([level(i) for i in range(3)]))
    batch = spool.take(2)  # seq 0 and 1 are being stored right now
    out = spool.put(as_results([level(i) for i in range(3, 5)]))
    assert out.dropped == 2
    remaining = [r.start for r in spool.take(100).results]
    assert remaining == [T0, T0 + 1, T0 + 4]  # the oldest not in flight went: 2 and 3
    spool.done(batch)
    assert spool.depth() == 1


def test_quarantine_moves_a_result_out_of_the_queue(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3", 10)
    spool.put(as_results([level(0), level(1)]))
    first, _ = spool.take(10).split()
    spool.quarantine(first, "refused")
    assert spool.depth() == 1
    assert spool.quarantined() == 1
