"""Throwaway servers for tests (see services.localservers) and child processes for services."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from services.localservers import (
    Mosquitto,
    Postgres,
    free_port,
    reachable,
    start_mosquitto,
    start_postgres,
    wait_port,
)

__all__ = [
    "Mosquitto",
    "Postgres",
    "free_port",
    "process",
    "reachable",
    "start_mosquitto",
    "start_postgres",
    "wait_port",
]


def soundscape(*args: str) -> list[str]:
    """The command line of `soundscape ARGS` run by this interpreter."""
    return [sys.executable, "-m", "services.cli", *args]


def ingest_command(database: str, spool: Path, client_id: str) -> list[str]:
    """`soundscape ingest` as the pipeline tests run it: a sync every 0.5 s into `database`."""
    return soundscape(
        "ingest",
        "--database-url",
        database,
        "--sync-interval",
        "0.5",
        "--spool",
        str(spool),
        "--client-id",
        client_id,
    )


@contextlib.contextmanager
def process(
    cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a service as a child process; terminate it (then kill) on exit."""
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if log:
            out.close()  # type: ignore[union-attr]
