"""Two sites, one bridge: a server deployment made by `soundscape init --role server` (its
CA and broker certificate) and a sensor deployment made of the bundle `soundscape device add`
wrote (its .env, bridge.conf, ACL and CA). Each site's broker is a real Mosquitto started as
its Compose file starts it (tests/deploy/compose_runner.py: the shipped entrypoint and
mosquitto/ folder, roles `server` and `sensor`, listeners on free local ports), and the
sensor's bridge reaches the server's TLS listener.

Sensor: capture (synthetic source, real time) + levels. Server: inference (tiny AST; the
sensor was provisioned with `--inference server`, so audio crosses the bridge at QoS 0) +
ingest into PostgreSQL. The uplink (a TCP proxy between the bridge and the server's TLS
listener) is cut for 60 s mid-stream. Afterwards every levels result that levels published is
stored exactly once, they reached the server in order, and the server's persistence file never
held audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from services.deploy.bundle import read_env
from services.deploy.devices import main as device
from services.health import fetch_status
from shared.messages import AudioChunk, LevelsResult
from shared.settings import MqttSettings
from tests.deploy.compose_runner import (
    ROOT,
    ComposeRun,
    make_deployment,
    render,
    wait_port_of,
)
from tests.deploy.helpers import Client
from tests.support.servers import process, soundscape

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVICE = "lamp-1"
OUTAGE_S = 60.0
BEFORE_S = 12.0
AFTER_S = 10.0


class Proxy:
    """A TCP relay 127.0.0.1:port -> target that can be cut (open connections closed, new
    ones refused, as when the server's broker is down) and restored.

    Why refused and not accepted-then-closed: Mosquitto 2.0.11's TLS bridge, when its
    connections were closed during the TLS handshake a few times in a row, was seen to spin
    in `keepalive__check` at full CPU and serve nobody (twice in two runs). Refused
    connections do not trigger it.
    """

    def __init__(self, target: int, up: bool = True) -> None:
        self.target = target
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        if up:
            self.restore()

    def restore(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                server.bind(("127.0.0.1", self.port))
                break
            except OSError:
                server.close()
                assert time.monotonic() < deadline, f"port {self.port} was taken meanwhile"
                time.sleep(0.1)
        server.listen()
        server.settimeout(0.1)
        self._listener = server
        self._thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        with self._lock:
            self._listener = None
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        if self._thread is not None:
            # A listening socket closed under a blocked accept() keeps listening on Linux:
            # the accept loop polls, and closes it itself.
            self._thread.join(5)
            self._thread = None

    def _accept(self, server: socket.socket) -> None:
        try:
            while self._listener is server:
                try:
                    inbound, _ = server.accept()
                except TimeoutError:
                    continue
                inbound.settimeout(None)
                try:
                    outbound = socket.create_connection(("127.0.0.1", self.target))
                except OSError:
                    inbound.close()
                    continue
                with self._lock:
                    if self._listener is not server:
                        inbound.close()
                        outbound.close()
                        break
                    self._conns += [inbound, outbound]
                for a, b in ((inbound, outbound), (outbound, inbound)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
        finally:
            server.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def wait_online(settings: MqttSettings, node: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = asyncio.run(fetch_status(settings, node, 1.0))
        if status is not None and status.state == "online":
            return
        time.sleep(0.3)
    raise TimeoutError(f"{node} never came online")


def stored_seqs(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        try:
            rows = conn.execute(
                "SELECT window_seq FROM levels WHERE device = %s ORDER BY window_seq", (DEVICE,)
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [int(r[0]) for r in rows]


def labelled(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        try:
            row = conn.execute(
                "SELECT count(DISTINCT window_seq) FROM detections WHERE device = %s", (DEVICE,)
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def seqs(client: Client) -> list[int]:
    """The sequence numbers of the levels results a client received, in arrival order."""
    return [
        LevelsResult.decode(payload).seq
        for topic, payload in list(client.got)
        if topic.endswith("/levels")
    ]


@dataclass
class Sites:
    """A server deployment (`soundscape init --role server`) and a sensor deployment (the
    bundle `soundscape device add` wrote for it), each broker run as Compose starts it (the
    shipped entrypoint, mosquitto/ folder and role); the bridge goes through `proxy` to the
    server's TLS listener."""

    prefix: str
    config: Path
    bundle: Path
    env: dict[str, str]
    server_env: dict[str, str]
    proxy: Proxy
    server_run: ComposeRun
    sensor_run: ComposeRun

    @property
    def server_port(self) -> int:
        """The server broker's plain listener (its services on the Compose network)."""
        return self.server_run.ports[("mosquitto", 1883)]

    @property
    def sensor_port(self) -> int:
        return self.sensor_run.ports[("mosquitto", 1883)]

    @property
    def server_data(self) -> Path:
        """The server broker's data volume (its mosquitto.db)."""
        return self.server_run.container_path("mosquitto", "/mosquitto/data")

    def health(self, run: ComposeRun, env: dict[str, str]) -> MqttSettings:
        """Settings of the `health` account (every container's check) on `run`'s broker."""
        return MqttSettings(
            port=run.ports[("mosquitto", 1883)],
            username="health",
            password=env["HEALTH_MQTT_PASSWORD"],
            topic_prefix=self.prefix,
        )


def start_broker(run: ComposeRun) -> None:
    """Start `run`'s broker and wait until its own health check passes."""
    run.start("mosquitto")
    verdict = run.services["mosquitto"].wait_healthy(poll_s=0.2)
    assert verdict.healthy, f"{verdict.output}\n{run.services['mosquitto'].tail()}"


def sensor_folder(base: Path, bundle: Path) -> Path:
    """The Pi's deployment folder: a checkout (the shipped mosquitto/ folder) with the
    bundle's contents copied to its top, as docs/devices.md says (`rsync -a bundle/ pi:...`)."""
    folder = base / "sensor"
    shutil.copytree(ROOT / "mosquitto", folder / "mosquitto")
    shutil.copytree(bundle, folder, dirs_exist_ok=True)
    # rsync gives the checkout folder the bundle's 0700; in a container only the mounted
    # config/ folder's own modes count, and here the broker's user must reach it on the host.
    folder.chmod(0o755)
    return folder


@contextlib.contextmanager
def two_sites(base: Path, *, uplink: bool = True) -> Iterator[Sites]:
    """Set up the server and provision the sensor as an operator would, then start both
    brokers: the server's first, so the bridge's first attempt finds it."""
    server = make_deployment(base, "--role", "server", "--server-name", "localhost", name="server")
    server_env = read_env((server / ".env").read_text())
    prefix = server_env["SOUNDSCAPE_MQTT_TOPIC_PREFIX"]
    config = server / "config"
    server_run = ComposeRun(
        render(ROOT / "compose.server.yml", server / ".env", server), base / "server-run"
    )
    proxy = Proxy(server_run.ports[("mosquitto", 8883)], up=uplink)
    args = ["add", DEVICE, "--name", "Lamp 1", "--lat", "53.96", "--lon", "-1.08"]
    assert device([*args, "--config", str(config), "--prefix", prefix,
                   "--server-host", "localhost", "--server-port", str(proxy.port),
                   "--inference", "server"]) == 0  # fmt: skip
    bundle = server / "deploy" / "sensors" / DEVICE
    env = read_env((bundle / ".env").read_text())
    sensor = sensor_folder(base, bundle)
    sensor_config = render(ROOT / "compose.sensor.yml", sensor / ".env", sensor)
    # One account more than the sensor's Compose file gives its broker: `reader` (the shipped
    # ACL's read-only results account, its password in the bundle's .env), for the test to
    # watch the levels results the sensor's broker carries.
    broker_env = sensor_config["services"]["mosquitto"]["environment"]
    broker_env["MQTT_USERS"] += f" reader={env['READER_MQTT_PASSWORD']}"
    sensor_run = ComposeRun(sensor_config, base / "sensor-run")
    sites = Sites(prefix, config, bundle, env, server_env, proxy, server_run, sensor_run)
    try:
        start_broker(server_run)
        wait_port_of(server_run, "mosquitto", 8883)
        start_broker(sensor_run)
        yield sites
    finally:
        proxy.cut()
        sensor_run.down()
        server_run.down()  # a wedged broker ignores SIGTERM: down() kills it


def test_queued_results_survive_a_restart_of_the_sensor_broker(base: Path) -> None:
    with two_sites(base, uplink=False) as sites:
        topic = f"{sites.prefix}/{DEVICE}/levels"
        reader = Client(sites.server_port, "reader", sites.server_env["READER_MQTT_PASSWORD"])
        with contextlib.closing(reader) as tap:
            tap.sub(topic)
            levels = Client(sites.sensor_port, "levels", sites.env["LEVELS_MQTT_PASSWORD"])
            with contextlib.closing(levels):
                assert levels.accepted
                for i in range(5):
                    levels.pub(topic, str(i).encode())
            time.sleep(1.5)  # the base configuration's autosave
            sites.sensor_run.stop("mosquitto")  # the Pi reboots while the uplink is down
            start_broker(sites.sensor_run)
            sites.proxy.restore()
            deadline = time.monotonic() + 30
            while len(tap.got) < 5 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
            assert [p for _, p in tap.got] == [str(i).encode() for i in range(5)]


def test_results_cross_the_bridge_once_and_in_order_after_an_outage(
    base: Path, database: str, tiny_ast: Path
) -> None:
    with two_sites(base) as sites:
        run_pipeline(sites, base, database, tiny_ast)


def run_pipeline(sites: Sites, base: Path, database: str, tiny_ast: Path) -> None:
    prefix, proxy, env_file, server_env = sites.prefix, sites.proxy, sites.env, sites.server_env
    bundle, config, server_data = sites.bundle, sites.config, sites.server_data
    sensor_port, server_port = sites.sensor_port, sites.server_port

    def mqtt_env(port: int, user: str, password: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SOUNDSCAPE_MQTT_HOST="127.0.0.1",
            SOUNDSCAPE_MQTT_PORT=str(port),
            SOUNDSCAPE_MQTT_USERNAME=user,
            SOUNDSCAPE_MQTT_PASSWORD=password,
            SOUNDSCAPE_MQTT_TOPIC_PREFIX=prefix,
            SOUNDSCAPE_MQTT_RECONNECT_MAX="2",
            PYTHONUNBUFFERED="1",
        )
        return env

    logs = base / "logs"
    logs.mkdir()
    # Whether a node is online, asked as the health checks ask (the `health` account).
    s_health = sites.health(sites.sensor_run, env_file)
    v_health = sites.health(sites.server_run, server_env)
    registry = str(bundle / "config" / "devices.toml")
    levels_env = mqtt_env(sensor_port, "levels", env_file["LEVELS_MQTT_PASSWORD"])
    levels_env.update(SOUNDSCAPE_LEVELS_NODE_ID="levels", SOUNDSCAPE_DEVICES_FILE=registry)
    capture_env = mqtt_env(sensor_port, DEVICE, env_file["DEVICE_MQTT_PASSWORD"])
    # The server's first worker, as compose.server.yml names it.
    inference_env = mqtt_env(server_port, "inference-1", server_env["INFERENCE_MQTT_PASSWORD"])
    inference_env.update(SOUNDSCAPE_INFERENCE_NODE_ID="inference-1", HF_HUB_OFFLINE="1")
    ingest_env = mqtt_env(server_port, "ingest", server_env["INGEST_MQTT_PASSWORD"])
    ingest_env.update(
        SOUNDSCAPE_INGEST_NODE_ID="ingest", SOUNDSCAPE_DEVICES_FILE=str(config / "devices.toml")
    )
    ingest = soundscape(
        "ingest", "--database-url", database, "--sync-interval", "0.5",
        "--spool", str(base / "spool.sqlite3"), "--client-id", "ingest",
    )  # fmt: skip
    inference = soundscape("inference", "--backend", "transformers", "--model", str(tiny_ast))
    capture = soundscape("capture", "--device-id", DEVICE, "--source", "synthetic")
    taps: list[Client] = []
    try:
        with (
            process(ingest, ingest_env, logs / "ingest.log"),
            process(inference, inference_env, logs / "inference.log"),
            process(soundscape("levels"), levels_env, logs / "levels.log"),
        ):
            wait_online(v_health, "ingest")
            wait_online(v_health, "inference-1")
            wait_online(s_health, "levels")
            # The deployment's own accounts watch: `reader` the results on either side, and
            # on the sensor (which does not classify, so its `inference` account is idle) that
            # one the audio. Not `health`: wait_online connects as it, and a client id is
            # bound to its user.
            sensor_tap = Client(sensor_port, "reader", env_file["READER_MQTT_PASSWORD"])
            audio_tap = Client(sensor_port, "inference", env_file["INFERENCE_MQTT_PASSWORD"])
            server_tap = Client(server_port, "reader", server_env["READER_MQTT_PASSWORD"])
            taps += [sensor_tap, audio_tap, server_tap]
            assert all(tap.accepted for tap in taps), [tap.rc for tap in taps]
            sensor_tap.sub(f"{prefix}/{DEVICE}/levels")
            audio_tap.sub(f"{prefix}/{DEVICE}/audio", qos=0)
            server_tap.sub(f"{prefix}/{DEVICE}/levels")
            with process(capture, capture_env, logs / "capture.log") as cap:
                wait_online(v_health, DEVICE, 30)  # its status crossed the bridge
                deadline = time.monotonic() + 60
                while len(stored_seqs(database)) < BEFORE_S:
                    assert time.monotonic() < deadline, "no levels reached the server"
                    assert cap.poll() is None, (logs / "capture.log").read_text()
                    time.sleep(0.5)
                proxy.cut()
                cut_at, server_at_cut = len(seqs(sensor_tap)), len(seqs(server_tap))
                time.sleep(OUTAGE_S)
                during = len(seqs(server_tap))
                queued = len(seqs(sensor_tap)) - cut_at
                assert queued >= OUTAGE_S * 0.8, "levels stopped measuring during the outage"
                db_during = (server_data / "mosquitto.db").read_bytes()
                proxy.restore()
                time.sleep(AFTER_S)
            published = sorted(set(seqs(sensor_tap)))
            deadline = time.monotonic() + 60
            while stored_seqs(database) != published:
                assert time.monotonic() < deadline, (
                    f"stored {len(stored_seqs(database))} of {len(published)} levels; missing "
                    f"{sorted(set(published) - set(stored_seqs(database)))[:10]}"
                )
                time.sleep(0.5)
            assert labelled(database) > 0
    finally:
        for tap in taps:
            tap.close()
        sites.server_run.stop("mosquitto")  # writes its database one last time

    # Every measured window once, none lost; they reached the server in order, and the ones
    # measured during the outage arrived only after it.
    stored = stored_seqs(database)
    assert stored == published and len(stored) >= BEFORE_S + OUTAGE_S
    arrived = seqs(server_tap)
    first = list(dict.fromkeys(arrived))
    assert first == sorted(first), "levels crossed the bridge out of order"
    assert set(first) == set(published)
    assert during <= server_at_cut + 3, "results crossed a cut uplink"

    # The server's broker never stored audio (QoS 0, never retained), during or after.
    pcm = [p for t, p in audio_tap.got if t.endswith("/audio")]
    assert pcm, "no audio seen on the sensor"
    sample = AudioChunk.decode(pcm[len(pcm) // 2]).pcm[1000:1064]
    audio_topic = f"{prefix}/{DEVICE}/audio".encode()
    for db in (db_during, (server_data / "mosquitto.db").read_bytes()):
        assert db and audio_topic not in db and sample not in db
