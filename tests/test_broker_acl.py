"""The deployment broker's ACL: no anonymous access, each device writes only its own topics,
result readers and ingest never see audio. Runs mosquitto with the ACL `soundscape init`
renders (services/deploy/acl.py), for the default prefix and for a deeper one."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from services.deploy.acl import HA_DISCOVERY
from services.deploy.init import write_acl
from tests.support import servers

pytestmark = pytest.mark.integration
USERS = {
    "yor": "pw-yor",
    "abc": "pw-abc",
    "inference": "pw-inf",
    "inference-2": "pw-inf",
    "ingest": "pw-ingest",
    "reader": "pw-reader",
    "health": "pw-health",
    "homeassistant": "pw-ha",
    "notify": "pw-notify",
}


@dataclass
class AclBroker:
    port: int
    prefix: str


@pytest.fixture(scope="module", params=["soundscape", "city-7/noise/soundscape"])
def acl_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AclBroker]:
    work = tmp_path_factory.mktemp("acl-broker")
    passwd = work / "passwd"
    passwd.touch()
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    acl = write_acl(work / "config", request.param)
    broker = servers.start_mosquitto(
        work, f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}"
    )
    yield AclBroker(broker.port, request.param)
    broker.stop()


def test_rendered_acl_names_only_its_prefix(tmp_path: Path) -> None:
    text = write_acl(tmp_path, "city-7/noise").read_text()
    topics = [
        line.split()[-1] for line in text.splitlines() if line.startswith(("topic", "pattern"))
    ]
    # Besides the prefix: Home Assistant's discovery topics (its own prefix, not ours).
    allowed = (
        "city-7/noise/",
        "$share/inference/city-7/noise/",
        "$share/birdnet/city-7/noise/",
        "$SYS/",
        f"{HA_DISCOVERY}/",
    )
    assert topics and all(t.startswith(allowed) for t in topics)
    assert "soundscape/" not in text.replace("soundscape init", "")


class Client:
    """A blocking paho client that records what it receives."""

    def __init__(self, port: int, user: str | None, password: str | None = None) -> None:
        self.got: list[str] = []
        self.connected = threading.Event()
        self.rc: object = None
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, m: self.got.append(m.topic)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.connected.wait(5)

    def _on_connect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.rc = rc
        self.connected.set()

    @property
    def accepted(self) -> bool:
        return not getattr(self.rc, "is_failure", True)

    def sub(self, topic: str) -> None:
        self.c.subscribe(topic, qos=1)

    def pub(self, topic: str) -> None:
        self.c.publish(topic, b"x", qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_anonymous_and_wrong_password_are_refused(acl_broker: AclBroker) -> None:
    for user, password in [(None, None), ("yor", "wrong")]:
        client = Client(acl_broker.port, user, password)
        assert not client.accepted
        client.close()


def test_devices_write_only_their_own_topics_and_readers_never_see_audio(
    acl_broker: AclBroker,
) -> None:
    p = acl_broker.prefix
    names = ["inference", "inference-2", "ingest", "reader", "health", "yor"]
    clients = {name: Client(acl_broker.port, name, USERS[name]) for name in names}
    inference, worker, ingest, reader, health, yor = clients.values()
    try:
        assert all(c.accepted for c in clients.values())
        inference.sub(f"{p}/+/audio")
        worker.sub(f"$share/inference/{p}/+/audio")
        for consumer in (ingest, reader, health):
            consumer.sub(f"{p}/#")

        time.sleep(0.3)
        yor.pub(f"{p}/yor/audio")  # allowed
        yor.pub(f"{p}/abc/audio")  # another device's topic: dropped by the broker
        yor.pub(f"{p}/yor/levels")  # its own results (a sensor that measures itself)
        yor.pub(f"{p}/abc/labels")  # another device's results: dropped
        yor.pub(f"{p}/yor/status")
        inference.pub(f"{p}/abc/labels")  # allowed
        reader.pub(f"{p}/abc/levels")  # read-only: dropped
        time.sleep(0.5)
        assert inference.got == worker.got == [f"{p}/yor/audio"]
        results = [f"{p}/yor/levels", f"{p}/yor/status", f"{p}/abc/labels"]
        assert ingest.got == reader.got == results
        assert health.got == [f"{p}/yor/status"]
    finally:
        for client in clients.values():
            client.close()


def test_homeassistant_and_notify_read_what_they_need_and_write_only_theirs(
    acl_broker: AclBroker,
) -> None:
    p = acl_broker.prefix
    names = ["homeassistant", "notify", "reader", "yor"]
    clients = {name: Client(acl_broker.port, name, USERS[name]) for name in names}
    ha, notify, reader, yor = clients.values()
    config = f"{HA_DISCOVERY}/sensor/n_yor/laeq/config"
    try:
        assert all(c.accepted for c in clients.values())
        for client in (ha, notify):
            client.sub(f"{p}/#")
            client.sub(f"{HA_DISCOVERY}/#")
        reader.sub(f"{p}/+/homeassistant")
        reader.sub(f"{HA_DISCOVERY}/#")
        time.sleep(0.3)
        for leaf in ("audio", "levels", "events"):
            yor.pub(f"{p}/yor/{leaf}")
        ha.pub(f"{p}/yor/homeassistant")  # its JSON state
        ha.pub(config)  # a discovery config
        ha.pub(f"{p}/yor/levels")  # not its result: dropped
        notify.pub(f"{p}/yor/events")  # read-only: dropped
        reader.pub(f"{HA_DISCOVERY}/status")  # Home Assistant's birth message
        time.sleep(0.5)
        state, birth = f"{p}/yor/homeassistant", f"{HA_DISCOVERY}/status"
        assert sorted(ha.got) == sorted(
            [f"{p}/yor/levels", f"{p}/yor/events", state, config, birth]
        )
        assert notify.got == [f"{p}/yor/events"]
        assert sorted(reader.got) == sorted([state, config, birth])
    finally:
        for client in clients.values():
            client.close()
