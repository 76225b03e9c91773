"""`soundscape dashboard`: run the Streamlit page on a local web server.

The page is an ordinary Streamlit script (`page.py`), started with `python -m streamlit run`
as a child process; its settings travel to it through the environment, and SIGINT/SIGTERM
are passed on so that a container stop ends the server cleanly.

Without a password it listens only on a loopback address, unless told that a reverse proxy
in front authenticates (access.bind_refusal).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

import services
from services.dashboard.access import bind_refusal
from services.dashboard.settings import DashboardSettings
from shared.runtime import setup_logging

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.py")
ENV_PREFIX = "SOUNDSCAPE_DASHBOARD_"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; each overrides its environment setting."""
    parser = argparse.ArgumentParser(
        prog="soundscape dashboard",
        description="Serve the Streamlit dashboard. The database comes from "
        "SOUNDSCAPE_DASHBOARD_DATABASE_URL (a read-only role; see docs/dashboard.md).",
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL DSN (SOUNDSCAPE_DASHBOARD_DATABASE_URL; use that for passwords)",
    )
    parser.add_argument("--port", type=int, help="TCP port (default 8501)")
    parser.add_argument(
        "--address",
        help="listen address (default 127.0.0.1; one that is not loopback needs "
        "SOUNDSCAPE_DASHBOARD_PASSWORD)",
    )
    parser.add_argument("--timezone", help="IANA time zone for displayed times (default UTC)")
    return parser.parse_args(argv)


def build_settings(args: argparse.Namespace) -> DashboardSettings:
    """Environment settings with the command-line overrides applied."""
    overrides = {
        name: value
        for name, value in (
            ("database_url", args.database_url),
            ("port", args.port),
            ("address", args.address),
            ("timezone", args.timezone),
        )
        if value is not None
    }
    return DashboardSettings(**overrides)


def child_env(settings: DashboardSettings, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of the Streamlit process: `base` with every setting spelled out."""
    env = dict(base)
    for name, value in settings.model_dump().items():
        if value is None:  # unset stays unset (not the string "None")
            env.pop(ENV_PREFIX + name.upper(), None)
            continue
        secret = getattr(value, "get_secret_value", None)
        env[ENV_PREFIX + name.upper()] = str(secret() if callable(secret) else value)
    # The page imports `services.dashboard`; make that work from a plain checkout too.
    root = str(Path(services.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, base.get("PYTHONPATH")) if p)
    return env


def streamlit_command(settings: DashboardSettings, python: str = sys.executable) -> list[str]:
    """The `python -m streamlit run` command line for the page."""
    return [
        python, "-m", "streamlit", "run", str(PAGE),
        "--server.port", str(settings.port),
        "--server.address", settings.address,
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--server.enableStaticServing", "true",  # plot.py's bundle
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Start the dashboard server and wait for it; its exit status is ours."""
    args = parse_args(argv)
    setup_logging()
    try:
        settings = build_settings(args)
    except ValidationError as exc:
        print(f"soundscape dashboard: invalid settings:\n{exc}", file=sys.stderr)
        if any(e["loc"] == ("database_url",) for e in exc.errors()):
            print(
                "Set SOUNDSCAPE_DASHBOARD_DATABASE_URL to a PostgreSQL DSN, e.g. "
                "postgresql://dashboard@127.0.0.1:5432/soundscape",
                file=sys.stderr,
            )
        return 2
    refusal = bind_refusal(
        settings.address, settings.password is not None, settings.trust_proxy_auth
    )
    if refusal:
        print(f"soundscape dashboard: {refusal}", file=sys.stderr)
        return 2
    log.info(
        "dashboard: serving on http://%s:%d (%s)",
        settings.address,
        settings.port,
        "password required" if settings.password else "no password",
    )
    proc = subprocess.Popen(streamlit_command(settings), env=child_env(settings, os.environ))

    def forward(signum: int, _frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("dashboard: server exited with status %d", code)
    # Stopped by a signal we forwarded: a normal stop, not a failure.
    return 0 if code in (-signal.SIGINT, -signal.SIGTERM) else code


if __name__ == "__main__":
    raise SystemExit(main())
