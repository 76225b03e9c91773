"""`soundscape device add|list|remove` against a real Mosquitto: the credentials it makes are
accepted, the device may write only its own topics and never read audio, and after `remove`
it can no longer connect. Bad requests exit 2 and change no file.

The ACL here is a small fixture of this test's own, shaped like the deployment's (devices by
`%u`): the real one is rendered by `soundscape init` (services/deploy/acl.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.deploy import passwd
from services.deploy.bundle import read_env
from services.deploy.devices import main
from services.deploy.registry_text import parse
from tests.deploy.helpers import ROOT, Client, acl_fixture, base_conf, build_passwd
from tests.support import servers

PREFIX = "fleet/soundscape"
SERVICES = {"inference": "pw-inference", "reader": "pw-reader"}


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    """A deployment folder with the shipped example registry and a CA."""
    config = tmp_path / "site" / "config"
    (config / "tls").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "devices.toml", config / "devices.toml")
    (config / "tls" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\ntest\n")
    return config


def device(config: Path, *args: str) -> int:
    return main([*args, "--config", str(config)])


def add(config: Path, device_id: str, *extra: str) -> int:
    return device(
        config, "add", device_id, "--name", f"Lamp {device_id}", "--lat", "53.96",
        "--lon", "-1.08", "--server-host", "server.example", "--prefix", PREFIX, *extra,
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mode)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_hashes_are_mosquitto_passwd_compatible(tmp_path: Path) -> None:
    made = tmp_path / "passwd"
    made.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(made), "someone", "s3cret"], check=True)
    theirs = passwd.parse(made.read_text())["someone"]
    assert theirs.startswith("$7$101$")
    assert passwd.verify(theirs, "s3cret") and not passwd.verify(theirs, "s3cret!")
    ours = passwd.hash_password("s3cret")
    assert ours.split("$")[1:3] == ["7", "101"] and passwd.verify(ours, "s3cret")
    assert passwd.hash_password("s3cret") != ours  # a fresh salt each time


def test_add_writes_registry_credentials_and_bundle(deployment: Path) -> None:
    before = (deployment / "devices.toml").read_text()
    assert add(deployment, "lamp-7", "--gain", "30", "--inference", "server") == 0
    registry = (deployment / "devices.toml").read_text()
    assert registry.startswith(before)  # comments and the other device kept as written
    devices = parse(registry)
    assert set(devices) == {"yor", "lamp-7"}
    cal = devices["lamp-7"].calibration
    assert cal is not None and cal.gain_db == 30 and cal.sensitivity_dbv == -18
    users = deployment / "broker" / "devices.passwd"
    assert users.stat().st_mode & 0o777 == 0o600
    bundle = deployment.parent / "deploy" / "sensors" / "lamp-7"
    env = read_env((bundle / ".env").read_text())
    assert passwd.verify(passwd.parse(users.read_text())["lamp-7"], env["DEVICE_MQTT_PASSWORD"])
    assert env["SOUNDSCAPE_DEVICE_ID"] == "lamp-7" and env["SENSOR_INFERENCE"] == "server"
    assert env["SOUNDSCAPE_MQTT_TOPIC_PREFIX"] == PREFIX and env["SERVER_PORT"] == "8883"
    secrets = [v for k, v in env.items() if k.endswith("_PASSWORD")]
    assert len(secrets) == len(set(secrets)) >= 6 and all(len(s) >= 32 for s in secrets)
    bridge = (bundle / "config" / "bridge.conf").read_text()
    assert (bundle / "config" / "bridge.conf").stat().st_mode & 0o777 == 0o600
    assert (bundle / ".env").stat().st_mode & 0o777 == 0o600
    # The Pi mounts config/ into containers whose users are not root.
    assert [(bundle / d).stat().st_mode & 0o755 for d in ("config", "config/broker")] == [0o755] * 2
    for line in (
        "address server.example:8883",
        "remote_username lamp-7",
        "remote_clientid lamp-7",
        f"remote_password {env['DEVICE_MQTT_PASSWORD']}",
        "cleansession false",
        "bridge_cafile /etc/soundscape/tls/ca.crt",
        f"topic {PREFIX}/lamp-7/levels out 1",
        f"topic {PREFIX}/lamp-7/audio out 0",
    ):
        assert line in bridge.splitlines()
    topics = [ln.split() for ln in bridge.splitlines() if ln.startswith("topic ")]
    assert {t[2] for t in topics} == {"out"}  # nothing ever comes in
    assert (bundle / "config" / "tls" / "ca.crt").read_bytes() == (
        deployment / "tls" / "ca.crt"
    ).read_bytes()
    assert set(parse((bundle / "config" / "devices.toml").read_text())) == {"lamp-7"}

    # Local inference: audio stays on the Pi.
    assert add(deployment, "lamp-8") == 0
    other = (deployment.parent / "deploy/sensors/lamp-8/config/bridge.conf").read_text()
    assert "/audio" not in "".join(ln for ln in other.splitlines() if ln.startswith("topic"))


def test_bad_requests_exit_2_and_change_nothing(
    deployment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(deployment, "lamp-1") == 0
    site = deployment.parent
    before = snapshot(site)
    capsys.readouterr()
    assert add(deployment, "lamp-1") == 0  # the same again: nothing to do
    assert "nothing changed" in capsys.readouterr().out
    assert snapshot(site) == before
    cases: dict[str, Callable[[], int]] = {
        "bad id": lambda: add(deployment, "lamp/1"),
        "reserved id": lambda: add(deployment, "inference"),
        "duplicate": lambda: add(deployment, "lamp-1", "--threshold", "70"),
        "other bundle": lambda: add(deployment, "lamp-1", "--inference", "server"),
        "out of range": lambda: add(deployment, "lamp-2", "--gain", "500"),
        "bad host": lambda: add(deployment, "lamp-2", "--server-host", "a b"),
        "bad port": lambda: add(deployment, "lamp-2", "--server-port", "0"),
        "bad prefix": lambda: add(deployment, "lamp-2", "--prefix", "a/+/b"),
        "unknown": lambda: device(deployment, "remove", "nobody"),
        "no registry": lambda: add(tmp_path / "elsewhere" / "config", "lamp-3"),
    }
    for what, run in cases.items():
        assert run() == 2, what
        err = capsys.readouterr().err
        assert "nothing changed" in err, what
        assert snapshot(site) == before, what
    assert not (tmp_path / "elsewhere").exists()


def test_a_failed_write_puts_everything_back(
    deployment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = deployment.parent
    before = snapshot(site)
    real = os.replace

    def failing(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == "devices.toml" and Path(dst).parent == deployment:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    assert add(deployment, "lamp-9") == 2
    assert snapshot(site) == before
    assert not (site / "deploy" / "sensors" / "lamp-9").exists()
    assert not [p for p in site.rglob(".*") if p.is_file() or p.is_dir()]


def test_list_and_remove(deployment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = (deployment / "devices.toml").read_text()
    assert add(deployment, "lamp-1") == 0
    capsys.readouterr()
    assert device(deployment, "list") == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:2] == ["id", "name"]
    assert rows[2].split()[0] == "yor" and rows[2].split()[-2:] == ["no", "no"]
    assert rows[3].split()[0] == "lamp-1" and rows[3].split()[-2:] == ["yes", "yes"]
    assert device(deployment, "remove", "lamp-1") == 0
    assert "may be deleted" in capsys.readouterr().out
    assert (deployment / "devices.toml").read_text() == original
    assert passwd.parse((deployment / "broker" / "devices.passwd").read_text()) == {}


@contextlib.contextmanager
def clients(*made: Client) -> Iterator[tuple[Client, ...]]:
    try:
        yield made
    finally:
        for client in made:
            client.close()


@pytest.mark.integration
def test_credentials_work_on_a_real_broker_until_removed(deployment: Path, tmp_path: Path) -> None:
    assert add(deployment, "lamp-1", "--inference", "server") == 0
    assert add(deployment, "lamp-2") == 0
    bundles = deployment.parent / "deploy" / "sensors"
    pw = {
        d: read_env((bundles / d / ".env").read_text())["DEVICE_MQTT_PASSWORD"]
        for d in ("lamp-1", "lamp-2")
    }
    work = tmp_path / "broker"
    work.mkdir()
    users, acl = work / "passwd", work / "acl"
    acl.write_text(acl_fixture(PREFIX))
    build_passwd(users, SERVICES, deployment / "broker" / "devices.passwd")
    broker = servers.start_mosquitto(work, base_conf(passwd=users, acl=acl, data=work / "data"))
    try:
        with clients(
            Client(broker.port, "inference", SERVICES["inference"]),
            Client(broker.port, "reader", SERVICES["reader"]),
            Client(broker.port, "lamp-1", pw["lamp-1"]),
            Client(broker.port, "lamp-2", pw["lamp-2"]),
        ) as (inference, reader, lamp1, lamp2):
            assert all(c.accepted for c in (inference, reader, lamp1, lamp2))
            inference.sub(f"{PREFIX}/+/audio")
            reader.sub(f"{PREFIX}/#")
            lamp1.sub(f"{PREFIX}/+/audio")  # a device may not read audio, not even its own
            time.sleep(0.3)
            lamp1.pub(f"{PREFIX}/lamp-1/audio", qos=0)
            lamp1.pub(f"{PREFIX}/lamp-1/status")
            lamp1.pub(f"{PREFIX}/lamp-1/levels")
            lamp1.pub(f"{PREFIX}/lamp-2/audio", qos=0)  # as another device: dropped
            lamp1.pub(f"{PREFIX}/lamp-2/levels")
            lamp2.pub(f"{PREFIX}/lamp-2/audio", qos=0)
            time.sleep(0.5)
            assert inference.topics() == [f"{PREFIX}/lamp-1/audio", f"{PREFIX}/lamp-2/audio"]
            assert reader.topics() == [f"{PREFIX}/lamp-1/status", f"{PREFIX}/lamp-1/levels"]
            assert lamp1.topics() == []
        assert device(deployment, "remove", "lamp-1") == 0
        build_passwd(users, SERVICES, deployment / "broker" / "devices.passwd")
        broker.proc.send_signal(signal.SIGHUP)  # what a broker restart also does
        deadline = time.monotonic() + 10
        while True:
            with clients(Client(broker.port, "lamp-1", pw["lamp-1"])) as (gone,):
                if not gone.accepted:
                    break
            assert time.monotonic() < deadline, "lamp-1 still accepted after remove"
            time.sleep(0.2)
        with clients(Client(broker.port, "lamp-2", pw["lamp-2"])) as (still,):
            assert still.accepted
    finally:
        broker.stop()


def test_cli_registers_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "device", "list", "--config", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.splitlines()[2].split()[0] == "yor"
