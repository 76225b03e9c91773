"""Throwaway servers for tests (see services.localservers) and child processes for services."""

from __future__ import annotations

import contextlib
import subprocess
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
