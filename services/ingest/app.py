"""`soundscape ingest`: store every result in PostgreSQL, through a durable local spool.

    soundscape ingest --database-url postgresql://... [--sync-interval 30] [--spool PATH]
                      [--spool-max N] [--client-id ID] [--device ID]
    soundscape ingest --database-url postgresql://OWNER@.../db --migrate
    soundscape ingest --database-url postgresql://OWNER@.../db --create-roles
    soundscape ingest --database-url postgresql://OWNER@.../db --maintain
    soundscape ingest --print-roles-sql

Settings come from the environment (SOUNDSCAPE_INGEST_*, SOUNDSCAPE_MQTT_*,
SOUNDSCAPE_DEVICES_FILE); options given here override them. See docs/ingest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from pydantic import ValidationError

from services.ingest import db
from services.ingest.schema import roles_sql
from services.ingest.service import serve
from services.ingest.settings import IngestSettings
from shared.devices import DeviceRegistry
from shared.errors import ConfigError
from shared.runtime import setup_logging
from shared.settings import MqttSettings, RegistrySettings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="soundscape ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--database-url", help="PostgreSQL URL (SOUNDSCAPE_INGEST_DATABASE_URL)")
    p.add_argument("--sync-interval", type=float, help="seconds between syncs (default 30)")
    p.add_argument("--spool", type=Path, help="SQLite spool file")
    p.add_argument("--spool-max", type=int, help="most results the spool keeps")
    p.add_argument("--batch-size", type=int, help="most results per transaction")
    p.add_argument("--client-id", help="fixed MQTT client id (persistent session)")
    p.add_argument("--node-id", help="node id of the retained status")
    p.add_argument("--device", help="only this device (ingest on the sensor)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--migrate", action="store_true", help="apply the schema migrations, then exit"
    )
    mode.add_argument(
        "--create-roles",
        action="store_true",
        help="migrate, create/grant the writer and reader roles, then exit (as the owner)",
    )
    mode.add_argument(
        "--maintain",
        action="store_true",
        help="migrate, create partitions ahead, drop expired partitions, then exit (as the owner)",
    )
    mode.add_argument(
        "--print-roles-sql", action="store_true", help="print the roles SQL, then exit"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ingest (or one of its one-shot commands); the exit status."""
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {
        name: value
        for name, value in {
            "database_url": args.database_url,
            "sync_interval": args.sync_interval,
            "spool": args.spool,
            "spool_max": args.spool_max,
            "batch_size": args.batch_size,
            "client_id": args.client_id,
            "node_id": args.node_id,
            "device": args.device,
        }.items()
        if value is not None
    }
    try:
        settings = IngestSettings(**overrides)
        mqtt = MqttSettings()
        registry_file = RegistrySettings().devices_file
    except ValidationError as exc:
        print(f"soundscape ingest: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    setup_logging()
    if args.print_roles_sql:
        print(roles_sql(settings.writer_role, settings.reader_role))
        return 0
    if settings.database_url is None:
        print(
            "soundscape ingest: no database: give --database-url or set "
            "SOUNDSCAPE_INGEST_DATABASE_URL",
            file=sys.stderr,
        )
        return 2
    dsn = settings.database_url.get_secret_value()
    if args.migrate or args.create_roles or args.maintain:
        return _one_shot(settings, dsn, args.create_roles, args.maintain)
    try:
        registry = DeviceRegistry.load(registry_file)
    except ConfigError as exc:
        print(f"soundscape ingest: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings, mqtt, registry))
    except ConfigError as exc:
        print(f"soundscape ingest: {exc}", file=sys.stderr)
        return 2
    return 0


def _one_shot(settings: IngestSettings, dsn: str, roles: bool, maintain: bool = False) -> int:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=settings.connect_timeout) as c:
            applied = db.migrate(c)
            print("migrations applied: " + (", ".join(applied) or "none (up to date)"))
            if roles:
                db.create_roles(
                    c,
                    settings.writer_role,
                    settings.reader_role,
                    _secret(settings.writer_password),
                    _secret(settings.reader_password),
                )
                print(f"roles ready: writer {settings.writer_role}, reader {settings.reader_role}")
            if maintain:
                dropped = db.maintain(c, settings.keep_days, datetime.now(UTC))
                print(
                    f"maintenance done: {len(dropped)} expired partitions dropped "
                    f"({sum(d.rows for d in dropped)} rows)"
                )
    except (psycopg.Error, ConfigError) as exc:
        print(f"soundscape ingest: {exc}", file=sys.stderr)
        return 1
    return 0


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())
