"""Fixtures: a real broker and a real PostgreSQL (the running ones, or throwaway ones)."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from shared.settings import MqttSettings
from tests.support import servers
from tests.support.models import build_tiny_ast
from tests.support.retained import clear_retained

# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The shared broker's `$SYS` drop counter rises with other tests' traffic: ingest records no
# broker drops unless a test asks for them (tests/ingest/test_gaps.py).
os.environ.setdefault("SOUNDSCAPE_INGEST_BROKER_DROPS", "false")
# Every test ingest has its own client id: with the default week-long session expiry the shared
# broker would keep (and queue messages for) each one's session for a week after the run.
# Two minutes outlast every outage a test makes.
os.environ.setdefault("SOUNDSCAPE_INGEST_SESSION_EXPIRY", "120")


@pytest.fixture(scope="session")
def broker_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The running Mosquitto on 1883, or a throwaway one when none answers."""
    if os.environ.get("SOUNDSCAPE_TEST_OWN_SERVERS") != "1" and servers.reachable(
        "127.0.0.1", 1883
    ):
        yield 1883
        return
    broker = servers.start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker.port
    broker.stop()


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser DSN: the running PostgreSQL on 5432, or a throwaway cluster."""
    if os.environ.get("SOUNDSCAPE_TEST_OWN_SERVERS") != "1" and servers.reachable(
        "127.0.0.1", 5432
    ):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    # Not under pytest's temp folder: its 0700 parents keep the postgres user out.
    workdir = Path(tempfile.mkdtemp(prefix="soundscape-test-pg-"))
    pg = servers.start_postgres(workdir)
    yield pg.dsn
    pg.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A topic prefix of this test's own, so tests never see each other's traffic. What the
    test left retained under it on the session's broker is cleared afterwards."""
    value = f"test-{uuid.uuid4().hex[:12]}/soundscape"
    yield value
    if "broker_port" in request.fixturenames:
        clear_retained(request.getfixturevalue("broker_port"), value.split("/")[0])


@pytest.fixture
def mqtt_settings(broker_port: int, prefix: str) -> MqttSettings:
    """Broker settings pointing at the test broker, with this test's prefix."""
    return MqttSettings(
        host="127.0.0.1",
        port=broker_port,
        topic_prefix=prefix,
        reconnect_min=0.1,
        reconnect_max=1.0,
        status_interval=5.0,
    )


@pytest.fixture
def database(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh database of this test's own; its DSN. Dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_admin_dsn.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def tiny_ast(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny AST checkpoint (527 AudioSet labels, random weights) saved to a local folder."""
    return build_tiny_ast(tmp_path_factory.mktemp("models") / "tiny-ast")


class _ExceptionLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_log_exception(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test during which something logs an unexpected exception fails."""
    handler = _ExceptionLogs()
    root = logging.getLogger()
    root.addHandler(handler)
    yield
    if "allow_log_exceptions" in request.keywords:
        # Such a test's garbage (e.g. a future whose exception nobody retrieved) logs now,
        # here, not in whichever test the collector happens to run next.
        gc.collect()
    root.removeHandler(handler)
    if handler.records and "allow_log_exceptions" not in request.keywords:
        first = handler.records[0]
        pytest.fail(f"logged exception in {first.name}: {first.getMessage()}")


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Levels', inference's and capture's durable state (outboxes) in this test's own folder,
    never the home folder; child processes started with `os.environ` inherit it."""
    folder = tmp_path / "state"
    monkeypatch.setenv("SOUNDSCAPE_LEVELS_STATE_DIR", str(folder))
    monkeypatch.setenv("SOUNDSCAPE_INFERENCE_STATE_DIR", str(folder))
    monkeypatch.setenv("SOUNDSCAPE_CAPTURE_STATE_DIR", str(folder))
    return folder
