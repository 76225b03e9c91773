"""The health page's retained statuses, read from the real broker under a test prefix."""

from __future__ import annotations

import time

import paho.mqtt.publish as publish
import pytest
from streamlit.testing.v1 import AppTest

from services.dashboard import broker
from services.dashboard.app import PAGE
from shared.messages import Status
from shared.settings import MqttSettings
from tests.dashboard.fleet import seed_fleet

pytestmark = pytest.mark.integration


def _statuses(settings: MqttSettings) -> None:
    now = time.time()
    ingest = Status(device="stack-ingest", service="ingest", state="online", time=now,
                    counters={"spool_depth": 42, "spooled": 1000})  # fmt: skip
    capture = Status(device="dev-01", service="capture", state="degraded", time=now - 30,
                     detail="lost samples", counters={"gaps": 2, "outbox_dropped": 5})  # fmt: skip
    messages: publish.MessagesList = [
        (Status.topic_for(settings.topic_prefix, node), payload, 1, True)
        for node, payload in (
            ("stack-ingest", ingest.encode()),
            ("dev-01", capture.encode()),
            ("garbage", b"\xc1 not msgpack"),
        )
    ]
    publish.multiple(messages, hostname="127.0.0.1", port=settings.port)


def test_every_retained_status_is_read_and_a_bad_one_counted(
    mqtt_settings: MqttSettings,
) -> None:
    _statuses(mqtt_settings)
    found, bad = broker.read_statuses(mqtt_settings, wait_s=3.0)
    assert [(s.device, s.service, s.state) for s in found] == [
        ("dev-01", "capture", "degraded"), ("stack-ingest", "ingest", "online"),
    ]  # fmt: skip
    assert found[1].counters["spool_depth"] == 42
    assert bad == 1


def test_health_page_shows_spool_depth_and_drops(
    monkeypatch: pytest.MonkeyPatch, mqtt_settings: MqttSettings, schema_db: str
) -> None:
    seed_fleet(schema_db, 1)
    _statuses(mqtt_settings)
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_DATABASE_URL", schema_db)
    monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_BROKER_STATUS", "true")
    monkeypatch.setenv("SOUNDSCAPE_MQTT_HOST", "127.0.0.1")
    monkeypatch.setenv("SOUNDSCAPE_MQTT_PORT", str(mqtt_settings.port))
    monkeypatch.setenv("SOUNDSCAPE_MQTT_TOPIC_PREFIX", mqtt_settings.topic_prefix)
    app = AppTest.from_file(str(PAGE), default_timeout=30).run()
    app.sidebar.radio(key="page").set_value("Health").run()
    assert not app.exception and not app.error
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Ingest spool depth"] == "stack-ingest: 42"
    statuses = next(d.value for d in app.dataframe if "service" in d.value.columns)
    row = statuses.set_index("node").loc["dev-01"]
    assert (row["state"], row["gaps"], row["outbox_dropped"]) == ("degraded", 2, 5)
    assert "1 status message(s) could not be decoded" in "\n".join(w.value for w in app.warning)
