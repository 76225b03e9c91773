"""Compose, run for real without an engine (tests/deploy/compose_runner.py says how).

`soundscape init` writes a deployment's .env and ACL (and a server's TLS files);
`docker-compose config` renders a topology's file with it; every service then starts as a
local process with its own command and environment, the broker through the shipped
entrypoint and mosquitto/ folder, and each passes its own health check. Results reach
PostgreSQL through ingest's writer role and are read back with the read-only role. A copy
with the broker check's password removed (the defect this replaced) is reported unhealthy.
"""

from __future__ import annotations

import copy
import os
import pwd
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from services.deploy.init import make_server_tls
from services.inference.settings import default_yamnet_dir
from services.localservers import free_port
from shared.messages import AudioChunk
from tests.deploy.compose_runner import (
    ROOT,
    ComposeRun,
    HealthVerdict,
    Service,
    make_deployment,
    mounts,
    render,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DEVICE = "yor"


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


@pytest.fixture
def deployment(base: Path) -> Path:
    """An all-in-one deployment of device yor."""
    return make_deployment(base, "--device-id", DEVICE)


def yamnet_model() -> Path:
    """The YAMNet model, as tests/inference's fixture provides it (fetched once, cached)."""
    from services.inference.yamnet_fetch import fetch

    return fetch(Path(os.environ.get("SOUNDSCAPE_INFERENCE_YAMNET_DIR") or default_yamnet_dir()))


def on_named_volume(svc: Service, container_path: str) -> bool:
    return any(
        m.volume and (container_path + "/").startswith(m.target.rstrip("/") + "/")
        for m in mounts(svc.spec)
    )


def default_services(run: ComposeRun) -> list[str]:
    """What `docker compose up` starts: every service but those behind a profile."""
    return [name for name, svc in run.services.items() if not svc.spec.get("profiles")]


def published(spec: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, container port) of each published port, in either rendered form."""
    found = []
    for port in spec.get("ports", []):
        if isinstance(port, dict):
            found.append((str(port.get("host_ip", "")), int(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            found.append((parts[0] if len(parts) == 3 else "", int(parts[-1])))
    return found


def test_sensor_and_server_topologies_render(deployment: Path) -> None:
    env = deployment / ".env"
    sensor = render(ROOT / "compose.sensor.yml", env, deployment)["services"]
    assert set(sensor) == {"mosquitto", "capture", "levels", "inference"}
    assert sensor["inference"]["profiles"] == ["local-inference"]
    assert sensor["mosquitto"]["environment"]["MOSQUITTO_ROLE"] == "sensor"
    server = render(ROOT / "compose.server.yml", env, deployment)["services"]
    assert {"inference-1", "inference-2", "ingest", "dashboard", "postgres"} <= set(server)
    assert "capture" not in server and "levels" not in server
    assert published(server["mosquitto"]) == [("", 8883)]  # 1883 stays on the network
    assert published(server["dashboard"]) == [("127.0.0.1", 8501)]
    assert published(sensor["mosquitto"]) == [("127.0.0.1", 1883)]
    # The integrations are behind profiles, each as its own broker user (= its node id).
    for config in (server, render(ROOT / "docker-compose.yml", env, deployment)["services"]):
        for name, short in (("homeassistant", "HA"), ("notify", "NOTIFY")):
            assert config[name]["profiles"] == [name]
            spec_env = config[name]["environment"]
            assert spec_env["SOUNDSCAPE_MQTT_USERNAME"] == name
            assert spec_env[f"SOUNDSCAPE_{short}_NODE_ID"] == name
            assert spec_env["SOUNDSCAPE_MQTT_PASSWORD"]
            assert "ports" not in config[name]
    workers = [server[f"inference-{i}"]["environment"] for i in (1, 2)]
    assert [w["SOUNDSCAPE_MQTT_USERNAME"] for w in workers] == ["inference-1", "inference-2"]
    assert workers[0]["SOUNDSCAPE_MQTT_PASSWORD"] == workers[1]["SOUNDSCAPE_MQTT_PASSWORD"]


def reader_dsn(run: ComposeRun, env: dict[str, str]) -> str:
    """The read-only role's DSN on the run's PostgreSQL."""
    assert run.postgres is not None
    return (
        f"postgresql://soundscape_reader:{env['READER_DB_PASSWORD']}"
        f"@127.0.0.1:{run.postgres.port}/soundscape"
    )


def stored(dsn: str, device: str, tables: tuple[str, ...], limit_s: float = 75) -> list[int]:
    """Rows of `device` in each table, read as the read-only role, once all have some (or
    at the limit: ingest syncs every 30 s)."""
    deadline = time.monotonic() + limit_s
    while True:
        counts = []
        with psycopg.connect(dsn) as conn:
            for table in tables:
                query = psycopg.sql.SQL("SELECT count(*) FROM {} WHERE device = %s")
                row = conn.execute(query.format(psycopg.sql.Identifier(table)), (device,))
                found = row.fetchone()
                counts.append(int(found[0]) if found else 0)
        if all(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(2)


def assert_healthy(run: ComposeRun, verdicts: dict[str, HealthVerdict], expected: set[str]) -> None:
    unhealthy = {n: v.output for n, v in verdicts.items() if not v.healthy}
    logs = "\n".join(f"--- {n}\n{run.services[n].tail()}" for n in unhealthy)
    assert not unhealthy, f"{unhealthy}\n{logs}"
    assert set(verdicts) == expected
    # As in the container, Mosquitto runs as its own user once the entrypoint is done.
    broker = run.services["mosquitto"].proc
    assert broker is not None
    if os.geteuid() == 0:
        uid = Path(f"/proc/{broker.pid}/status").read_text().split("Uid:")[1].split()[0]
        assert int(uid) == pwd.getpwnam("mosquitto").pw_uid
    for name, svc in run.services.items():
        assert "Traceback" not in svc.tail(10_000), f"{name}:\n{svc.tail()}"


def test_all_in_one_runs_as_compose_starts_it(deployment: Path) -> None:
    env = read_env(deployment / ".env")
    config = render(ROOT / "docker-compose.yml", deployment / ".env", deployment)
    run = ComposeRun(config, deployment.parent / "run")
    t0 = time.monotonic()
    # Inference's model, where its first start would have fetched it (the model-cache volume).
    cache = run.container_path("inference", "/home/soundscape/.cache/soundscape/yamnet")
    shutil.copytree(yamnet_model(), cache)
    # Durable state lives on each service's own named volume, never in the container layer.
    for name, key in [
        ("levels", "SOUNDSCAPE_LEVELS_STATE_DIR"),
        ("inference", "SOUNDSCAPE_INFERENCE_STATE_DIR"),
        ("ingest", "SOUNDSCAPE_INGEST_SPOOL"),
    ]:
        svc = run.services[name]
        path = svc.env[key].removeprefix(str(svc.root))
        assert on_named_volume(svc, path), f"{name}'s {key}={path} is on no volume"
    try:
        verdicts = run.up(default_services(run))
        services = {"mosquitto", "postgres", "capture", "inference", "levels", "ingest"}
        assert_healthy(run, verdicts, services | {"dashboard"})
        assert published(run.services["dashboard"].spec) == [("127.0.0.1", 8501)]

        # Results through the least-privilege roles: ingest writes as soundscape_ingest (its
        # DSN); the read-only role reads them back and may not write.
        reader = reader_dsn(run, env)
        counts = stored(reader, DEVICE, ("levels", "detections"))
        assert all(counts), f"levels, detections stored: {counts}\n{run.services['ingest'].tail()}"
        with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM levels_packed")
        with pytest.raises(psycopg.OperationalError):
            bad = reader.replace(env["READER_DB_PASSWORD"], "wrong")
            psycopg.connect(bad).close()

        # The defect this file replaced: the broker's check without its password.
        spec = copy.deepcopy(config["services"]["mosquitto"])
        del spec["environment"]["HEALTH_MQTT_PASSWORD"]
        broken = run.variant("mosquitto", spec)
        verdict = broken.wait_healthy(poll_s=0.2)
        assert not verdict.healthy, verdict.output
        assert "not authorised" in verdict.output.lower(), verdict.output
    finally:
        run.down()
    assert time.monotonic() - t0 < 240


def tls_client(port: int, ca: Path, user: str, password: str) -> mqtt.Client:
    """A connected paho client over TLS that verifies the server as `localhost`."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.tls_set(ca_certs=str(ca))
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect("localhost", port)
    client.loop_start()
    assert connected.wait(10), f"{user} could not connect over TLS"
    return client


def test_server_takes_a_sensor_over_tls(base: Path) -> None:
    """The server topology: a provisioned device publishes audio to the TLS listener with
    the CA `init` made; the two inference workers share it; a reader on the same listener
    gets the labels and never audio. (Storage through the roles: the all-in-one test.)"""
    folder = make_deployment(base, "--role", "server", "--server-name", "localhost")
    env = read_env(folder / ".env")
    device, password = "lamp-9", "pw-lamp-9"
    # What `soundscape device add` leaves for the broker: a hashed line per device.
    devices = folder / "config" / "broker" / "devices.passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(devices), device, password], check=True)
    config = render(ROOT / "compose.server.yml", folder / ".env", folder)
    run = ComposeRun(config, base / "run")
    cache = run.container_path("inference-1", "/home/soundscape/.cache/soundscape/yamnet")
    shutil.copytree(yamnet_model(), cache)
    try:
        verdicts = run.up(default_services(run))
        workers = {"inference-1", "inference-2"}
        assert_healthy(run, verdicts, {"mosquitto", "postgres", "ingest", "dashboard"} | workers)

        port, ca = run.ports[("mosquitto", 8883)], folder / "config" / "tls" / "ca.crt"
        prefix = env["SOUNDSCAPE_MQTT_TOPIC_PREFIX"]
        got: list[str] = []
        labels = threading.Event()
        reader = tls_client(port, ca, "reader", env["READER_MQTT_PASSWORD"])
        sensor = tls_client(port, ca, device, password)
        try:

            def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
                got.append(msg.topic)
                if msg.topic.endswith("/labels"):
                    labels.set()

            reader.on_message = on_message
            reader.subscribe(f"{prefix}/#", qos=1)
            time.sleep(0.5)
            start = time.time() - 10
            noise = np.random.default_rng(0).normal(0, 3000, 16000).astype("<i2").tobytes()
            for seq in range(4):
                chunk = AudioChunk(device=device, seq=seq, start=start + seq, rate=16000, pcm=noise)
                sensor.publish(chunk.topic(prefix), chunk.encode(), qos=0).wait_for_publish(5)
            assert labels.wait(30), (
                f"no labels; reader got {got}\n{run.services['inference-1'].tail()}"
            )
            assert not [t for t in got if t.endswith("/audio")]
        finally:
            for client in (reader, sensor):
                client.disconnect()
                client.loop_stop()
    finally:
        run.down()


def test_sensor_runs_with_its_bridge_configured(base: Path) -> None:
    """The sensor topology with local inference: its broker composes the sensor role and the
    bridge (here to a server that does not answer: the Pi's services must not care), and
    capture, levels and inference pass their health checks against it."""
    folder = make_deployment(base, "--role", "sensor", "--device-id", DEVICE)
    env = read_env(folder / ".env")
    assert env["COMPOSE_PROFILES"] == "local-inference"
    ca = base / "ca"
    make_server_tls(ca / "tls", ca / "key", "localhost")
    (folder / "config" / "tls").mkdir()
    shutil.copy(ca / "tls" / "ca.crt", folder / "config" / "tls" / "ca.crt")
    prefix = env["SOUNDSCAPE_MQTT_TOPIC_PREFIX"]
    # The shape of what `soundscape device add` renders (mosquitto/bridge.conf.template).
    (folder / "config" / "bridge.conf").write_text(
        f"connection {DEVICE}\naddress 127.0.0.1:{free_port()}\n"
        f"remote_clientid {DEVICE}\nremote_username {DEVICE}\nremote_password unused\n"
        "cleansession false\nnotifications false\nrestart_timeout 2 15\n"
        "bridge_cafile /etc/soundscape/tls/ca.crt\n"
        f"topic {prefix}/{DEVICE}/levels out 1\n"
    )
    config = render(ROOT / "compose.sensor.yml", folder / ".env", folder)
    run = ComposeRun(config, base / "run")
    cache = run.container_path("inference", "/home/soundscape/.cache/soundscape/yamnet")
    shutil.copytree(yamnet_model(), cache)
    try:
        verdicts = run.up()
        assert_healthy(run, verdicts, {"mosquitto", "capture", "levels", "inference"})
        composed = (
            run.services["mosquitto"].root / "mosquitto" / "run" / "mosquitto.conf"
        ).read_text()
        assert f"connection {DEVICE}" in composed
        assert (
            f"bridge_cafile {run.services['mosquitto'].root}/mosquitto/run/tls/ca.crt" in composed
        )
    finally:
        run.down()
