"""shared.metrics: the families, the status counters read at scrape time, the endpoint."""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.localservers import free_port
from shared.messages import Status
from shared.metrics import FAMILIES, MetricsSettings, ServiceMetrics
from shared.metrics_doc import render

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_doc_is_current() -> None:
    assert (ROOT / "docs" / "metrics.md").read_text() == render(), (
        "run: python -m shared.metrics_doc > docs/metrics.md"
    )


def test_status_counters_levels_and_queues_are_read_at_each_scrape() -> None:
    counters = {"chunks": 3, "outbox": 2}
    metrics = ServiceMetrics("levels", "node-1")
    metrics.status_from(
        lambda: Status(device="node-1", service="levels", state="degraded", counters=counters)
    )
    depth = [5]
    metrics.queue("chunks", lambda: depth[0])
    metrics.histogram("soundscape_result_latency_seconds").observe(0.2)
    counters["chunks"] = 4
    depth[0] = 1
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.text())
        for s in family.samples
    }
    assert samples["soundscape_status_counter_total", (("name", "chunks"),)] == 4
    assert samples["soundscape_status_level", (("name", "outbox"),)] == 2
    assert ("soundscape_status_counter_total", (("name", "outbox"),)) not in samples
    assert samples["soundscape_queue_depth", (("queue", "chunks"),)] == 1
    assert samples["soundscape_state", (("state", "degraded"),)] == 1
    assert samples["soundscape_state", (("state", "online"),)] == 0
    assert samples["soundscape_service_info", (("node", "node-1"), ("service", "levels"))] == 1
    assert samples["soundscape_result_latency_seconds_count", ()] == 1


def test_a_failing_reader_costs_its_own_family_only(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ServiceMetrics("ingest")

    def broken() -> float:
        raise OSError("disk gone")

    metrics.queue("spool", broken)
    metrics.queue("deliveries", lambda: 0)
    with caplog.at_level(logging.WARNING):
        text = metrics.text()
    assert 'soundscape_queue_depth{queue="deliveries"} 0.0' in text
    assert 'queue="spool"' not in text and "disk gone" in caplog.text


def test_only_declared_histograms() -> None:
    metrics = ServiceMetrics("x")
    with pytest.raises(KeyError):
        metrics.histogram("soundscape_made_up_seconds")
    with pytest.raises(KeyError):
        metrics.histogram("soundscape_queue_depth")  # declared, but a gauge
    assert all(f.name.startswith("soundscape_") for f in FAMILIES.values())


def test_port_setting_off_when_unset_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOUNDSCAPE_METRICS_PORT", raising=False)
    assert MetricsSettings().port is None
    monkeypatch.setenv("SOUNDSCAPE_METRICS_PORT", "")
    assert MetricsSettings().port is None
    assert ServiceMetrics("x").start_from_env() is None
    monkeypatch.setenv("SOUNDSCAPE_METRICS_PORT", "9464")
    assert MetricsSettings().port == 9464


def test_serves_and_a_taken_port_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    first, second = ServiceMetrics("a"), ServiceMetrics("b")
    settings = MetricsSettings(port=port, host="127.0.0.1")
    try:
        assert first.start(settings) == port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            assert b'soundscape_service_info{node="a",service="a"} 1.0' in reply.read()
        with caplog.at_level(logging.ERROR):
            assert second.start(settings) is None
        assert "cannot serve metrics" in caplog.text
    finally:
        first.stop()
        second.stop()
    with pytest.raises(OSError):  # stopped: nothing answers there any more
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
