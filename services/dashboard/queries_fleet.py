"""Read-only queries of the overview and health pages: many devices, a few rows each.

Every query here costs index probes per device (the newest minute rows of `levels_packed` and
`labels_packed`, unpacked through the `levels` and `labels` views) or
reads small tables (`gaps`, `syncs`) or the hourly rollup, whatever the size of the raw
tables, so a fleet of 20 devices and a month of data stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from services.dashboard.queries import Connection, frame


def range_laeq(conn: Connection, devices: Sequence[str], start: datetime, end: datetime
               ) -> pd.DataFrame:  # fmt: skip
    """Per device, the LAeq of the range from `levels_hourly` (whole hours: the first hour
    of the range counts whole). Columns: device, laeq_db, seconds. Devices without LAeq are
    absent."""
    return frame(
        conn,
        """
        SELECT device, 10 * log10(sum(laeq_energy) / sum(laeq_seconds)) AS laeq_db,
               sum(laeq_seconds) AS seconds
        FROM levels_hourly
        WHERE device = ANY(%(devices)s)
          AND bucket >= date_trunc('hour', %(start)s::timestamptz, 'UTC') AND bucket < %(end)s
        GROUP BY device HAVING sum(laeq_seconds) > 0
        ORDER BY laeq_db DESC, device
        """,
        {"devices": list(devices), "start": start, "end": end},
    )


def device_health(conn: Connection, devices: Sequence[str]) -> pd.DataFrame:
    """Per device, what its newest rows say about the pipeline behind it.

    Columns: device, level_time (newest levels window start), level_sync (when it was
    stored), uncalibrated (of that window), label_time, label_sync, model (newest labels
    window), inference_ms (mean of the newest 60 labels windows), behind_s (how far the
    newest labels window trails the newest levels window, seconds: inference lag).
    """
    return frame(
        conn,
        """
        SELECT ids.device, lv.window_start AS level_time, lv.sync_time AS level_sync,
               lv.uncalibrated, lb.window_start AS label_time, lb.sync_time AS label_sync,
               lb.model, ms.inference_ms,
               extract(epoch FROM lv.window_start - lb.window_start)::float8 AS behind_s
        FROM unnest(%(devices)s::text[]) AS ids(device)
        LEFT JOIN LATERAL (
            SELECT window_start, sync_time, uncalibrated FROM levels
            WHERE device = ids.device
              AND minute = (SELECT max(minute) FROM levels_packed WHERE device = ids.device)
            ORDER BY window_start DESC LIMIT 1
        ) lv ON true
        LEFT JOIN LATERAL (
            SELECT window_start, sync_time, model FROM labels
            WHERE device = ids.device
              AND minute = (SELECT max(minute) FROM labels_packed WHERE device = ids.device)
            ORDER BY window_start DESC LIMIT 1
        ) lb ON true
        LEFT JOIN LATERAL (
            SELECT avg(x.inference_ms)::float8 AS inference_ms FROM (
                SELECT inference_ms FROM labels
                WHERE device = ids.device
                  AND minute >= (SELECT max(minute) FROM labels_packed
                                 WHERE device = ids.device) - interval '2 minutes'
                ORDER BY window_start DESC LIMIT 60
            ) x
        ) ms ON true
        ORDER BY ids.device
        """,
        {"devices": list(devices)},
    )


def gap_totals(conn: Connection, devices: Sequence[str], start: datetime, end: datetime
               ) -> pd.DataFrame:  # fmt: skip
    """Per device, the gaps recorded in the range: how many, the windows (chunks or results)
    they lost, and the causes. Columns: device, gaps, lost, kinds (comma-separated)."""
    return frame(
        conn,
        """
        SELECT device, count(*) AS gaps, sum(count)::bigint AS lost,
               string_agg(DISTINCT kind, ', ' ORDER BY kind) AS kinds
        FROM gaps
        WHERE device = ANY(%(devices)s) AND first_start < %(end)s AND last_start >= %(start)s
        GROUP BY device ORDER BY device
        """,
        {"devices": list(devices), "start": start, "end": end},
    )


def recent_syncs(conn: Connection, limit: int) -> pd.DataFrame:
    """The newest syncs (ingest batches committed), newest first.

    Columns: sync_time, source, rows, results, gaps."""
    return frame(
        conn,
        """
        SELECT sync_time, source, rows, results, gaps FROM syncs
        ORDER BY sync_time DESC LIMIT %(limit)s
        """,
        {"limit": limit},
    )
