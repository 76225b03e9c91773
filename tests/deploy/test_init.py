"""`soundscape init`: a .env with fresh passwords for every account, the ACL for the prefix,
and for a server a CA and a certificate that verifies for its name and localhost."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from services.deploy.accounts import SERVICE_ACCOUNTS
from services.deploy.init import main, secret_vars


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


def test_all_in_one_writes_fresh_passwords_and_the_acl(tmp_path: Path) -> None:
    assert main(["--device-id", "yor", "--prefix", "city/ss", "--dir", str(tmp_path)]) == 0
    env = read_env(tmp_path / ".env")
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert set(secret_vars()) <= set(env) and set(SERVICE_ACCOUNTS.values()) <= set(env)
    passwords = [env[v] for v in secret_vars()]
    assert len(set(passwords)) == len(passwords) and all(len(p) >= 32 for p in passwords)
    assert env["SOUNDSCAPE_DEVICE_ID"] == "yor"
    assert env["SOUNDSCAPE_MQTT_TOPIC_PREFIX"] == "city/ss"
    assert env["SOUNDSCAPE_INFERENCE_BACKEND"] == "yamnet"
    assert "pattern write city/ss/%u/audio" in (tmp_path / "config/broker/acl").read_text()
    assert not (tmp_path / "config" / "tls").exists()


def test_an_existing_env_is_kept_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--device-id", "yor", "--dir", str(tmp_path)]
    assert main(args) == 0
    first = (tmp_path / ".env").read_text()
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / ".env").read_text() == first
    assert main([*args, "--force"]) == 0
    assert (
        read_env(tmp_path / ".env")["INGEST_MQTT_PASSWORD"]
        != read_env_text(first)["INGEST_MQTT_PASSWORD"]
    )


def read_env_text(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")


@pytest.mark.parametrize(
    "args",
    [
        [],  # all-in-one needs its device id
        ["--device-id", "inference-2"],  # a service account
        ["--device-id", "a/b"],
        ["--device-id", "yor", "--prefix", "city/#"],
        ["--role", "server"],  # needs the name sensors connect to
    ],
)
def test_bad_arguments_change_nothing(tmp_path: Path, args: list[str]) -> None:
    assert main([*args, "--dir", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_sensor_env_names_the_server_and_local_inference(tmp_path: Path) -> None:
    args = ["--role", "sensor", "--device-id", "yor", "--server-name", "mqtt.example.org"]
    assert main([*args, "--dir", str(tmp_path)]) == 0
    env = read_env(tmp_path / ".env")
    assert env["SERVER_HOST"] == "mqtt.example.org" and env["SERVER_PORT"] == "8883"
    assert env["SENSOR_INFERENCE"] == "local"
    assert env["COMPOSE_PROFILES"] == "local-inference"


def test_server_certificate_verifies_for_its_name_and_localhost(tmp_path: Path) -> None:
    assert main(["--role", "server", "--server-name", "10.0.0.5", "--dir", str(tmp_path)]) == 0
    tls = tmp_path / "config" / "tls"
    assert stat.S_IMODE((tls / "server.key").stat().st_mode) == 0o600
    assert (tmp_path / "ca" / "ca.key").exists()  # outside the folder every container mounts
    assert not (tls / "ca.key").exists()

    def verify(*check: str) -> int:
        cmd = ["openssl", "verify", "-CAfile", str(tls / "ca.crt"), *check, str(tls / "server.crt")]
        return subprocess.run(cmd, capture_output=True).returncode

    assert verify("-verify_ip", "10.0.0.5") == 0
    assert verify("-verify_hostname", "localhost") == 0
    assert verify("-verify_hostname", "evil.org") != 0


def test_acl_only_renders_for_the_existing_env_prefix(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# a sensor bundle\nSOUNDSCAPE_MQTT_TOPIC_PREFIX=city/ss\n")
    before = (tmp_path / ".env").read_text()
    assert main(["--acl-only", "--dir", str(tmp_path)]) == 0
    assert "pattern write city/ss/%u/levels" in (tmp_path / "config/broker/acl").read_text()
    assert (tmp_path / ".env").read_text() == before
    assert main(["--acl-only", "--dir", str(tmp_path / "none")]) == 2
