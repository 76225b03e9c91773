"""`soundscape stack`: the whole pipeline as local processes, where Docker is absent.

It uses the broker and database you point it at (SOUNDSCAPE_MQTT_HOST/PORT,
--database-url or SOUNDSCAPE_INGEST_DATABASE_URL). When none is reachable on this machine it
starts a Mosquitto and a PostgreSQL of its own from the system's binaries, with their files
under --workdir, or says exactly what to install. Without a microphone (no card in
`arecord -l`) it runs a demo fleet instead: three simulated sensors on the map, each looping
its own generated scene (street, park, square) in real time, from memory (nothing is written
to disk), listed with a spare that never reports in a demo registry under --workdir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from pydantic import ValidationError

from services import localservers
from services.demo_fleet import write_registry
from services.health import fetch_status, verdict
from shared.devices import DeviceRegistry
from shared.errors import ConfigError
from shared.settings import MqttSettings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: Exit status of a service that cannot use its model or settings (as inference's EXIT_CONFIG).
EXIT_CONFIG = 78
MOSQUITTO_FALLBACK = Path("/usr/sbin/mosquitto")
#: Node ids the stack gives its services, so it can wait for each to come online.
NODES = {"ingest": "stack-ingest", "levels": "stack-levels", "inference": "stack-inference"}
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/soundscape"


class StackError(RuntimeError):
    """The stack cannot start; the text says what to do."""


@dataclass
class Child:
    """One service process whose output is prefixed with its name."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[str] | None = None
    pump: threading.Thread | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            sys.stdout.write(f"{self.name:>9} | {line}")
        sys.stdout.flush()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def ensure_broker(
    settings: MqttSettings, workdir: Path
) -> tuple[int, localservers.Mosquitto | None]:
    """(port, own broker or None): the configured broker, else one started here."""
    if localservers.reachable(settings.host, settings.port):
        print(f"stack: using the broker at {settings.host}:{settings.port}")
        return settings.port, None
    if settings.host not in LOCAL_HOSTS:
        raise StackError(f"no broker answers at {settings.host}:{settings.port}")
    if shutil.which("mosquitto") is None and not MOSQUITTO_FALLBACK.exists():
        raise StackError(
            "no broker is running and mosquitto is not installed: "
            "sudo apt-get install mosquitto mosquitto-clients"
        )
    port = settings.port if not localservers.reachable("127.0.0.1", settings.port) else 0
    broker = localservers.start_mosquitto(workdir / "mosquitto", port=port or None)
    print(f"stack: started mosquitto on 127.0.0.1:{broker.port} (files in {workdir}/mosquitto)")
    return broker.port, broker


