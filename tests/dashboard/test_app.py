"""`soundscape dashboard`: settings, the Streamlit command line, and a real server start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from services.cli import main as cli_main
from services.dashboard import app
from services.dashboard.settings import DashboardSettings
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(app.ENV_PREFIX):
            monkeypatch.delenv(name)


def test_cli_options_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_DATABASE_URL", "postgresql://dash@db/s")
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_PORT", "9000")
    settings = app.build_settings(app.parse_args([]))
    assert (settings.port, settings.address, settings.timezone) == (9000, "127.0.0.1", "UTC")
    args = app.parse_args(
        ["--port", "8600", "--address", "0.0.0.0", "--timezone", "Europe/London",
         "--database-url", "postgresql://other@db/s"]
    )  # fmt: skip
    settings = app.build_settings(args)
    assert (settings.port, settings.address) == (8600, "0.0.0.0")
    assert settings.timezone == "Europe/London"
    assert settings.database_url.get_secret_value() == "postgresql://other@db/s"


def test_child_gets_settings_through_env() -> None:
    settings = DashboardSettings(database_url="postgresql://dash:pw@db/s", port=8600)
    env = app.child_env(settings, {"PATH": "/bin", "PYTHONPATH": "/x"})
    assert env["SOUNDSCAPE_DASHBOARD_DATABASE_URL"] == "postgresql://dash:pw@db/s"
    assert env["SOUNDSCAPE_DASHBOARD_PORT"] == "8600"
    assert env["PATH"] == "/bin"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/x"]
    # What the child receives builds the same settings.
    prefixed = {k: v for k, v in env.items() if k.startswith(app.ENV_PREFIX)}
    rebuilt = DashboardSettings.model_validate(
        {k.removeprefix(app.ENV_PREFIX).lower(): v for k, v in prefixed.items()}
    )
    assert rebuilt == settings


def test_streamlit_command_runs_the_page_headless() -> None:
    settings = DashboardSettings(database_url="postgresql://x@y/z", port=8600, address="::1")
    cmd = app.streamlit_command(settings, python="/py")
    assert cmd[:5] == ["/py", "-m", "streamlit", "run", str(app.PAGE)]
    assert app.PAGE.is_file()
    pairs = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert pairs["--server.port"] == "8600"
    assert pairs["--server.address"] == "::1"
    assert pairs["--server.headless"] == "true"
    assert pairs["--browser.gatherUsageStats"] == "false"


def test_missing_database_url_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env(monkeypatch)
    assert cli_main(["dashboard"]) == 2
    err = capsys.readouterr().err
    assert "SOUNDSCAPE_DASHBOARD_DATABASE_URL" in err
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_DATABASE_URL", "postgresql://x@y/z")
    assert app.main(["--timezone", "Mars/Olympus"]) == 2
    assert "unknown time zone" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.slow
def test_server_starts_serves_and_stops_on_sigterm(database: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(app.ENV_PREFIX)}
    env["SOUNDSCAPE_DASHBOARD_DATABASE_URL"] = database
    log = tmp_path / "dashboard.log"
    with (
        log.open("wb") as out,
        subprocess.Popen(
            [sys.executable, "-m", "services.dashboard", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        ) as proc,
    ):
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/_stcore/health", timeout=2
                    ) as resp:
                        assert resp.read() == b"ok"
                        break
                except OSError:
                    assert proc.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "dashboard did not start in 60 s"
                    time.sleep(0.2)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                assert b"<html" in resp.read().lower()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert f"serving on http://127.0.0.1:{port}" in log.read_text()
