"""Render every settings class as Markdown (`python -m services.settings_doc`).

A test keeps the page and the code in step, so a setting cannot change silently.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from shared.contract_doc import type_name

#: (module, class) of every settings class, in the order the page lists them.
SETTINGS: list[tuple[str, str]] = [
    ("shared.settings", "MqttSettings"),
    ("shared.settings", "RegistrySettings"),
    ("services.health", "HealthSettings"),
    ("shared.metrics", "MetricsSettings"),
    ("services.capture.settings", "CaptureSettings"),
    ("services.simulate.settings", "SimulateSettings"),
    ("services.inference.settings", "InferenceSettings"),
    ("services.levels.settings", "LevelsSettings"),
    ("services.ingest.settings", "IngestSettings"),
    ("services.dashboard.settings", "DashboardSettings"),
    ("services.report.settings", "ReportSettings"),
    ("services.homeassistant.settings", "HomeAssistantSettings"),
    ("services.notify.settings", "NotifySettings"),
]

INTRO = """# Configuration

Every service reads its settings from environment variables (a `.env` file works with
Docker Compose); command-line options, where a service has them, override the environment.
Generated from the settings classes by `python -m services.settings_doc > docs/configuration.md`.

All services share the broker settings (`SOUNDSCAPE_MQTT_*`) and the device registry
(`SOUNDSCAPE_DEVICES_FILE`, a TOML file described in `shared/devices.py` and shipped as an
example in `config/devices.toml`). `soundscape health --node ID` exits 0 when the node's
retained status is online and younger than three status intervals (the containers' health
check).
"""


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        return "(computed)"
    value: Any = info.default
    return f"`{value!r}`" if value is not None else "unset"


def render_class(cls: type[BaseSettings]) -> str:
    """One settings class as a section."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    doc = (cls.__doc__ or "").strip().splitlines()[0]
    rows = [
        f"## {cls.__name__}",
        "",
        doc,
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, info in cls.model_fields.items():
        env = (prefix + name).upper()
        rows.append(
            f"| `{env}` | {type_name(info.annotation)} | {_default(info)} | "
            f"{info.description or ''} |"
        )
    return "\n".join(rows)


def render() -> str:
    """The whole page."""
    parts = [INTRO]
    for module, name in SETTINGS:
        parts.append(render_class(getattr(importlib.import_module(module), name)))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