def ensure_database(url: str | None, workdir: Path) -> tuple[str, localservers.Postgres | None]:
    """(dsn, own server or None): the given database (created if missing), else one here."""
    target = url or DEFAULT_DB
    info = psycopg.conninfo.conninfo_to_dict(target)
    host, port = str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432)))
    own = None
    if not localservers.reachable(host, port):
        if url is not None:
            raise StackError(f"no PostgreSQL answers at {host}:{port} (from --database-url)")
        try:
            own = localservers.start_postgres(workdir / "postgres")
        except FileNotFoundError as exc:
            raise StackError(f"no PostgreSQL is running and {exc}") from exc
        print(f"stack: started PostgreSQL on 127.0.0.1:{own.port} (files in {workdir}/postgres)")
        target = own.dsn.rsplit("/", 1)[0] + "/soundscape"
        info = psycopg.conninfo.conninfo_to_dict(target)
    dbname = str(info.get("dbname", "soundscape"))
    admin = psycopg.conninfo.make_conninfo(target, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            print(f"stack: created database {dbname}")
    return target, own


def microphone_present() -> bool:
    """True when `arecord -l` lists at least one capture card."""
    exe = shutil.which("arecord")
    if exe is None:
        return False
    out = subprocess.run([exe, "-l"], capture_output=True, text=True, check=False).stdout
    return "card " in out


def default_device_id(registry: Path) -> str:
    """The microphone's id when none is given: the only device of `registry`, else 'demo'."""
    try:
        devices = list(DeviceRegistry.load(registry).devices) if registry.exists() else []
    except (ConfigError, ValidationError) as exc:
        print(f"stack: cannot read {registry}: {exc}")
        devices = []
    return devices[0] if len(devices) == 1 else "demo"


def build_children(args: argparse.Namespace, demo_registry: Path | None) -> list[Child]:
    """The service processes to start: with `demo_registry`, the demo fleet in place of
    capture."""
    me = [sys.executable, "-m", "services.cli"]
    capture = [*me, "capture", "--device-id", args.device_id]
    if args.source == "file":
        capture += ["--source", "file", "--path", str(args.path)]
    elif args.source != "auto":
        capture += ["--source", args.source]
    if demo_registry is not None:
        capture = [
            sys.executable, "-m", "services.demo_fleet",
            "--registry", str(demo_registry),
            "--scene-seconds", str(args.scene_seconds),
        ]  # fmt: skip
    inference = [*me, "inference"]
    if not args.backend and not args.model and _default_model_unavailable():
        # Said before inference starts, rather than after it failed to load the AST.
        print(
            "stack: the AST model cannot be loaded here (the model hub does not answer and it "
            "is not in the local cache); falling back to YAMNet (--backend yamnet; pass "
            "--backend or --model to choose)"
        )
        args.backend = "yamnet"
    if args.backend:
        inference += ["--backend", args.backend]
    if args.model:
        inference += ["--model", args.model]
    children = [
        Child("ingest", [*me, "ingest", "--sync-interval", str(args.sync_interval)]),
        Child("levels", [*me, "levels"]),
        Child("inference", inference),
        Child("capture", capture),
    ]
    if not args.no_dashboard:
        children.append(Child("dashboard", [*me, "dashboard", "--port", str(args.dashboard_port)]))
    return children


def main(argv: list[str] | None = None) -> int:
    """Start everything; stop everything on Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="soundscape stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".run"),
        help="where own servers, the spool and the demo registry live (default .run)",
    )
    parser.add_argument(
        "--device-id",
        default=os.environ.get("SOUNDSCAPE_CAPTURE_DEVICE_ID"),
        help="the microphone's device id (default: the one device of config/devices.toml, "
        "so that it reports with the registry's location; else 'demo')",
    )
    parser.add_argument(
        "--source",
        choices=["auto", "alsa", "file", "synthetic"],
        default="auto",
        help="auto: the microphone if one is present, else the demo fleet",
    )
    parser.add_argument(
        "--scene-seconds",
        type=float,
        default=20.0,
        help="demo fleet: length of each generated scene, looped (default 20)",
    )
    parser.add_argument("--path", type=Path, help="file or folder to replay (--source file)")
    parser.add_argument("--backend", help="inference backend: transformers, onnx or yamnet")
    parser.add_argument("--model", help="inference model id or local path")
    parser.add_argument("--database-url", default=os.environ.get("SOUNDSCAPE_INGEST_DATABASE_URL"))
    parser.add_argument("--sync-interval", type=float, default=5.0)
    parser.add_argument("--dashboard-port", type=int, default=8501)
    parser.add_argument("--no-dashboard", action="store_true")
    parser.add_argument(
        "--exit-after-replay",
        action="store_true",
        help="stop everything once a file replay is done and results are stored",
    )
    args = parser.parse_args(argv)

    if args.device_id is None:
        args.device_id = default_device_id(Path("config/devices.toml"))
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = MqttSettings()
    servers: list[localservers.Mosquitto | localservers.Postgres] = []
    children: list[Child] = []
    try:
        port, broker = ensure_broker(settings, workdir)
        dsn, pg = ensure_database(args.database_url, workdir)
        servers += [s for s in (broker, pg) if s is not None]
        if args.source == "file" and args.path is None:
            parser.error("--source file needs --path")
        demo: Path | None = None
        if args.source == "auto" and not microphone_present():
            demo = write_registry(workdir / "demo-devices.toml")
            print(
                "stack: no microphone found; running the demo fleet (demo-street, demo-park, "
                f"demo-square; registry {demo}), generated {args.scene_seconds:g} s scenes "
                "in a loop, never written to disk"
            )
        env = dict(os.environ)
        env.update(
            {
                "SOUNDSCAPE_MQTT_HOST": settings.host if broker is None else "127.0.0.1",
                "SOUNDSCAPE_MQTT_PORT": str(port),
                "SOUNDSCAPE_INGEST_DATABASE_URL": dsn,
                "SOUNDSCAPE_DASHBOARD_DATABASE_URL": dsn,
                # One broker for the whole stack: the health page shows its retained statuses.
                "SOUNDSCAPE_DASHBOARD_BROKER_STATUS": "true",
                "SOUNDSCAPE_INGEST_SPOOL": str(workdir / "spool.sqlite3"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if demo is not None:  # the demo's devices are the ones that report: its registry
            env["SOUNDSCAPE_DEVICES_FILE"] = str(demo)
        elif Path("config/devices.toml").exists():
            env.setdefault("SOUNDSCAPE_DEVICES_FILE", str(Path("config/devices.toml").resolve()))
        for name, node in NODES.items():
            env[f"SOUNDSCAPE_{name.upper()}_NODE_ID"] = node
        # One broker session per workdir: a rerun resumes it, a second stack does not steal it.
        digest = hashlib.sha1(str(workdir).encode()).hexdigest()[:10]
        env.setdefault("SOUNDSCAPE_INGEST_CLIENT_ID", f"stack-ingest-{digest}")
        children = build_children(args, demo)
        for child in children:
            if child.name == "capture":
                # Capture last, once the consumers listen: the first seconds get results too.
                fallback = args.backend is None and args.model is None
                wait_online(settings.model_copy(update={"port": port}), children, env, fallback)
            child.start(env)
        if not args.no_dashboard:
            print(f"stack: dashboard on http://127.0.0.1:{args.dashboard_port}")
        print("stack: running; Ctrl-C stops everything")
        return _supervise(children, args)
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        for server in servers:
            server.stop()


def _default_model_unavailable() -> bool:
    """Whether inference, as its settings (the environment's) stand, would fail to load a hub
    model (the default AST) for want of the hub and a cached copy."""
    from services.inference.backends import hub_model_unavailable
    from services.inference.settings import InferenceSettings

    try:
        return hub_model_unavailable(InferenceSettings())
    except ValidationError:
        return False  # inference itself will name the invalid setting


def wait_online(
    settings: MqttSettings,
    children: list[Child],
    env: dict[str, str],
    fallback: bool,
    timeout: float = 180.0,
) -> None:
    """Wait until every started consumer reports online, or has exited, or `timeout` passes.

    With `fallback`, an inference that cannot load its model (no internet for the hub's AST)
    is started again on YAMNet, so that a demo still names what it hears.
    """
    deadline = time.monotonic() + timeout
    waiting = {c.name: c for c in children if c.name in NODES and c.proc is not None}
    while waiting and time.monotonic() < deadline:
        for name, child in list(waiting.items()):
            code = None if child.proc is None else child.proc.poll()
            if code == EXIT_CONFIG and name == "inference" and fallback:
                print(
                    "stack: the AST model cannot be loaded here; falling back to YAMNet "
                    "(--backend yamnet; pass --backend or --model to choose)"
                )
                child.argv = [*child.argv, "--backend", "yamnet"]
                child.start(env)
                fallback = False
                continue
            if code is not None:
                del waiting[name]  # it failed at start and said why; the rest still runs
                continue
            status = asyncio.run(fetch_status(settings, NODES[name], 1.0))
            if verdict(status, time.time(), 3 * settings.status_interval)[0]:
                del waiting[name]
        time.sleep(0.2)
    if waiting:
        print(f"stack: still waiting for {', '.join(waiting)}; starting capture anyway")


def _supervise(children: list[Child], args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    reported: set[str] = set()
    while not stop.wait(1.0):
        for child in children:
            code = None if child.proc is None else child.proc.poll()
            if code is None or child.name in reported:
                continue
            reported.add(child.name)
            print(f"stack: {child.name} exited with code {code}")
            if child.name == "capture" and code == 0 and args.exit_after_replay:
                # Let inference, levels and ingest finish the tail of the replay.
                with contextlib.suppress(KeyboardInterrupt):
                    time.sleep(max(10.0, 3 * args.sync_interval))
                return 0
    return 0
