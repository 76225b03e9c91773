"""The deployment broker configuration: no anonymous access, each device writes only its own
topics, result readers never see audio. Runs mosquitto with mosquitto/acl as shipped."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import servers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
USERS = {"yor": "pw-yor", "abc": "pw-abc", "inference": "pw-inf", "reader": "pw-reader"}


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    work = tmp_path_factory.mktemp("acl-broker")
    passwd = work / "passwd"
    passwd.touch()
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    broker = servers.start_mosquitto(
        work,
        f"allow_anonymous false\npassword_file {passwd}\nacl_file {ROOT / 'mosquitto' / 'acl'}",
    )
    yield broker.port
    broker.stop()


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


def test_anonymous_and_wrong_password_are_refused(acl_broker: int) -> None:
    for user, password in [(None, None), ("yor", "wrong")]:
        client = Client(acl_broker, user, password)
        assert not client.accepted
        client.close()


def test_devices_write_only_their_own_topics_and_readers_never_see_audio(
    acl_broker: int,
) -> None:
    inference = Client(acl_broker, "inference", USERS["inference"])
    reader = Client(acl_broker, "reader", USERS["reader"])
    yor = Client(acl_broker, "yor", USERS["yor"])
    try:
        assert inference.accepted and reader.accepted and yor.accepted
        inference.sub("soundscape/+/audio")
        reader.sub("soundscape/#")

        time.sleep(0.3)
        yor.pub("soundscape/yor/audio")  # allowed
        yor.pub("soundscape/abc/audio")  # another device's topic: dropped by the broker
        yor.pub("soundscape/yor/labels")  # a device may not forge results
        inference.pub("soundscape/yor/labels")  # allowed
        time.sleep(0.5)
        assert inference.got == ["soundscape/yor/audio"]
        assert reader.got == ["soundscape/yor/labels"]
    finally:
        for client in (inference, reader, yor):
            client.close()
