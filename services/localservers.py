"""Local Mosquitto and PostgreSQL servers started from the system's binaries.

Used by `soundscape stack` when no broker or database is reachable, and by the tests for
throwaway servers with their own configuration. Every server listens on 127.0.0.1 only, with
its files in a folder of the caller's choosing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Wait for a listener, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while not reachable(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")
        time.sleep(0.05)


@dataclass
class Mosquitto:
    """A running throwaway broker."""

    port: int
    proc: subprocess.Popen[bytes]
    config: Path
    log: Path

    def stop(self, kill: bool = False) -> None:
        """Stop the broker (SIGKILL when `kill`)."""
        if self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(10)

    def start(self) -> None:
        """(Re)start the broker with the same configuration and port."""
        self.proc = _popen_mosquitto(self.config, self.log)
        wait_port("127.0.0.1", self.port)


def _popen_mosquitto(config: Path, log: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with log.open("ab") as out:
        return subprocess.Popen([exe, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)


def start_mosquitto(workdir: Path, extra: str = "", port: int | None = None) -> Mosquitto:
    """Start mosquitto on 127.0.0.1:`port` with anonymous access unless `extra` says otherwise."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "mosquitto.conf"
    body = f"listener {port} 127.0.0.1\n"
    if "allow_anonymous" not in extra:
        body += "allow_anonymous true\n"
    if os.geteuid() == 0:
        # Run as root, mosquitto switches to its own user, which cannot write to a private
        # folder: keep root for a throwaway broker whose files live in the caller's folder.
        body += "user root\n"
    config.write_text(body + extra + "\n")
    log = workdir / "mosquitto.log"
    broker = Mosquitto(port, _popen_mosquitto(config, log), config, log)
    wait_port("127.0.0.1", port)
    return broker


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for cand in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(cand)
    raise FileNotFoundError(f"{name} not found: apt-get install postgresql")


@dataclass
class Postgres:
    """A running throwaway PostgreSQL cluster with trust auth."""

    port: int
    datadir: Path

    @property
    def dsn(self) -> str:
        """Connection string for the `postgres` database as the `postgres` superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.datadir), "-w", *args]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        """Start (or restart after stop) the cluster."""
        self._ctl(
            "-o",
            f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1",
            "-l",
            str(self.datadir / "server.log"),
            "start",
        )
        wait_port("127.0.0.1", self.port)

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster (`immediate` is a crash)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("-m", mode, "stop")


def start_postgres(workdir: Path, port: int | None = None) -> Postgres:
    """initdb a new cluster under `workdir` and start it on 127.0.0.1:`port`."""
    port = port or free_port()
    datadir = workdir / "pgdata"
    workdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        os.chmod(workdir, 0o755)
        for parent in workdir.parents:
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o005)
    subprocess.run(
        _as_postgres(
            [_pg_bin("initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    pg = Postgres(port, datadir)
    pg.start()
    return pg
