"""Access control: the password gate of the page, and no public listening without it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from streamlit.testing.v1 import AppTest

from services.dashboard import app
from services.dashboard.access import bind_refusal, is_loopback, password_matches
from services.dashboard.settings import DashboardSettings
from tests.dashboard.data import Dataset
from tests.support.tcpproxy import TcpProxy

PASSWORD = "correct horse battery stäple"


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(app.ENV_PREFIX):
            monkeypatch.delenv(name)


# --- the pure rules ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("dashboard.example", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_password_comparison() -> None:
    assert password_matches(PASSWORD, PASSWORD)  # non-ASCII: compared as bytes
    assert not password_matches(PASSWORD[:-1], PASSWORD)
    assert not password_matches("", PASSWORD)


def test_an_empty_password_is_no_password() -> None:
    settings = DashboardSettings(database_url="postgresql://x@y/z", password="")
    assert settings.password is None


def test_bind_refusal_names_the_settings() -> None:
    refusal = bind_refusal("0.0.0.0", has_password=False, trust_proxy_auth=False)
    assert refusal is not None
    assert "SOUNDSCAPE_DASHBOARD_PASSWORD" in refusal
    assert "SOUNDSCAPE_DASHBOARD_TRUST_PROXY_AUTH" in refusal
    assert bind_refusal("0.0.0.0", has_password=True, trust_proxy_auth=False) is None
    assert bind_refusal("0.0.0.0", has_password=False, trust_proxy_auth=True) is None
    assert bind_refusal("127.0.0.1", has_password=False, trust_proxy_auth=False) is None


# --- `soundscape dashboard` -------------------------------------------------------------------
@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    """Every Streamlit child `soundscape dashboard` starts (subprocess is the library
    boundary: a stand-in records the command and environment instead)."""
    clean_env(monkeypatch)
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_DATABASE_URL", "postgresql://dash@db/s")
    started: list[tuple[list[str], dict[str, str]]] = []

    class FakeServer:
        def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
            started.append((cmd, env))

        def wait(self) -> int:
            return 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeServer)
    return started


def test_refuses_to_listen_publicly_without_a_password(
    server: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for address in ("0.0.0.0", "::", "192.168.1.20"):
        assert app.main(["--address", address]) == 2
        err = capsys.readouterr().err
        assert "refusing to listen" in err
        assert "SOUNDSCAPE_DASHBOARD_PASSWORD" in err
    assert server == []


def test_listens_publicly_with_a_password_or_behind_an_authenticating_proxy(
    server: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert app.main([]) == 0  # loopback by default: no password needed
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_PASSWORD", PASSWORD)
    assert app.main(["--address", "0.0.0.0"]) == 0
    monkeypatch.delenv("SOUNDSCAPE_DASHBOARD_PASSWORD")
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_TRUST_PROXY_AUTH", "true")
    assert app.main(["--address", "0.0.0.0"]) == 0
    (_, plain), (cmd, gated), (_, proxied) = server
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert gated["SOUNDSCAPE_DASHBOARD_PASSWORD"] == PASSWORD
    # Unset stays unset in the child, never the string "None".
    assert "SOUNDSCAPE_DASHBOARD_PASSWORD" not in plain
    assert "SOUNDSCAPE_DASHBOARD_PASSWORD" not in proxied


# --- the page ---------------------------------------------------------------------------------
@pytest.fixture
def counted(populated: tuple[str, Dataset], pg_admin_dsn: str) -> Iterator[tuple[str, TcpProxy]]:
    """The populated database's DSN through a proxy that counts connections to it."""
    info = conninfo_to_dict(pg_admin_dsn)
    with TcpProxy(str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432)))) as proxy:
        yield make_conninfo(populated[0], host="127.0.0.1", port=str(proxy.port)), proxy


def page(monkeypatch: pytest.MonkeyPatch, dsn: str, password: str | None) -> AppTest:
    clean_env(monkeypatch)
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_DATABASE_URL", dsn)
    if password is not None:
        monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_PASSWORD", password)
    return AppTest.from_file(str(app.PAGE), default_timeout=30).run()


def shown(at: AppTest) -> dict[str, int]:
    """How many of each kind of element the page drew (the password field aside)."""
    kinds = ("header", "metric", "dataframe", "caption", "info", "warning", "success")
    counts = {kind: len(at.get(kind)) for kind in kinds}
    counts["plotly_chart"] = len(at.get("plotly_chart"))
    counts["sidebar"] = len(at.sidebar.children)
    return counts


@pytest.mark.integration
def test_without_the_password_only_the_form_is_shown_and_nothing_is_queried(
    monkeypatch: pytest.MonkeyPatch, counted: tuple[str, TcpProxy]
) -> None:
    dsn, proxy = counted
    at = page(monkeypatch, dsn, PASSWORD)
    assert not at.exception
    assert [t.value for t in at.title] == ["Soundscape monitor"]
    assert [(w.label, w.key) for w in at.text_input] == [("Password", "password")]
    assert not at.error
    assert all(n == 0 for n in shown(at).values()), shown(at)
    assert proxy.connections == 0
    # A wrong password: still nothing, and it says so.
    at.text_input(key="password").input("not it").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Wrong password."]
    assert all(n == 0 for n in shown(at).values()), shown(at)
    assert len(at.text_input) == 1 and at.text_input[0].value == ""  # not kept
    assert "password" not in at.session_state or at.session_state["password"] == ""
    assert proxy.connections == 0
    # The right one: the page.
    at.text_input(key="password").input(PASSWORD).run()
    assert not at.exception
    assert not at.error
    assert not at.text_input
    assert [h.value for h in at.header] == ["Overview", "Bird species"]
    assert proxy.connections >= 1
    assert "password" not in at.session_state
    # Later runs of the same session stay unlocked.
    at.run()
    assert [h.value for h in at.header][:1] == ["Overview"]


@pytest.mark.integration
def test_without_a_password_setting_the_page_has_no_gate(
    monkeypatch: pytest.MonkeyPatch, counted: tuple[str, TcpProxy]
) -> None:
    dsn, proxy = counted
    at = page(monkeypatch, dsn, None)
    assert not at.exception
    assert not at.text_input
    assert [h.value for h in at.header][:1] == ["Overview"]
    assert proxy.connections == 1
