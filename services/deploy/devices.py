"""`soundscape device add|list|remove`: provision the sensors of a deployment (on the server).

    soundscape device add ID --name NAME --lat LAT --lon LON [--gain DB --sensitivity DBV
        --vadc V --threshold DB] [--server-host H --server-port 8883] [--inference local|server]
    soundscape device list
    soundscape device remove ID

`add` puts the device in the registry (`config/devices.toml`, comments and other devices kept),
gives it broker credentials (a random password; its hash goes to `config/broker/devices.passwd`)
and writes the sensor's bundle `deploy/sensors/ID/` (.env, bridge.conf, CA, registry) to copy
to the Pi. Adding the same device with the same values again changes nothing. Every file is
written whole or not at all; an error (exit 2) leaves every file as it was. See docs/devices.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.deploy import passwd
from services.deploy.accounts import RESERVED_IDS, SERVICE_ACCOUNTS
from services.deploy.acl import render_acl
from services.deploy.atomic import Changes
from services.deploy.bundle import Uplink, env_passwords, read_env, render_bridge, render_env
from services.deploy.bundle import render_registry as render_bundle_registry
from services.deploy.registry_text import add_device, device_block, parse, remove_device
from shared.devices import Device
from shared.errors import ConfigError, MessageError
from shared.messages.base import check_id, check_prefix
from shared.messages.levels import Calibration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "mosquitto" / "bridge.conf.template"


class ProvisionError(ConfigError):
    """A request that cannot be carried out; nothing was changed (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a deployment keeps its files."""

    config: Path
    bundles: Path

    @property
    def registry(self) -> Path:
        return self.config / "devices.toml"

    @property
    def passwd(self) -> Path:
        return self.config / "broker" / "devices.passwd"

    @property
    def ca(self) -> Path:
        return self.config / "tls" / "ca.crt"

    def bundle(self, device: str) -> Path:
        return self.bundles / device


# --- reading the deployment ------------------------------------------------------------------
def _read_registry(layout: Layout) -> str:
    if not layout.registry.is_file():
        raise ProvisionError(
            f"no device registry at {layout.registry}: run `soundscape init` first, "
            "or point --config at the deployment's config folder"
        )
    text = layout.registry.read_text(encoding="utf-8")
    try:
        parse(text)
    except ConfigError as exc:
        raise ProvisionError(f"device registry {layout.registry}: {exc}") from exc
    return text


def _read_passwd(layout: Layout) -> dict[str, str]:
    if not layout.passwd.exists():
        return {}
    try:
        return passwd.parse(layout.passwd.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ProvisionError(f"{layout.passwd}: {exc}") from exc


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (ValueError, MessageError) as exc:
        raise ProvisionError(str(exc)) from exc


def build_device(args: argparse.Namespace) -> Device:
    """The registry entry the options describe (validated by the registry's model)."""
    with _errors():
        device_id = check_id(args.id, "device id")
    if device_id in RESERVED_IDS:
        raise ProvisionError(f"device id {device_id!r} is a service account: choose another")
    calibration = None
    if any(v is not None for v in (args.gain, args.sensitivity, args.vadc)):
        defaults = Calibration()
        with _errors():
            calibration = Calibration(
                gain_db=defaults.gain_db if args.gain is None else args.gain,
                sensitivity_dbv=(
                    defaults.sensitivity_dbv if args.sensitivity is None else args.sensitivity
                ),
                vadc=defaults.vadc if args.vadc is None else args.vadc,
            )
    fields: dict[str, object] = {
        "id": device_id,
        "name": args.name,
        "latitude": args.lat,
        "longitude": args.lon,
        "calibration": calibration,
    }
    if args.threshold is not None:
        fields["noise_threshold_db"] = args.threshold
    with _errors():
        return Device.model_validate(fields)


def _prefix(args: argparse.Namespace, layout: Layout) -> str:
    if args.prefix:
        value: str = args.prefix
    elif os.environ.get("SOUNDSCAPE_MQTT_TOPIC_PREFIX"):
        value = os.environ["SOUNDSCAPE_MQTT_TOPIC_PREFIX"]
    else:
        env_file = layout.config.parent / ".env"
        env = read_env(env_file.read_text(encoding="utf-8")) if env_file.is_file() else {}
        value = env.get("SOUNDSCAPE_MQTT_TOPIC_PREFIX") or "soundscape"
    with _errors():
        return check_prefix(value)


def _differences(old: Device, new: Device) -> str:
    a, b = old.model_dump(), new.model_dump()
    return ", ".join(f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k])


# --- commands --------------------------------------------------------------------------------
def add(args: argparse.Namespace, layout: Layout) -> str:
    """Provision one device; the message to print."""
    device = build_device(args)
    if not 1 <= args.server_port <= 65535:
        raise ProvisionError(f"server port {args.server_port} is not a TCP port")
    uplink = Uplink(args.server_host or socket.getfqdn(), args.server_port, args.inference)
    prefix = _prefix(args, layout)
    registry = _read_registry(layout)
    users = _read_passwd(layout)
    existing = parse(registry).get(device.id)
    bundle = layout.bundle(device.id)
    if existing is not None and existing != device:
        raise ProvisionError(
            f"device {device.id!r} is already registered with other values "
            f"({_differences(existing, device)}): `soundscape device remove {device.id}` first"
        )
    if existing is not None and device.id in users:
        env_file = bundle / ".env"
        if env_file.is_file():
            env = read_env(env_file.read_text(encoding="utf-8"))
            wanted = {
                "SOUNDSCAPE_MQTT_TOPIC_PREFIX": prefix,
                "SERVER_HOST": uplink.host,
                "SERVER_PORT": str(uplink.port),
                "SENSOR_INFERENCE": uplink.inference,
            }
            changed = {k: v for k, v in wanted.items() if env.get(k) != v}
            if changed:
                raise ProvisionError(
                    f"device {device.id!r} is provisioned with another bundle ({env_file}: "
                    + ", ".join(f"{k}={env.get(k)!r}, asked {v!r}" for k, v in changed.items())
                    + f"): `soundscape device remove {device.id}` first"
                )
        return f"device {device.id!r} is already provisioned with these values: nothing changed"
    if not TEMPLATE.is_file():
        raise ProvisionError(f"bridge template {TEMPLATE} is missing")
    new_registry = registry if existing is not None else add_device(registry, device)
    password = passwd.new_password()
    users = {**users, device.id: passwd.hash_password(password)}
    secrets = env_passwords(
        password, {var: passwd.new_password() for var in SERVICE_ACCOUNTS.values()}
    )
    with _errors():
        bridge = render_bridge(
            TEMPLATE.read_text(encoding="utf-8"),
            device=device.id,
            prefix=prefix,
            uplink=uplink,
            password=password,
        )
    content: dict[str, tuple[bytes, int]] = {
        ".env": (
            render_env(device=device.id, prefix=prefix, uplink=uplink, secrets=secrets).encode(),
            0o600,
        ),
        "config/bridge.conf": (bridge.encode(), 0o600),
        "config/devices.toml": (render_bundle_registry(device_block(device)).encode(), 0o644),
        # The Pi's own broker enforces the same ACL as the server's.
        "config/broker/acl": (render_acl(prefix).encode(), 0o644),
    }
    if layout.ca.is_file():
        content["config/tls/ca.crt"] = (layout.ca.read_bytes(), 0o644)
    changes = Changes()
    changes.replace_folder(bundle, content)
    changes.write(layout.passwd, passwd.render(users), 0o600)
    changes.write(layout.registry, new_registry)
    changes.commit()
    lines = [
        f"device {device.id!r} provisioned: registry {layout.registry}, credentials in "
        f"{layout.passwd}, sensor bundle {bundle}/",
        f"  bridge to {uplink.host}:{uplink.port} over TLS; inference: {uplink.inference}; "
        f"topic prefix {prefix!r}",
    ]
    if existing is not None:
        lines.append("  (it was registered without credentials: new ones made)")
    if "config/tls/ca.crt" not in content:
        lines.append(
            f"  warning: no CA at {layout.ca}: put the server's ca.crt in "
            f"{bundle}/config/tls/ before starting the sensor"
        )
    lines.append(
        "  restart the server's broker so it accepts the device, then copy the bundle to the "
        "Pi (docs/devices.md)"
    )
    return "\n".join(lines)


def remove(args: argparse.Namespace, layout: Layout) -> str:
    """Remove one device's registry entry and credentials; the message to print."""
    with _errors():
        device_id = check_id(args.id, "device id")
    registry = _read_registry(layout)
    users = _read_passwd(layout)
    registered = device_id in parse(registry)
    if not registered and device_id not in users:
        raise ProvisionError(f"device {device_id!r} is not provisioned")
    changes = Changes()
    if device_id in users:
        changes.write(
            layout.passwd,
            passwd.render({u: h for u, h in users.items() if u != device_id}),
            0o600,
        )
    if registered:
        try:
            changes.write(layout.registry, remove_device(registry, device_id))
        except ConfigError as exc:
            raise ProvisionError(f"{layout.registry}: {exc}") from exc
    changes.commit()
    bundle = layout.bundle(device_id)
    lines = [f"device {device_id!r} removed from {layout.registry} and {layout.passwd}"]
    if bundle.exists():
        lines.append(f"  its bundle {bundle}/ is no longer valid and may be deleted")
    lines.append("  restart the server's broker so the device can no longer connect")
    return "\n".join(lines)


def table(layout: Layout) -> str:
    """The registry as a table, with each device's credentials and bundle."""
    devices = parse(_read_registry(layout))
    users = _read_passwd(layout)
    header = ("id", "name", "lat", "lon", "calibration", "threshold", "credentials", "bundle")
    rows = [header]
    for dev in devices.values():
        cal = dev.calibration
        rows.append(
            (
                dev.id,
                dev.name,
                "" if dev.latitude is None else f"{dev.latitude:.5f}",
                "" if dev.longitude is None else f"{dev.longitude:.5f}",
                "defaults (flagged)"
                if cal is None
                else f"{cal.gain_db:g} dB, {cal.sensitivity_dbv:g} dBV, {cal.vadc:g} V",
                f"{dev.noise_threshold_db:g} dB(A)",
                "yes" if dev.id in users else "no",
                "yes" if layout.bundle(dev.id).is_dir() else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    orphans = sorted(set(users) - set(devices))
    if orphans:
        out.append(f"credentials without a registry entry: {', '.join(orphans)}")
    return "\n".join(line.rstrip() for line in out)


def parser() -> argparse.ArgumentParser:
    """The `device` command line (`--config`/`--bundles` go after the subcommand)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, default=Path("config"), help="the deployment's config folder"
    )
    common.add_argument(
        "--bundles", type=Path, help="where sensor bundles go (default CONFIG/../deploy/sensors)"
    )
    p = argparse.ArgumentParser(prog="soundscape device", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", parents=[common], help="register a device, write its bundle")
    a.add_argument("id", help="device id (topic level, broker user): 1-64 of [A-Za-z0-9_.-]")
    a.add_argument("--name", required=True, help="human name, e.g. 'York Road lamp post'")
    a.add_argument("--lat", type=float, required=True, help="WGS84 latitude")
    a.add_argument("--lon", type=float, required=True, help="WGS84 longitude")
    a.add_argument("--gain", type=float, help="total gain before the ADC, dB (default 25)")
    a.add_argument("--sensitivity", type=float, help="microphone sensitivity, dBV (default -18)")
    a.add_argument("--vadc", type=float, help="ADC full-scale voltage, V (default 1.25)")
    a.add_argument("--threshold", type=float, help="noise-event threshold, dB(A) (default 65)")
    a.add_argument("--server-host", help="the server's name as in its TLS certificate")
    a.add_argument("--server-port", type=int, default=8883, help="its TLS listener (8883)")
    a.add_argument(
        "--inference",
        choices=["local", "server"],
        default="local",
        help="where the sensor's audio is classified (server: audio crosses the bridge)",
    )
    a.add_argument("--prefix", help="topic prefix (default: SOUNDSCAPE_MQTT_TOPIC_PREFIX)")
    sub.add_parser("list", parents=[common], help="the registered devices")
    r = sub.add_parser("remove", parents=[common], help="delete a device's entry and credentials")
    r.add_argument("id", help="device id")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one `device` command; exit 2 on a request that cannot be carried out."""
    args = parser().parse_args(argv)
    layout = Layout(args.config, args.bundles or args.config.parent / "deploy" / "sensors")
    try:
        if args.command == "add":
            print(add(args, layout))
        elif args.command == "remove":
            print(remove(args, layout))
        else:
            print(table(layout))
    except ProvisionError as exc:
        print(f"soundscape device {args.command}: {exc} (nothing changed)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"soundscape device {args.command}: {exc} (nothing changed)", file=sys.stderr)
        return 2
    return 0
