"""Notifications: what is sent when (pure), and delivery through Apprise's json:// to a local
HTTP server from real messages on the real broker, with a dead target beside it."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from pydantic import SecretStr

from services.localservers import free_port
from services.notify.app import NotifyService, main
from services.notify.core import NotifyCore
from services.notify.sender import Sender
from services.notify.settings import NotifySettings
from shared.devices import DeviceRegistry
from shared.errors import ConfigError
from shared.messages import LabelScore, NoiseEvent, Status
from shared.mqtt import MqttBus
from shared.settings import MqttSettings
from tests.support.bus import running
from tests.support.poll import until
from tests.support.webhook import webhook

START = 1_796_000_000.0
REGISTRY = DeviceRegistry.parse('[[device]]\nid = "yor"\nname = "York Road"\n')


def event(start: float, duration: float = 5.0, device: str = "yor", seq: int = 0) -> NoiseEvent:
    return NoiseEvent(
        device=device,
        seq=seq,
        start=start,
        duration=duration,
        threshold_db=65.0,
        laeq_db=78.25,
        lamax_db=85.0,
        classes=[LabelScore(label="Car", score=0.8)],
    )


def status(state: str, when: float, node: str = "yor") -> Status:
    return Status(device=node, service="capture", state=state, time=when)  # type: ignore[arg-type]


def test_one_message_per_noisy_spell_and_repeats_ignored() -> None:
    core = NotifyCore(REGISTRY, quiet_seconds=60)
    first = core.on_event(event(START))
    assert first is not None and first.title == "Noise at York Road (yor)"
    assert "LAeq 78.2 dB(A)" in first.body and "Car (0.80)" in first.body
    assert core.on_event(event(START)) is None  # redelivered
    assert core.on_event(event(START + 30, seq=30)) is None  # 25 s after the first ended
    assert core.on_event(event(START + 80, seq=80)) is None  # 45 s after the second ended
    assert core.on_event(event(START + 60, device="ham")) is not None  # another device
    assert core.on_event(event(START + 200, seq=200)) is not None  # quiet for 115 s
    assert core.stats == {"events_notified": 3, "events_quiet": 2, "event_repeats": 1}


def test_status_changes_for_the_worse_and_back() -> None:
    core = NotifyCore(REGISTRY, quiet_seconds=60)
    assert core.on_status(status("online", START)) is None  # where it stands
    assert core.on_status(status("online", START + 30)) is None  # heartbeat
    down = core.on_status(status("offline", START + 40))
    assert down is not None and down.title == "capture on York Road (yor) is offline"
    back = core.on_status(status("online", START + 50))
    assert back is not None and back.severity == "info"
    assert core.on_status(status("degraded", START + 60)) is None  # within 60 s of the alert
    assert core.on_status(status("online", START + 70)) is None  # nothing was said
    assert core.on_status(status("offline", START + 200)) is not None
    # A node first seen offline is not news.
    assert core.on_status(status("offline", START, node="other")) is None


@pytest.mark.integration
async def test_delivered_once_and_a_dead_target_changes_nothing_else(
    mqtt_settings: MqttSettings,
) -> None:
    dead = free_port()  # nothing listens there: connection refused
    with webhook() as hook:
        settings = NotifySettings(
            urls=SecretStr(f"json://127.0.0.1:{dead}/ json://127.0.0.1:{hook.port}/"),
            node_id="notify-test",
            quiet_seconds=60,
            retries=2,
            retry_min=0.05,
        )
        service = NotifyService(settings, mqtt_settings, REGISTRY)
        task = asyncio.create_task(service.run())
        publisher = MqttBus(mqtt_settings, node="notify-test-publisher", service="test")
        try:
            # Events are not retained: publish them once notify has subscribed.
            await asyncio.wait_for(service.bus.connected.wait(), 10)
            async with running(publisher):
                publisher.publish(status("online", time.time()))
                for msg in (event(START), event(START), event(START + 10, seq=10)):
                    publisher.publish(msg)
                (body,) = await asyncio.to_thread(hook.wait, 1)
                assert body["title"] == "Noise at York Road (yor)"
                assert "LAeq 78.2 dB(A)" in body["message"]
                # The dead target is retried, then given up on, and counted.
                await until(lambda: service.counters().get("failed", 0) >= 1, "failure counted")
                counters = service.counters()
                assert counters["failed"] == 1 and counters["retries"] == 2
                assert counters["sent"] == 1
                assert counters["events_notified"] == 1 and counters["events_quiet"] == 1
                assert counters["event_repeats"] == 1
                # The service goes on: the device drops offline, the live target hears it.
                publisher.publish(status("offline", time.time()))
                bodies = await asyncio.to_thread(hook.wait, 2)
                assert [b["title"] for b in bodies][1] == "capture on York Road (yor) is offline"
                assert not task.done()
            assert len(hook.received()) == 2
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_cli_refuses_without_targets_or_with_a_bad_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SOUNDSCAPE_NOTIFY_URLS", raising=False)
    assert main([]) == 2
    assert "SOUNDSCAPE_NOTIFY_URLS" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="target 0"):
        Sender(["no-such-scheme://x"])
