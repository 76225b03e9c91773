"""What a sensor needs to join the server, rendered from plain values (no I/O).

The bundle `deploy/sensors/ID/` holds the sensor's `.env`, its broker bridge
(`config/bridge.conf`, from mosquitto/bridge.conf.template), the deployment's CA and a
registry with that one device. See docs/devices.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from services.deploy.accounts import DEVICE_PASSWORD_VAR, SERVICE_ACCOUNTS

Inference = Literal["local", "server"]

#: Mosquitto 2.0.11 bridges speak MQTT 5 (`bridge_protocol_version mqttv50`).
BRIDGE_PROTOCOL: Final = "mqttv50"

#: Where the sensor's containers find the bundle's config/ folder.
CONFIG_MOUNT: Final = "/etc/soundscape"


@dataclass(frozen=True, slots=True)
class Uplink:
    """How a sensor reaches the server's broker, and where its audio is classified."""

    host: str
    port: int = 8883
    inference: Inference = "local"


def render_bridge(
    template: str,
    *,
    device: str,
    prefix: str,
    uplink: Uplink,
    password: str,
    client_cert: bool = False,
) -> str:
    """The sensor's bridge.conf: results out at QoS 1, audio out at QoS 0 only for server
    inference, nothing in."""
    if uplink.inference == "server":
        audio = (
            "# Inference runs on the server: audio crosses at QoS 0 (never queued, never stored).\n"
            f"topic {prefix}/{device}/audio out 0"
        )
    else:
        audio = "# Inference runs on this Pi: audio never leaves it."
    if client_cert:
        cert = (
            f"bridge_certfile {CONFIG_MOUNT}/tls/{device}.crt\n"
            f"bridge_keyfile {CONFIG_MOUNT}/tls/{device}.key\n"
        )
    else:
        cert = (
            "# A client certificate, if the server's listener asks for one:\n"
            f"#bridge_certfile {CONFIG_MOUNT}/tls/{device}.crt\n"
            f"#bridge_keyfile {CONFIG_MOUNT}/tls/{device}.key\n"
        )
    for value in (device, prefix, uplink.host, password):
        if any(c.isspace() for c in value) or not value:
            raise ValueError("bridge values must be non-empty and contain no white space")
    return template.format(
        device=device,
        prefix=prefix,
        server_host=uplink.host,
        server_port=uplink.port,
        protocol=BRIDGE_PROTOCOL,
        password=password,
        client_cert=cert,
        audio=audio,
    )


def env_passwords(device_password: str, new_password: dict[str, str]) -> dict[str, str]:
    """The bundle's secrets: the device's own password and one per local service account."""
    return {DEVICE_PASSWORD_VAR: device_password} | {
        var: new_password[var] for var in SERVICE_ACCOUNTS.values()
    }


def render_env(*, device: str, prefix: str, uplink: Uplink, secrets: dict[str, str]) -> str:
    """The sensor's `.env` (for `docker compose` on the Pi)."""
    backend = "yamnet"
    lines = [
        f"# Sensor {device}: written by `soundscape device add {device}` on the server.",
        "# Copy this folder to the Pi (docs/devices.md). It holds passwords: keep it private.",
        f"SOUNDSCAPE_DEVICE_ID={device}",
        f"SOUNDSCAPE_MQTT_TOPIC_PREFIX={prefix}",
        "# The server's broker (its TLS listener) and where audio is classified.",
        f"SERVER_HOST={uplink.host}",
        f"SERVER_PORT={uplink.port}",
        f"SENSOR_INFERENCE={uplink.inference}",
        *(
            [
                "# Compose starts the sensor's own inference (compose.sensor.yml's profile).",
                "COMPOSE_PROFILES=local-inference",
            ]
            if uplink.inference == "local"
            else []
        ),
        "# The AudioMoth's name in `arecord -l`, or an ALSA device string.",
        "SOUNDSCAPE_CAPTURE_ALSA_DEVICE=AudioMoth",
        "# Local inference (SENSOR_INFERENCE=local) runs YAMNet, which keeps up on a Pi 4.",
        f"SOUNDSCAPE_INFERENCE_BACKEND={backend}",
        "SOUNDSCAPE_INFERENCE_MODEL=MIT/ast-finetuned-audioset-10-10-0.4593",
        "# The device's own broker password (capture here, and the bridge to the server),",
        "# then the accounts of this Pi's own broker, fresh for this sensor.",
    ]
    lines += [f"{var}={value}" for var, value in secrets.items()]
    return "\n".join(lines) + "\n"


def read_env(text: str) -> dict[str, str]:
    """NAME=value lines of a `.env` (comments and blank lines skipped)."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def render_registry(device_block: str) -> str:
    """The sensor's own registry: this one device."""
    return (
        "# The device registry of this sensor (SOUNDSCAPE_DEVICES_FILE): written by\n"
        "# `soundscape device add` on the server, which keeps the registry of every sensor.\n\n"
        + device_block
    )
