"""The shipped base broker configuration (mosquitto/mosquitto.conf), run as shipped: only its
three paths moved to a temp folder and a listener added. Client ids are bound to users (a
device cannot take over ingest's session), packets beyond MAX_PACKET_BYTES are refused, and
queued results survive a restart."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from services.health import fetch_status
from shared.messages.base import MAX_PACKET_BYTES
from shared.settings import MqttSettings
from tests.ingest.helpers import count, ingest_cmd, ingest_env, labels, level, rows, wait_for
from tests.support import servers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
BASE_CONF = ROOT / "mosquitto" / "mosquitto.conf"
PREFIX = "soundscape"
USERS = {
    "ingest": "pw-ingest",
    "health": "pw-health",
    "inference": "pw-inference",
    "yor": "pw-yor",  # a device
    "abc": "pw-abc",  # another device, the attacker
}
# The deployment's ACL is rendered by `soundscape init`; this one grants what the tests need.
ACL = f"""\
pattern read {PREFIX}/+/status
pattern write {PREFIX}/%u/#

user ingest
topic read {PREFIX}/#

user inference
topic read {PREFIX}/+/audio
"""
SESSION = 7 * 24 * 3600


def conf_value(key: str) -> str:
    """The value of `key` in the shipped base conf (exactly one such line)."""
    found = re.findall(rf"^{key}\s+(\S+)\s*$", BASE_CONF.read_text(), re.MULTILINE)
    assert len(found) == 1, f"{key}: {found}"
    return str(found[0])


def broker_conf(work: Path) -> str:
    """The base conf with its paths under `work` (each must be there to be moved)."""
    text = BASE_CONF.read_text()
    moves = {
        "password_file /mosquitto/data/passwd": f"password_file {work / 'passwd'}",
        "acl_file /etc/soundscape/broker/acl": f"acl_file {work / 'acl'}",
        "persistence_location /mosquitto/data/": f"persistence_location {work}/",
    }
    for old, new in moves.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    # a file log is written as it goes (stdout to a file is buffered): the tests read it
    text = text.replace("log_dest stdout", f"log_dest file {work / 'broker.log'}")
    assert not re.search(r"^\s*listener\b", text, re.MULTILINE), "the base conf has no listener"
    return text


def start_broker(work: Path) -> servers.Mosquitto:
    work.mkdir(parents=True, exist_ok=True)
    passwd = work / "passwd"
    passwd.touch()
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    (work / "acl").write_text(ACL)
    return servers.start_mosquitto(work, broker_conf(work))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[servers.Mosquitto]:
    b = start_broker(tmp_path / "broker")
    yield b
    b.stop()


class Client:
    """A paho MQTT 5 client as `user`: records deliveries and disconnections."""

    def __init__(
        self,
        port: int,
        user: str,
        client_id: str = "",
        *,
        persistent: bool = False,
        clean_start: bool = True,
    ) -> None:
        self.got: list[mqtt.MQTTMessage] = []
        self.disconnects = 0
        self.connected = threading.Event()
        self.reason: object = None
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, USERS[user])
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda _c, _u, m: self.got.append(m)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if persistent:
            props.SessionExpiryInterval = SESSION
        self.c.connect("127.0.0.1", port, clean_start=clean_start, properties=props)
        self.c.loop_start()
        assert self.connected.wait(10), f"{user} got no CONNACK"

    def _on_connect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.reason = rc
        self.connected.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.disconnects += 1

    @property
    def accepted(self) -> bool:
        return not getattr(self.reason, "is_failure", True)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *_: done.set()
        self.c.subscribe(topic, qos=1)
        assert done.wait(5), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self.c.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def publish_all(client: Client, windows: range) -> None:
    """Labels and levels for each window, QoS 1, until every PUBACK is in."""
    infos = []
    for seq in windows:
        for msg in (labels(seq), level(seq)):
            infos.append(client.publish(msg.topic(PREFIX), msg.encode()))
    for info in infos:
        info.wait_for_publish(30)
        assert info.is_published()


def takeover(port: int, client_id: str) -> None:
    """A device connects with `client_id` and a clean start, then leaves."""
    attacker = Client(port, "abc", client_id, clean_start=True)
    assert attacker.accepted  # accepted, but as itself: its id is its user name
    attacker.close()


def test_max_packet_size_is_max_packet_bytes() -> None:
    assert int(conf_value("max_packet_size")) == MAX_PACKET_BYTES == 16 * 1024 * 1024 + 64 * 1024


def test_base_conf_binds_ids_to_users_and_needs_passwords() -> None:
    assert conf_value("use_username_as_clientid") == "true"
    assert conf_value("allow_anonymous") == "false"
    assert conf_value("password_file") == "/mosquitto/data/passwd"
    assert conf_value("acl_file") == "/etc/soundscape/broker/acl"
    assert conf_value("persistence") == "true"
    # a change count when true: 1 wrote the whole database after every message
    assert conf_value("autosave_on_changes") == "false"


def test_a_packet_beyond_max_packet_size_is_refused_one_below_is_delivered(
    broker: servers.Mosquitto,
) -> None:
    topic = f"{PREFIX}/yor/audio"
    reader = Client(broker.port, "inference")
    device = Client(broker.port, "yor")
    try:
        reader.subscribe(topic)
        # the whole PUBLISH packet (header, topic, properties, payload) counts
        device.publish(topic, b"\x01" * (MAX_PACKET_BYTES - 1024)).wait_for_publish(30)
        wait_for("the large chunk", lambda: len(reader.got) == 1, 30)
        assert len(reader.got[0].payload) == MAX_PACKET_BYTES - 1024

        device.publish(topic, b"\x02" * (MAX_PACKET_BYTES + 1))
        wait_for("the broker to close the connection", lambda: device.disconnects >= 1, 30)
        assert len(reader.got) == 1
        assert reader.disconnects == 0
    finally:
        reader.close()
        device.close()


def test_queued_results_survive_a_restart(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "broker")
    try:
        ingest = Client(broker.port, "ingest", "ingest-1", persistent=True, clean_start=False)
        ingest.subscribe(f"{PREFIX}/+/levels")
        ingest.close()
        device = Client(broker.port, "yor")
        msgs = [level(seq) for seq in range(200)]
        infos = [device.publish(m.topic(PREFIX), m.encode()) for m in msgs]
        for info in infos:
            info.wait_for_publish(10)
        device.close()

        broker.stop()  # SIGTERM: Mosquitto writes its database on the way out
        broker.start()

        ingest = Client(broker.port, "ingest", "ingest-1", persistent=True, clean_start=False)
        wait_for("the queued results", lambda: len(ingest.got) >= 200, 15)
        ingest.close()
        assert [m.payload for m in ingest.got] == [m.encode() for m in msgs]
    finally:
        broker.stop()


def ingest_online(port: int) -> bool:
    settings = MqttSettings(
        host="127.0.0.1",
        port=port,
        topic_prefix=PREFIX,
        username="health",
        password=USERS["health"],
    )
    status = asyncio.run(fetch_status(settings, "ingest", 0.5))
    return status is not None and status.state == "online"


def broker_log(broker: servers.Mosquitto) -> str:
    return (broker.config.parent / "broker.log").read_text()


def connections(broker: servers.Mosquitto, user: str) -> list[str]:
    """The client id of each connection the broker accepted from `user`, in order."""
    pattern = rf"New client connected from \S+ as (\S+) \(.*u'{re.escape(user)}'\)"
    return re.findall(pattern, broker_log(broker))


@pytest.mark.slow
def test_a_device_cannot_take_over_ingest_session(
    tmp_path: Path, broker: servers.Mosquitto, database: str
) -> None:
    """What failed before: a device connecting with ingest's client id and a clean start
    discarded ingest's 800 queued results, and ten such connects while ingest ran lost 903 of
    3,200. Ingest runs as itself (user `ingest`, client id `ingest-1` as Compose gave it)."""
    port = broker.port
    ingest_log = tmp_path / "ingest.log"
    cmd = ingest_cmd(
        "--database-url",
        database,
        "--sync-interval",
        "0.5",
        "--spool",
        str(tmp_path / "spool.sqlite3"),
        "--client-id",
        "ingest-1",
        "--node-id",
        "ingest",
    )
    env = ingest_env(
        port,
        PREFIX,
        SOUNDSCAPE_MQTT_USERNAME="ingest",
        SOUNDSCAPE_MQTT_PASSWORD=USERS["ingest"],
    )
    device = Client(port, "yor")
    try:
        # ingest subscribes (a persistent session), then goes away
        with servers.process(cmd, env, ingest_log):
            wait_for("ingest online", lambda: ingest_online(port), 60)

        publish_all(device, range(400))  # 800 results queued for the absent ingest
        for client_id in ("ingest-1", "ingest"):  # the id ingest sent, the id it has
            takeover(port, client_id)

        with servers.process(cmd, env, ingest_log) as proc:
            wait_for("the 400 queued windows stored", lambda: count(database, "levels") == 400)
            # ten takeover attempts while ingest runs and results flow
            for attempt in range(10):
                windows = range(400 + 40 * attempt, 440 + 40 * attempt)
                sender = threading.Thread(target=publish_all, args=(device, windows))
                sender.start()
                takeover(port, ("ingest-1", "ingest")[attempt % 2])
                sender.join(60)
                assert not sender.is_alive()
            wait_for("all 800 windows stored", lambda: count(database, "levels") == 800, 60)
            wait_for("their labels", lambda: count(database, "detections") == 800 * 3, 30)
            assert proc.poll() is None
            ingest_connects = connections(broker, "ingest")

        stored = rows(database, "SELECT window_seq FROM levels ORDER BY 1")
        assert [s for (s,) in stored] == list(range(800))
        # the device connected as itself each time; ingest once per start, never thrown out
        assert connections(broker, "abc") == ["abc"] * 12
        assert ingest_connects == ["ingest"] * 2
        assert "Client ingest already connected" not in broker_log(broker)
        assert "lost the broker" not in ingest_log.read_text()
    finally:
        device.close()
