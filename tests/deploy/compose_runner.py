"""Run a rendered Compose file's services as local processes, as an engine would start them.

There is no Docker engine here, so `ComposeRun` reads `docker-compose config` (the file as
Compose itself resolves it: interpolation, anchors, `${VAR:?}` checks) and starts each
service with exactly its `command` (or `entrypoint`) and `environment`, and the image's
`ENV` lines. What an engine would provide is stood in for, and nothing else:

- a container's filesystem is a folder per service; each mount is a symlink in it to a temp
  folder (named volumes, shared between services like the real ones) or to the bind source;
  absolute paths in environment values point into that folder;
- service hostnames resolve to 127.0.0.1 and each container port to a free local port (in
  environment values, in the service's own command, its health check and its listeners);
- `soundscape` (the image's entrypoint), `python` and `arecord` (a stand-in microphone)
  come first on PATH; `mosquitto` and `pg_isready` are the system's;
- postgres is a throwaway cluster given the file's POSTGRES_PASSWORD and POSTGRES_DB, with
  password authentication on TCP, as the image's initialisation does.

Health checks are each service's own `healthcheck.test`, judged like Docker does: failures
inside `start_period` do not count, `retries` failures after it make the service unhealthy,
and none may take longer than start_period + interval x retries.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from services.localservers import Postgres, free_port, start_postgres, wait_port

ROOT = Path(__file__).resolve().parents[2]
FAKE_ARECORD = ROOT / "tests" / "capture" / "fake_arecord.py"
#: Ports each image listens on (what its EXPOSE would say).
IMAGE_PORTS: dict[str, tuple[int, ...]] = {
    "mosquitto": (1883, 8883),
    "postgres": (5432,),
    "dashboard": (8501,),
}
#: Health checks run one at a time: they share the `health` user, and with client ids bound
#: to users two at the same instant would take over each other's connection (Docker runs
#: each container's check an `interval` apart, so they seldom meet there).
CHECKS = threading.Lock()
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}


INIT = [sys.executable, "-m", "services.cli", "init"]


@contextlib.contextmanager
def work_folder() -> Iterator[Path]:
    """A work folder outside pytest's 0700 temp folder: Mosquitto drops root for its own
    user, who must read the configuration, as in the container."""
    folder = Path(tempfile.mkdtemp(prefix="soundscape-compose-"))
    os.chmod(folder, 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def make_deployment(base: Path, *init_args: str, name: str = "deploy") -> Path:
    """A deployment folder `base/name` as a checkout has it (the shipped mosquitto/ folder,
    the device registry, ./models), then `soundscape init` with `init_args` (.env, ACL, TLS)."""
    folder = base / name
    shutil.copytree(ROOT / "mosquitto", folder / "mosquitto")
    (folder / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "devices.toml", folder / "config" / "devices.toml")
    (folder / "models").mkdir()
    prefix = f"test-{uuid.uuid4().hex[:8]}/soundscape"
    done = subprocess.run(
        [*INIT, "--prefix", prefix, "--dir", str(folder), *init_args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return folder


def render(compose: Path, env_file: Path, project_dir: Path) -> dict[str, Any]:
    """`docker-compose -f compose --env-file env_file config`, parsed."""
    done = subprocess.run(
        [
            "docker-compose",
            "-f",
            str(compose),
            "--project-directory",
            str(project_dir),
            "--env-file",
            str(env_file),
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker-compose config failed: {done.stderr.strip()}")
    rendered: dict[str, Any] = yaml.safe_load(done.stdout)
    return rendered


def duration(text: str | None, default: float) -> float:
    """A Compose duration ("1m30s", "500ms") in seconds."""
    if text is None:
        return default
    parts = _DURATION.findall(str(text))
    if not parts:
        raise ValueError(f"bad duration {text!r}")
    return sum(float(n) * _UNITS[unit] for n, unit in parts)


def image_env(dockerfile: Path) -> dict[str, str]:
    """The `ENV KEY=VALUE ...` settings of a Dockerfile."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _unescape(text: str) -> str:
    # `docker-compose config` writes a literal $ as $$ again; the engine sees one $.
    return text.replace("$$", "$")


