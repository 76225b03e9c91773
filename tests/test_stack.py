"""`soundscape stack`: the whole pipeline as local processes, with a broker it starts itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from services import stack
from shared.settings import MqttSettings
from tests.support import servers
from tests.support.audio import speech_and_tone_wav

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_stack_starts_its_own_broker_and_stores_every_window(tmp_path: Path, database: str) -> None:
    """No broker answers and the hub's AST cannot be had (offline): the stack starts its own
    broker, falls back to YAMNet, and every window is still labelled and measured."""
    wav = speech_and_tone_wav(tmp_path / "20261129_120000.WAV", seconds=3)
    port = servers.free_port()  # nothing listens there: the stack must start a broker
    env = dict(os.environ, SOUNDSCAPE_MQTT_PORT=str(port), HF_HUB_OFFLINE="1")
    cmd = [
        sys.executable,
        "-m",
        "services.cli",
        "stack",
        "--workdir",
        str(tmp_path / "run"),
        "--no-dashboard",
        "--source",
        "file",
        "--path",
        str(wav),
        "--device-id",
        "stk",
        "--database-url",
        database,
        "--sync-interval",
        "0.5",
        "--exit-after-replay",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"started mosquitto on 127.0.0.1:{port}" in done.stdout
    assert "falling back to YAMNet" in done.stdout
    with psycopg.connect(database) as conn:
        levels = conn.execute("SELECT count(*) FROM levels WHERE device = 'stk'").fetchone()
        labels = conn.execute(
            "SELECT count(DISTINCT window_start) FROM detections WHERE device = 'stk'"
        ).fetchone()
    assert levels == (3,) and labels == (3,)
    assert not servers.reachable("127.0.0.1", port), "the stack's own broker outlived it"


def test_says_what_to_install_when_no_broker_can_be_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("services.stack.shutil.which", lambda _name: None)
    monkeypatch.setattr(stack, "MOSQUITTO_FALLBACK", tmp_path / "no-mosquitto")
    settings = MqttSettings(port=servers.free_port())
    with pytest.raises(stack.StackError, match="apt-get install mosquitto"):
        stack.ensure_broker(settings, tmp_path)


def test_a_remote_broker_that_does_not_answer_is_an_error(tmp_path: Path) -> None:
    # A loopback address that is not "this machine's" name: treated as a remote broker.
    settings = MqttSettings(host="127.0.0.2", port=servers.free_port())
    with pytest.raises(stack.StackError, match="no broker answers"):
        stack.ensure_broker(settings, tmp_path)
