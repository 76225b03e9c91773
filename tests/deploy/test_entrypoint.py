"""The broker's entrypoint refuses a configuration it cannot serve, with a reason, before
Mosquitto starts (the happy paths run in test_compose_processes.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from services.deploy.init import write_acl

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "mosquitto" / "entrypoint.sh"


def entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    dirs = {
        "MOSQUITTO_CONFIG_DIR": str(ROOT / "mosquitto"),
        "MOSQUITTO_DATA_DIR": str(tmp_path / "data"),
        "SOUNDSCAPE_CONFIG_DIR": str(tmp_path / "etc"),
        "MOSQUITTO_RUN_DIR": str(tmp_path / "run"),
    }
    full = {"PATH": os.environ["PATH"], **dirs, **env}
    return subprocess.run([str(ENTRYPOINT)], env=full, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("env", "acl", "reason"),
    [
        ({"MOSQUITTO_ROLE": "bogus", "MQTT_USERS": "health=x"}, True, "unknown MOSQUITTO_ROLE"),
        ({"MOSQUITTO_ROLE": "server", "MQTT_USERS": "health=x"}, False, "soundscape init"),
        ({"MOSQUITTO_ROLE": "server"}, True, "MQTT_USERS"),
        # A .env without the variable: Compose's ${VAR} would leave `health=`.
        ({"MOSQUITTO_ROLE": "server", "MQTT_USERS": "ingest=x health="}, True, "health"),
        ({"MOSQUITTO_ROLE": "sensor", "MQTT_USERS": "health=x"}, True, "bridge.conf"),
    ],
)
def test_refused_with_a_reason(tmp_path: Path, env: dict[str, str], acl: bool, reason: str) -> None:
    if acl:
        write_acl(tmp_path / "etc", "soundscape")
    done = entrypoint(tmp_path, **env)
    assert done.returncode == 2, done.stderr
    assert reason in done.stderr