@dataclass
class Mount:
    source: str
    target: str
    volume: bool


def mounts(spec: dict[str, Any]) -> list[Mount]:
    """The service's volumes as (source, target, named volume?)."""
    found = []
    for entry in spec.get("volumes", []):
        if isinstance(entry, dict):
            source, target = str(entry.get("source", "")), str(entry["target"])
        else:
            source, target = entry.split(":")[:2]
        found.append(Mount(source, target, not source.startswith("/")))
    return found


@dataclass
class HealthVerdict:
    healthy: bool
    output: str
    checks: int


@dataclass
class Service:
    """One service: its container stand-in and its process."""

    name: str
    spec: dict[str, Any]
    root: Path
    env: dict[str, str]
    ports: dict[int, int]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    log: Path | None = None

    def local_text(self, text: str) -> str:
        """`text` (a command argument or check) with this service's ports and addresses."""
        text = _unescape(text).replace("0.0.0.0", "127.0.0.1")
        for cport, hport in self.ports.items():
            text = re.sub(rf"(?<![0-9]){cport}(?![0-9])", str(hport), text)
        return text

    def check(self, timeout_s: float | None = None) -> tuple[bool, str]:
        """Run the service's health check once, in its environment."""
        test = self.spec["healthcheck"]["test"]
        kind, args = test[0], [self.local_text(a) for a in test[1:]]
        argv = ["/bin/sh", "-c", args[0]] if kind == "CMD-SHELL" else args
        timeout = timeout_s or duration(self.spec["healthcheck"].get("timeout"), 30.0)
        try:
            with CHECKS:
                done = subprocess.run(
                    argv,
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    cwd=self.root,
                )
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout} s"
        return done.returncode == 0, (done.stdout + done.stderr).strip()

    def has_check(self) -> bool:
        hc: dict[str, Any] = self.spec.get("healthcheck") or {}
        return bool(hc) and not hc.get("disable") and hc.get("test", ["NONE"])[0] != "NONE"

    def wait_healthy(self, poll_s: float = 1.0) -> HealthVerdict:
        """Docker's verdict on this service, reached with checks `poll_s` apart."""
        hc = self.spec["healthcheck"]
        start_period = duration(hc.get("start_period"), 0.0)
        interval = duration(hc.get("interval"), 30.0)
        retries = int(hc.get("retries", 3))
        deadline = self.started + start_period + interval * retries
        failures = checks = 0
        while True:
            ok, out = self.check()
            checks += 1
            if ok:
                return HealthVerdict(True, out, checks)
            now = time.monotonic()
            if now - self.started > start_period:
                failures += 1
            exited = self.proc is not None and self.proc.poll() is not None
            if failures >= retries or now > deadline or exited:
                why = f" (process exited {self.proc.returncode})" if exited and self.proc else ""
                return HealthVerdict(False, out + why, checks)
            time.sleep(min(interval, poll_s))

    def tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ComposeRun:
    """A rendered Compose project run as local processes under `work`."""

    config: dict[str, Any]
    work: Path
    dockerfile: Path = ROOT / "Dockerfile"
    services: dict[str, Service] = field(default_factory=dict)
    postgres: Postgres | None = None
    ports: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bin = self.work / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        for name, body in {
            "soundscape": f'#!/bin/sh\nexec "{sys.executable}" -m services.cli "$@"\n',
            "python": f'#!/bin/sh\nexec "{sys.executable}" "$@"\n',
            "arecord": f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_ARECORD}" "$@"\n',
        }.items():
            path = self.bin / name
            path.write_text(body)
            path.chmod(0o755)
        for name in self.config["services"]:
            for cport in IMAGE_PORTS.get(name, ()):
                self.ports[(name, cport)] = free_port()
        for name, spec in self.config["services"].items():
            self.services[name] = self._service(name, spec)

    # -- the container stand-in ------------------------------------------------------------

    def volume_dir(self, volume: str) -> Path:
        path = self.work / "volumes" / volume
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _service(self, name: str, spec: dict[str, Any]) -> Service:
        root = self.work / "containers" / name
        root.mkdir(parents=True, exist_ok=True)
        for mount in mounts(spec):
            link = root / mount.target.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            source = self.volume_dir(mount.source) if mount.volume else Path(mount.source)
            if not link.is_symlink():
                link.symlink_to(source)
        ours = "soundscape" in str(spec.get("image"))
        if ours:  # folders the Dockerfile creates, where no volume covers them
            for folder in ("var/lib/soundscape", "home/soundscape/.cache"):
                (root / folder).mkdir(parents=True, exist_ok=True)
        env = dict(image_env(self.dockerfile)) if ours else {}
        env.update({k: "" if v is None else str(v) for k, v in spec.get("environment", {}).items()})
        env = {k: self._local_value(k, v, env, root) for k, v in env.items()}
        home = root / "home" / "soundscape"
        home.mkdir(parents=True, exist_ok=True)
        env.update(
            PATH=f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            HOME=str(home),
            PYTHONPATH=str(ROOT),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        own = {c: h for (svc, c), h in self.ports.items() if svc == name}
        return Service(name, spec, root, env, own)

    def _local_value(self, key: str, value: str, env: dict[str, str], root: Path) -> str:
        hosts = {svc for svc, _ in self.ports}
        if value in hosts and key.endswith("_HOST"):
            return "127.0.0.1"
        if key.endswith("_PORT") and env.get(key[:-5] + "_HOST") in hosts and value.isdigit():
            return str(self.ports[(env[key[:-5] + "_HOST"], int(value))])
        for (svc, cport), hport in self.ports.items():
            value = value.replace(f"@{svc}:{cport}/", f"@127.0.0.1:{hport}/")
        if value.startswith("/"):
            return str(root) + value
        return value

    def variant(self, name: str, spec: dict[str, Any]) -> Service:
        """Service `name` as `spec` (a changed copy of its rendered one) would run it: same
        container, same process, so its health check can be judged against the running one."""
        svc = self._service(name, spec)
        running = self.services[name]
        svc.proc, svc.started, svc.log = running.proc, running.started, running.log
        if name == "postgres":
            svc.env.update(PGHOST="127.0.0.1", PGPORT=running.env["PGPORT"])
        return svc

    def container_path(self, service: str, path: str) -> Path:
        """Where container path `path` of `service` is, resolved through its mounts."""
        return Path(os.path.realpath(self.services[service].root / path.lstrip("/")))

    # -- starting ---------------------------------------------------------------------------

    def start(self, name: str) -> Service:
        """Start one service the way its image would."""
        svc = self.services[name]
        svc.log = self.work / "logs" / f"{name}.log"
        svc.log.parent.mkdir(exist_ok=True)
        svc.started = time.monotonic()
        if name == "postgres":
            self._start_postgres(svc)
            return svc
        spec = svc.spec
        if spec.get("entrypoint"):
            argv = [self._local_path(svc, a) for a in spec["entrypoint"]]
            argv += [svc.local_text(a) for a in spec.get("command", [])]
        else:
            argv = ["soundscape", *(svc.local_text(a) for a in spec.get("command", []))]
        env = dict(svc.env)
        if name == "mosquitto":
            env.update(self._broker_dirs(svc))
        argv[0] = shutil.which(argv[0], path=env["PATH"]) or argv[0]
        with svc.log.open("ab") as out:
            svc.proc = subprocess.Popen(
                argv, env=env, cwd=svc.root, stdout=out, stderr=subprocess.STDOUT
            )
        return svc

    def _local_path(self, svc: Service, path: str) -> str:
        return str(svc.root) + path if path.startswith("/") else path

    def _broker_dirs(self, svc: Service) -> dict[str, str]:
        """The entrypoint's folders, resolved to where the mounts really are."""
        real = {
            "MOSQUITTO_CONFIG_DIR": "/mosquitto/config",
            "MOSQUITTO_DATA_DIR": "/mosquitto/data",
            "SOUNDSCAPE_CONFIG_DIR": "/etc/soundscape",
        }
        dirs = {k: str(self.container_path(svc.name, v)) for k, v in real.items()}
        run = svc.root / "mosquitto" / "run"
        dirs["MOSQUITTO_RUN_DIR"] = str(run)
        # The listeners of the role files, on this run's ports, loopback only.
        conf_dir = Path(dirs["MOSQUITTO_CONFIG_DIR"]) / "roles"
        for conf in conf_dir.glob("*.conf"):
            text = conf.read_text()
            for cport, hport in svc.ports.items():
                text = re.sub(rf"(?m)^listener {cport}$", f"listener {hport} 127.0.0.1", text)
            conf.write_text(text)
        return dirs

    def _start_postgres(self, svc: Service) -> None:
        pg = start_postgres(self.work / "pg", self.ports[("postgres", 5432)])
        self.postgres = pg
        password = svc.env["POSTGRES_PASSWORD"]
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("ALTER USER postgres PASSWORD {}").format(
                    psycopg.sql.Literal(password)
                )
            )
            db = svc.env.get("POSTGRES_DB")
            if db:
                conn.execute(
                    psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(db))
                )
            # As the image: passwords on TCP (scram), trust only on its own socket.
            (pg.datadir / "pg_hba.conf").write_text(
                "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
            )
            conn.execute("SELECT pg_reload_conf()")
        # The image's "local" server, for pg_isready inside the container.
        svc.env.update(PGHOST="127.0.0.1", PGPORT=str(pg.port))

    def up(self, names: list[str] | None = None) -> dict[str, HealthVerdict]:
        """Start `names` (default: every service) in depends_on order; wait for each
        dependency's condition; then wait for every started service's health verdict."""
        order = self._order(names or list(self.services))
        verdicts: dict[str, HealthVerdict] = {}
        for name in order:
            for dep, cond in self.services[name].spec.get("depends_on", {}).items():
                condition = cond.get("condition") if isinstance(cond, dict) else "service_started"
                if condition == "service_healthy" and dep not in verdicts:
                    verdicts[dep] = self.services[dep].wait_healthy()
                    if not verdicts[dep].healthy:
                        raise AssertionError(
                            f"{dep} unhealthy: {verdicts[dep].output}\n{self.services[dep].tail()}"
                        )
                elif condition == "service_completed_successfully":
                    self.wait_exit(dep)
            self.start(name)
        rest = [n for n in order if n not in verdicts and self.services[n].has_check()]
        results: dict[str, HealthVerdict] = {}
        threads = [
            threading.Thread(
                target=lambda n=n: results.__setitem__(n, self.services[n].wait_healthy())
            )
            for n in rest
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        verdicts.update(results)
        return verdicts

    def wait_exit(self, name: str, timeout_s: float = 120.0) -> None:
        svc = self.services[name]
        assert svc.proc is not None, f"{name} never started"
        try:
            rc = svc.proc.wait(timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{name} still running after {timeout_s} s") from exc
        if rc != 0:
            raise AssertionError(f"{name} exited {rc}:\n{svc.tail()}")

    def _order(self, names: list[str]) -> list[str]:
        done: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            for dep in self.services[name].spec.get("depends_on", {}):
                visit(dep)
            done.append(name)

        for name in names:
            visit(name)
        return done

    def stop(self, name: str, timeout_s: float = 20.0) -> None:
        """Stop one service as `docker compose stop` does: SIGTERM, then SIGKILL."""
        proc = self.services[name].proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def down(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and the throwaway cluster."""
        procs = [s.proc for s in self.services.values() if s.proc and s.proc.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.postgres is not None:
            self.postgres.stop()


def wait_port_of(run: ComposeRun, service: str, cport: int) -> int:
    """The local port standing in for `service`:`cport`, once something listens there."""
    port = run.ports[(service, cport)]
    wait_port("127.0.0.1", port)
    return port


@contextlib.contextmanager
def running(run: ComposeRun) -> Any:
    """`run`, brought down afterwards whatever happens."""
    try:
        yield run
    finally:
        run.down()
