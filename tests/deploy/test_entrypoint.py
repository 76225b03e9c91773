"""The broker's entrypoint refuses a configuration it cannot serve, with a reason, before
Mosquitto starts (the happy paths run in test_compose_processes.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from services.deploy.init import make_server_tls, write_acl
from services.localservers import free_port, wait_port

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


def test_listener_scoped_base_options_go_under_every_listener() -> None:
    """`use_username_as_clientid` above every listener would open a default listener on
    1883 of its own (Mosquitto scopes it to a listener): the entrypoint repeats it under each
    of the role's listeners, and the broker serves on exactly those."""
    base = Path(tempfile.mkdtemp(prefix="soundscape-entrypoint-"))
    os.chmod(base, 0o755)
    try:
        conf = base / "mosquitto"
        shutil.copytree(ROOT / "mosquitto", conf)
        (conf / "mosquitto.conf").write_text(
            (conf / "mosquitto.conf").read_text() + "\nuse_username_as_clientid true\n"
        )
        plain, tls = free_port(), free_port()
        role = conf / "roles" / "server.conf"
        text = role.read_text().replace("listener 1883\n", f"listener {plain} 127.0.0.1\n")
        role.write_text(text.replace("listener 8883\n", f"listener {tls} 127.0.0.1\n"))
        make_server_tls(base / "etc" / "tls", base / "ca", "localhost")
        write_acl(base / "etc", "soundscape")
        dirs = {
            "MOSQUITTO_CONFIG_DIR": str(conf),
            "MOSQUITTO_DATA_DIR": str(base / "data"),
            "SOUNDSCAPE_CONFIG_DIR": str(base / "etc"),
            "MOSQUITTO_RUN_DIR": str(base / "run"),
        }
        env = {"PATH": os.environ["PATH"], "MOSQUITTO_ROLE": "server", "MQTT_USERS": "health=x"}
        proc = subprocess.Popen([str(conf / "entrypoint.sh")], env={**env, **dirs})
        try:
            wait_port("127.0.0.1", plain)
            wait_port("127.0.0.1", tls)
            composed = (base / "run" / "mosquitto.conf").read_text()
            head, _, roles = composed.partition("# --- role server")
            assert "use_username_as_clientid" not in head
            lines = roles.splitlines()
            listeners = [i for i, line in enumerate(lines) if line.startswith("listener ")]
            assert len(listeners) == 2
            assert all(lines[i + 1] == "use_username_as_clientid true" for i in listeners)
            time.sleep(0.5)  # a second listener on 1883 would have failed by now
            assert proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(base, ignore_errors=True)
