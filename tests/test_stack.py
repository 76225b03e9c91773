"""`soundscape stack`: the whole pipeline as local processes, with a broker it starts itself."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
    # Decided before inference starts: it never tried (and failed) to load the AST.
    assert "inference cannot start" not in done.stdout + done.stderr
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


def test_without_a_microphone_the_demo_fleet_keeps_reporting(tmp_path: Path, database: str) -> None:
    """No microphone (and none is faked: `arecord -l` lists no card here, or arecord is
    absent): the stack streams the demo fleet, whose devices are in the registry it uses,
    and rows still arrive after the first (short) scene has ended. No audio file is written."""
    if stack.microphone_present():
        pytest.skip("this machine has a capture card: the stack would use the microphone")
    port = servers.free_port()
    env = dict(os.environ, SOUNDSCAPE_MQTT_PORT=str(port), HF_HUB_OFFLINE="1")
    workdir = tmp_path / "run"
    scene_s = 3.0
    cmd = [
        sys.executable, "-m", "services.cli", "stack",
        "--workdir", str(workdir), "--no-dashboard", "--backend", "yamnet",
        "--database-url", database, "--sync-interval", "0.5",
        "--scene-seconds", str(scene_s),
    ]  # fmt: skip
    log = (tmp_path / "stack.log").open("w")  # a file: a full pipe would stall the stack
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        first = _wait_for(database, "SELECT min(window_start) FROM levels", 150)
        # Rows of windows that start after three whole loops of the scene: still streaming.
        later = _wait_for(
            database,
            "SELECT count(DISTINCT device) FROM levels WHERE window_start > "
            f"'{first.isoformat()}'::timestamptz + interval '{3 * scene_s} seconds' "
            "HAVING count(DISTINCT device) = 3",
            60,
        )
        assert later == 3
        with psycopg.connect(database) as conn:
            devices = conn.execute(
                "SELECT id, latitude IS NOT NULL FROM devices ORDER BY id"
            ).fetchall()
            reporting = {r[0] for r in conn.execute("SELECT DISTINCT device FROM levels")}
            labelled = {r[0] for r in conn.execute("SELECT DISTINCT device FROM labels")}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    out = (tmp_path / "stack.log").read_text()
    assert "running the demo fleet" in out, out[-3000:]
    assert reporting == labelled == {"demo-park", "demo-square", "demo-street"}
    # Every reporting device is in the registry with coordinates; the spare is labelled so.
    assert dict(devices) == {
        "demo-park": True, "demo-spare": True, "demo-square": True, "demo-street": True,
    }  # fmt: skip
    written = [p for p in workdir.rglob("*") if p.suffix.lower() in {".wav", ".flac", ".raw"}]
    assert written == [], "the demo wrote audio to disk"


def _wait_for(dsn: str, query: str, timeout: float) -> Any:
    """The first column of `query`'s first row once it is not NULL (polling)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            with contextlib.suppress(psycopg.errors.UndefinedTable):
                row = conn.execute(query).fetchone()
                if row is not None and row[0] is not None:
                    return row[0]
            time.sleep(0.5)
    raise AssertionError(f"nothing from {query!r} within {timeout} s")


def test_the_microphone_takes_the_id_of_the_registry_s_only_device(tmp_path: Path) -> None:
    """So that it reports with the registry's location, not as an unplaced `demo` beside a
    registry device that never reports."""
    one = tmp_path / "one.toml"
    one.write_text('[[device]]\nid = "yor"\nlatitude = 53.9\nlongitude = -1.08\n')
    two = tmp_path / "two.toml"
    two.write_text('[[device]]\nid = "a"\n\n[[device]]\nid = "b"\n')
    assert stack.default_device_id(one) == "yor"
    assert stack.default_device_id(two) == "demo"
    assert stack.default_device_id(tmp_path / "none.toml") == "demo"
