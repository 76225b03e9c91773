"""Home Assistant discovery on the real broker: retained configs for two devices, their
templates rendered with Jinja2 as Home Assistant renders them (`value_json`) against the
state topics the service fills from real result messages; HA's birth message republishes;
removing a device from the registry file clears its configs and state."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import jinja2
import pytest

from services.homeassistant.app import HomeAssistantService, main
from services.homeassistant.core import ENTITIES, Discovery, node_id
from services.homeassistant.settings import HomeAssistantSettings
from shared.devices import DeviceRegistry
from shared.messages import (
    Calibration,
    HomeAssistantState,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    Message,
    NoiseEvent,
    Status,
)
from shared.mqtt import MqttBus
from shared.settings import MqttSettings
from tests.support.bus import running
from tests.support.poll import until
from tests.support.watch import Watcher

pytestmark = [pytest.mark.integration]

TWO = """
[[device]]
id = "yor"
name = "York Road"
noise_threshold_db = 60

[[device]]
id = "ham.1"
noise_threshold_db = 80
"""
ONE = TWO.split('[[device]]\nid = "ham.1"')[0]
START = 1_796_000_000.0
JINJA = jinja2.Environment(autoescape=False)


def render(template: str, payload: bytes) -> str:
    """A template as Home Assistant renders it for an incoming JSON payload."""
    return JINJA.from_string(template).render(value_json=json.loads(payload), value=payload)


def results(device: str, level: float, speech: bool) -> list[Message]:
    cal = Calibration().model_dump()
    key = {"device": device, "seq": 7, "start": START, "duration": 1.0}
    car = [{"label": "Car", "score": 0.7}, {"label": "Engine", "score": 0.5}]
    return [
        LevelsResult.model_validate(
            {**key, "leq_db": level + 1.5, "laeq_db": level, "calibration": cal}
            | {"uncalibrated": True}
        ),
        LevelsSummary.model_validate(
            {**key, "duration": 60.0, "laeq_db": level - 2, "lamax_db": level + 5}
            | {"lamin_db": level - 10, "l10_db": level, "l50_db": level - 3}
            | {"l90_db": level - 8, "coverage": 1.0, "uncalibrated": True}
        ),
        LabelsResult.model_validate(
            {**key, "model": "tiny", "speech_present": speech}
            | {"labels": [{"label": "Speech", "score": 0.4}, {"label": "Car", "score": 0.75}]}
        ),
        NoiseEvent.model_validate(
            {**key, "duration": 4.0, "threshold_db": 60.0, "laeq_db": level}
            | {"lamax_db": level + 5, "classes": car}
        ),
    ]


async def test_discovery_states_birth_and_removal(
    mqtt_settings: MqttSettings, prefix: str, broker_port: int, tmp_path: Path
) -> None:
    disc = prefix.split("/")[0] + "/homeassistant"
    registry_file = tmp_path / "devices.toml"
    registry_file.write_text(TWO)
    settings = HomeAssistantSettings(
        discovery=True,
        discovery_prefix=disc,
        node_id="ha-test",
        publish_interval=0.1,
        registry_interval=0.2,
    )
    watch = Watcher(broker_port, [f"{disc}/#", HomeAssistantState.subscription(prefix)])
    ghost = f"{disc}/sensor/{node_id(prefix, 'ghost')}/laeq/config"
    watch.publish(ghost, b'{"name": "left over"}', retain=True)
    service = HomeAssistantService(
        settings, mqtt_settings, DeviceRegistry.load(registry_file), registry_file
    )
    task = asyncio.create_task(service.run())
    publisher = MqttBus(mqtt_settings, node="ha-test-publisher", service="test")
    try:
        # Results are not retained: publish them once the service has subscribed.
        await asyncio.wait_for(service.bus.connected.wait(), 10)
        async with running(publisher):
            publisher.publish(Status(device="yor", service="capture", state="online"))
            publisher.publish(Status(device="ham.1", service="capture", state="offline"))
            for msg in [*results("yor", 70.0, True), *results("ham.1", 50.0, False)]:
                publisher.publish(msg)
            state_topics = {d: HomeAssistantState.topic_for(prefix, d) for d in ("yor", "ham.1")}

            def filled() -> bool:
                latest = watch.snapshot()
                return all(
                    t in latest and b'"last_event":{' in latest[t] and b'"status":"' in latest[t]
                    for t in state_topics.values()
                )

            await until(filled, "states with every value")
            await until(lambda: watch.snapshot().get(ghost) == b"", "the stale config cleared")
            latest = watch.snapshot()
            configs = {t: json.loads(p) for t, p in latest.items() if t.endswith("/config") and p}
            assert len(configs) == 2 * len(ENTITIES)
            unique = [c["unique_id"] for c in configs.values()]
            assert len(set(unique)) == len(unique)
            rendered: dict[tuple[str, str], str] = {}
            for topic, config in configs.items():
                object_id = topic.split("/")[-2]
                device = next(d for d, t in state_topics.items() if t == config["state_topic"])
                state = latest[config["state_topic"]]
                HomeAssistantState.decode(state, "application/json")  # the contract's class
                assert config["device"]["identifiers"] == [node_id(prefix, device)]
                (avail,) = config["availability"]
                assert avail["topic"] in latest
                rendered[device, "availability"] = render(avail["value_template"], state)
                rendered[device, object_id] = render(config["value_template"], state)
                if "json_attributes_template" in config:
                    assert config["json_attributes_topic"] == config["state_topic"]
                    attrs = json.loads(render(config["json_attributes_template"], state))
                    assert isinstance(attrs, dict)
                    rendered[device, "classes"] = ",".join(c["label"] for c in attrs["classes"])
            names = {c["device"]["name"] for c in configs.values()}
            assert names == {"York Road", "ham.1"}
            for device, level in (("yor", 70.0), ("ham.1", 50.0)):
                assert float(rendered[device, "laeq"]) == level - 2
                assert float(rendered[device, "lafmax"]) == level + 5
                assert float(rendered[device, "leq"]) == level + 1.5
                assert rendered[device, "top_class"] == "Car"
                assert float(rendered[device, "top_score"]) == 0.75
                assert rendered[device, "classes"] == "Car,Engine"
            assert rendered["yor", "speech"] == "ON" and rendered["ham.1", "speech"] == "OFF"
            # 70 dB(A) is above yor's 60 dB threshold; 50 is below ham.1's 80.
            assert rendered["yor", "noise_event"] == "ON"
            assert rendered["ham.1", "noise_event"] == "OFF"
            assert rendered["yor", "status"] == "online"
            assert rendered["ham.1", "status"] == "offline"
            assert rendered["yor", "availability"] == "online"
            assert rendered["ham.1", "availability"] == "offline"

            # Home Assistant restarts and says so: every config is published again.
            watch.forget()
            watch.publish(f"{disc}/status", b"online")
            await until(
                lambda: len({t for t, p in watch.seen() if t in configs and p}) == len(configs),
                "configs republished after HA's birth message",
            )

            # ham.1 leaves the registry: its configs and its state are cleared.
            registry_file.write_text(ONE)
            gone = [t for t in configs if f"/{node_id(prefix, 'ham.1')}/" in t]
            await until(
                lambda: (
                    all(watch.snapshot()[t] == b"" for t in gone)
                    and watch.snapshot()[state_topics["ham.1"]] == b""
                ),
                "ham.1's configs and state cleared",
            )
            kept = [t for t in configs if t not in gone]
            assert all(watch.snapshot()[t] for t in kept)
            assert service.counters()["registry_reloads"] == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        watch.close()


def test_discovery_off_asks_for_no_configs_and_clears_ours() -> None:
    registry = DeviceRegistry.parse(TWO)
    on = Discovery("soundscape", "homeassistant", registry, enabled=True)
    off = Discovery("soundscape", "homeassistant", registry, enabled=False)
    assert len(on.all_configs()) == 2 * len(ENTITIES)
    assert off.all_configs() == {}
    topic = next(iter(on.all_configs()))
    assert off.stale_config(topic, b"{}") and not on.stale_config(topic, b"{}")
    # Someone else's config under the same discovery prefix is never touched.
    assert not off.stale_config("homeassistant/sensor/zigbee_1/temp/config", b"{}")


def test_cli_refuses_bad_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOUNDSCAPE_HA_DISCOVERY_PREFIX", "home/#")
    assert main([]) == 2
    assert "discovery_prefix" in capsys.readouterr().err
