"""The dashboard's database connection: read-only, short statements, the display time zone."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from services.dashboard.settings import DashboardSettings


def connect(settings: DashboardSettings) -> psycopg.Connection[Any]:
    """Open a connection whose every transaction is READ ONLY.

    The deployment gives the dashboard a role with SELECT only (docs/dashboard.md); the
    session setting is a second lock, so even a DSN with a writer role cannot write.
    Autocommit keeps no transaction open between page runs.
    """
    timeout_ms = int(settings.statement_timeout_s * 1000)
    return psycopg.connect(
        settings.database_url.get_secret_value(),
        autocommit=True,
        connect_timeout=settings.connect_timeout_s,
        application_name="soundscape-dashboard",
        options=(
            "-c default_transaction_read_only=on"
            f" -c statement_timeout={timeout_ms}"
            f" -c TimeZone={settings.timezone}"
        ),
    )


def describe_target(settings: DashboardSettings) -> str:
    """'dbname on host:port' for the page's caption, without user or password."""
    try:
        info = conninfo_to_dict(settings.database_url.get_secret_value())
    except psycopg.ProgrammingError:
        return "an unparsable DSN"
    host = info.get("host") or "local socket"
    port = info.get("port")
    where = f"{host}:{port}" if port else str(host)
    return f"{info.get('dbname') or 'default database'} on {where}"
