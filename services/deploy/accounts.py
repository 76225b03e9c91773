"""The broker accounts of a deployment and the `.env` variables that hold their secrets.

One definition, read by `soundscape init` (which writes the `.env`), by the ACL renderer, by
`soundscape device add` (which refuses a device id that is a service account) and by the
Compose files (which pass each variable to the one container that needs it).

Mosquitto binds each client id to its user name (`use_username_as_clientid`), so every
process that connects at the same time needs an account of its own: two inference workers on
the shared subscription are `inference-1` and `inference-2`, not two `inference`s.
"""

from __future__ import annotations

from typing import Final

#: Service account -> the `.env` variable with its broker password.
SERVICE_ACCOUNTS: Final[dict[str, str]] = {
    "inference": "INFERENCE_MQTT_PASSWORD",
    "levels": "LEVELS_MQTT_PASSWORD",
    "ingest": "INGEST_MQTT_PASSWORD",
    # Home Assistant discovery and notifications (docs/integrations.md): results and statuses
    # in; discovery configs and JSON states out (homeassistant), nothing out (notify).
    "homeassistant": "HOMEASSISTANT_MQTT_PASSWORD",
    "notify": "NOTIFY_MQTT_PASSWORD",
    # Read-only result consumers (other tools): everything but audio.
    "reader": "READER_MQTT_PASSWORD",
    # `soundscape health` in every container's health check: reads statuses only. Not the
    # service's own user: with client ids bound to users, a check run as `ingest` would take
    # over ingest's session.
    "health": "HEALTH_MQTT_PASSWORD",
}

#: Inference workers beyond the first on a server share INFERENCE_MQTT_PASSWORD but each has
#: its own user (and so its own client id): inference-1 ... inference-MAX_INFERENCE_WORKERS.
MAX_INFERENCE_WORKERS: Final = 16


def inference_workers(n: int) -> list[str]:
    """The user names of `n` inference workers on a server (`inference-1` ...)."""
    if not 1 <= n <= MAX_INFERENCE_WORKERS:
        raise ValueError(f"inference workers must be 1-{MAX_INFERENCE_WORKERS}, got {n}")
    return [f"inference-{i}" for i in range(1, n + 1)]


#: Names a device may not take: they are service accounts.
RESERVED_IDS: Final[frozenset[str]] = frozenset(SERVICE_ACCOUNTS) | frozenset(
    inference_workers(MAX_INFERENCE_WORKERS)
)

#: The device's own broker password (capture on the Pi, and the bridge to the server).
DEVICE_PASSWORD_VAR: Final = "DEVICE_MQTT_PASSWORD"

#: Database passwords in the `.env`: the superuser (schema owner), ingest's writer role and
#: the dashboard's read-only role.
DATABASE_PASSWORD_VARS: Final[tuple[str, ...]] = (
    "POSTGRES_PASSWORD",
    "INGEST_DB_PASSWORD",
    "READER_DB_PASSWORD",
)

#: The dashboard's own password (SOUNDSCAPE_DASHBOARD_PASSWORD in its container).
DASHBOARD_PASSWORD_VAR: Final = "DASHBOARD_PASSWORD"
