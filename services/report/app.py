"""`soundscape report`: Lden, Lday, Levening, Lnight, hourly LAeq and noise-event counts.

    soundscape report --device yor --from 2026-03-01 --to 2026-03-31 --format csv [--out FILE]
        [--hourly FILE] [--devices config/devices.toml] [--database-url postgresql://...]

One row per device and local day (in the device's `timezone` from the registry; UTC when it
has none), read from the hourly rollups (minute rollups in zones whose offset is not a whole
hour) and the noise events, through a read-only connection. `--hourly FILE` also writes the
hourly LAeq table, in the same format. See docs/reports.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr, ValidationError

from services.report import core, db
from services.report.export import FORMATS, ExportError, Format, render
from services.report.settings import ReportSettings
from shared.devices import DeviceRegistry
from shared.errors import ConfigError
from shared.runtime import setup_logging
from shared.settings import RegistrySettings

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="soundscape report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--device", action="append", required=True, help="device id (repeat for several)"
    )
    p.add_argument(
        "--from", dest="first", type=date.fromisoformat, required=True, help="first local day"
    )
    p.add_argument(
        "--to", dest="last", type=date.fromisoformat, required=True, help="last local day"
    )
    p.add_argument("--format", choices=FORMATS, default="csv", help="output format (csv)")
    p.add_argument("--out", type=Path, help="file for the day rows (default: standard output)")
    p.add_argument("--hourly", type=Path, help="also write the hourly LAeq table to this file")
    p.add_argument(
        "--min-event-db",
        type=float,
        help="count only noise events whose LAeq is at least this, dB(A)",
    )
    p.add_argument("--devices", type=Path, help="device registry (SOUNDSCAPE_DEVICES_FILE)")
    p.add_argument("--database-url", help="PostgreSQL URL (SOUNDSCAPE_REPORT_DATABASE_URL)")
    return p


def build(
    conn: psycopg.Connection[Any],
    registry: DeviceRegistry,
    devices: list[str],
    first: date,
    last: date,
    min_event_db: float | None = None,
) -> tuple[list[core.DayReport], list[core.HourReport]]:
    """The day and hour reports of `devices` for local days first..last."""
    days: list[core.DayReport] = []
    hours: list[core.HourReport] = []
    for device in devices:
        entry = registry.get(device)
        if entry is None:
            log.warning("report: device %s is not in the registry: its days are in UTC", device)
        name = entry.timezone if entry is not None else None
        zone = core.zone_of(name)
        span = core.needed_span(first, last, zone)
        width = core.bucket_width(first, last, zone)
        buckets = db.fetch_buckets(conn, device, span, width)
        events = db.fetch_events(conn, device, span, min_event_db)
        days += core.day_reports(device, name, first, last, buckets, events)
        hours += core.hour_reports(device, name, first, last, buckets, events)
    return days, hours


def _write(data: bytes, path: Path | None) -> None:
    if path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    """Write the report; the exit status (2: bad arguments or settings, 1: database error)."""
    args = _parser().parse_args(argv)
    fmt: Format = args.format
    if args.last < args.first:
        print("soundscape report: --to is before --from", file=sys.stderr)
        return 2
    if fmt == "parquet" and args.out is None:
        print("soundscape report: parquet needs --out FILE", file=sys.stderr)
        return 2
    try:
        settings = ReportSettings()
        if args.database_url is not None:
            settings = settings.model_copy(update={"database_url": SecretStr(args.database_url)})
        registry_file = args.devices or RegistrySettings().devices_file
        registry = DeviceRegistry.load(registry_file)
    except ValidationError as exc:
        print(f"soundscape report: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"soundscape report: {exc}", file=sys.stderr)
        return 2
    if settings.database_url is None:
        print(
            "soundscape report: no database: give --database-url or set "
            "SOUNDSCAPE_REPORT_DATABASE_URL",
            file=sys.stderr,
        )
        return 2
    setup_logging()
    try:
        with db.connect(settings, settings.database_url.get_secret_value()) as conn:
            days, hours = build(
                conn, registry, args.device, args.first, args.last, args.min_event_db
            )
    except psycopg.Error as exc:
        print(f"soundscape report: database error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"soundscape report: {exc}", file=sys.stderr)
        return 1
    try:
        _write(render([core.day_row(d) for d in days], core.DAY_COLUMNS, fmt), args.out)
        if args.hourly is not None:
            rows = [core.hour_row(h) for h in hours]
            _write(render(rows, core.HOUR_COLUMNS, fmt), args.hourly)
    except (ExportError, OSError) as exc:
        print(f"soundscape report: {exc}", file=sys.stderr)
        return 1
    return 0
