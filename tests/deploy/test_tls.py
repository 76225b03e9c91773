"""TLS for every client: the aiomqtt bus, ingest's paho link and `soundscape health` connect to
a TLS listener with the deployment's CA (and a client certificate where the listener asks for
one), and fail without it. The CA and certificates are made with openssl for this test."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.health import main as health
from services.ingest.link import Link
from shared.messages import Status
from shared.mqtt import MqttBus
from shared.settings import MqttSettings
from shared.tls import client_tls_context
from tests.deploy.helpers import Pki, build_passwd, make_pki, tls_listener
from tests.support import servers

pytestmark = pytest.mark.integration
USERS = {"svc": "pw-svc", "health": "pw-health"}


class Broker:
    def __init__(self, pki: Pki, tls: int, mtls: int) -> None:
        self.pki, self.tls, self.mtls = pki, tls, mtls


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker with a plain listener, a TLS one and one that asks for a client certificate."""
    work = tmp_path_factory.mktemp("tls-broker")
    pki = make_pki(work / "pki")
    users = work / "passwd"
    build_passwd(users, USERS)
    tls, mtls = servers.free_port(), servers.free_port()
    broker = servers.start_mosquitto(
        work,
        f"allow_anonymous false\npassword_file {users}\n"
        + tls_listener(tls, pki)
        + tls_listener(mtls, pki, require_certificate=True),
    )
    servers.wait_port("127.0.0.1", tls)
    servers.wait_port("127.0.0.1", mtls)
    yield Broker(pki, tls, mtls)
    broker.stop()


@pytest.fixture(autouse=True)
def close_failed_handshakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """paho (2.2) does not close the socket of a TLS handshake that failed (the cases that
    must fail here), and the garbage collector warns about it much later: close them."""
    made: list[ssl.SSLSocket] = []
    real = ssl.SSLContext.wrap_socket

    def wrap(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = real(self, *args, **kwargs)
        made.append(sock)
        return sock

    monkeypatch.setattr(ssl.SSLContext, "wrap_socket", wrap)
    yield
    for sock in made:
        sock.close()


def settings(port: int, prefix: str, **tls: object) -> MqttSettings:
    return MqttSettings.model_validate(
        {
            "host": "localhost",
            "port": port,
            "username": "svc",
            "password": USERS["svc"],
            "topic_prefix": prefix,
            "reconnect_min": 0.2,
            "reconnect_max": 0.5,
            **tls,
        }
    )


@contextlib.asynccontextmanager
async def bus_running(s: MqttSettings, node: str = "tls-node") -> AsyncIterator[MqttBus]:
    bus = MqttBus(s, node, "test")
    task = asyncio.create_task(bus.run())
    try:
        yield bus
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def connects(s: MqttSettings, wait_s: float) -> bool:
    async with bus_running(s) as bus:
        try:
            await asyncio.wait_for(bus.connected.wait(), wait_s)
        except TimeoutError:
            return False
        await bus.close()
        return True


def test_settings() -> None:
    assert client_tls_context(MqttSettings()) is None
    assert MqttSettings(ca_file=Path("ca.crt")).uses_tls
    with pytest.raises(ValueError, match="cert_file and key_file"):
        MqttSettings(cert_file=Path("c.crt"))


# A TLS 1.3 broker refuses a missing client certificate after the handshake; paho then closes
# the socket while aiomqtt may still ask the loop to watch it, and asyncio logs that callback's
# "Bad file descriptor" (a race inside the libraries, after the refusal the test checks).
@pytest.mark.allow_log_exceptions
async def test_bus_needs_the_ca(broker: Broker, prefix: str) -> None:
    pki = broker.pki
    assert await connects(settings(broker.tls, prefix, ca_file=pki.ca), 10)
    assert not await connects(settings(broker.tls, prefix, tls=True), 2)  # system store only
    client_cert = {"cert_file": pki.client_cert, "key_file": pki.client_key}
    assert await connects(settings(broker.mtls, prefix, ca_file=pki.ca, **client_cert), 10)
    assert not await connects(settings(broker.mtls, prefix, ca_file=pki.ca), 2)


def link_connects(s: MqttSettings, wait_s: float) -> bool:
    def status(state: str) -> Status:
        return Status(device="tls-ingest", service="ingest", state=state)  # type: ignore[arg-type]

    link = Link(
        s,
        client_id="svc",
        node="tls-ingest",
        topics=[f"{s.topic_prefix}/+/levels"],
        session_expiry=60,
        receive_maximum=10,
        on_delivery=lambda _d: None,
        status=status,
    )
    link.start()
    try:
        return link.connected.wait(wait_s)
    finally:
        link.stop(status("offline"))


def test_ingest_link_needs_the_ca(broker: Broker, prefix: str) -> None:
    pki = broker.pki
    assert link_connects(settings(broker.tls, prefix, ca_file=pki.ca), 10)
    assert not link_connects(settings(broker.tls, prefix, tls=True), 2)
    client_cert = {"cert_file": pki.client_cert, "key_file": pki.client_key}
    assert link_connects(settings(broker.mtls, prefix, ca_file=pki.ca, **client_cert), 10)


async def test_health_over_tls_as_its_own_user(
    broker: Broker, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings(broker.tls, prefix, ca_file=broker.pki.ca)
    env = {
        "SOUNDSCAPE_MQTT_HOST": "localhost",
        "SOUNDSCAPE_MQTT_PORT": str(broker.tls),
        "SOUNDSCAPE_MQTT_TOPIC_PREFIX": prefix,
        # The service's own account is not the check's: a wrong password here must not matter.
        "SOUNDSCAPE_MQTT_USERNAME": "svc",
        "SOUNDSCAPE_MQTT_PASSWORD": "not-the-password",
        "SOUNDSCAPE_HEALTH_USERNAME": "health",
        "SOUNDSCAPE_HEALTH_PASSWORD": USERS["health"],
        "SOUNDSCAPE_MQTT_CA_FILE": str(broker.pki.ca),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    node = ["--node", "tls-node", "--wait", "2"]
    async with bus_running(s) as bus:
        await asyncio.wait_for(bus.connected.wait(), 10)
        await bus.drained(5)
        assert await asyncio.to_thread(health, node) == 0
        monkeypatch.delenv("SOUNDSCAPE_MQTT_CA_FILE")
        monkeypatch.setenv("SOUNDSCAPE_MQTT_TLS", "true")
        assert await asyncio.to_thread(health, node) == 1  # the system store lacks the test CA
        monkeypatch.setenv("SOUNDSCAPE_MQTT_CA_FILE", str(broker.pki.ca))
        monkeypatch.delenv("SOUNDSCAPE_HEALTH_USERNAME")
        assert await asyncio.to_thread(health, node) == 1  # as svc, with the wrong password
        await bus.close()
