"""`soundscape init`: first-run set-up of a deployment folder (docs/deploy.md).

    soundscape init --device-id yor                      # all-in-one: one Pi runs everything
    soundscape init --role server --server-name mqtt.example.org
    soundscape init --role sensor --device-id yor --server-name mqtt.example.org
    soundscape init --acl-only                           # a sensor with a `device add` bundle

Writes, in --dir (default: this folder, where the Compose files are):
- `.env` (mode 0600): a fresh random password for every broker account and database role, the
  topic prefix and the role's settings. An existing `.env` is never overwritten without
  --force: its passwords are already in the broker's and the database's volumes.
- `config/broker/acl`: the broker's ACL rendered for the prefix (services/deploy/acl.py).
- with --role server: a CA (`ca/ca.key`, outside the mounted config folder) and the broker's
  certificate `config/tls/{ca.crt,server.crt,server.key}` for --server-name and localhost.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final, Literal

from services.deploy.accounts import (
    DASHBOARD_PASSWORD_VAR,
    DATABASE_PASSWORD_VARS,
    DEVICE_PASSWORD_VAR,
    RESERVED_IDS,
    SERVICE_ACCOUNTS,
)
from services.deploy.acl import render_acl
from shared.errors import MessageError
from shared.messages import check_id, check_prefix

Role = Literal["all-in-one", "server", "sensor"]
ROLES: Final[tuple[Role, ...]] = ("all-in-one", "server", "sensor")
#: The Compose file of each role.
COMPOSE_FILES: Final[dict[str, str]] = {
    "all-in-one": "docker-compose.yml",
    "server": "compose.server.yml",
    "sensor": "compose.sensor.yml",
}
TLS_PORT: Final = 8883
#: Days the CA and the server certificate are valid.
CA_DAYS: Final = 3650
SERVER_DAYS: Final = 825


class InitError(RuntimeError):
    """The deployment cannot be set up as asked; the text says why."""


def new_password() -> str:
    """A fresh random password: 32 URL-safe characters (safe in .env, URLs and MQTT_USERS)."""
    return secrets.token_urlsafe(24)


def secret_vars() -> list[str]:
    """Every `.env` variable that holds a password, in the order they are written."""
    return [
        DEVICE_PASSWORD_VAR,
        *SERVICE_ACCOUNTS.values(),
        *DATABASE_PASSWORD_VARS,
        DASHBOARD_PASSWORD_VAR,
    ]


def render_env(
    role: Role,
    prefix: str,
    device_id: str | None,
    server_name: str | None,
    sensor_inference: Literal["local", "server"] = "local",
    passwords: dict[str, str] | None = None,
) -> str:
    """The `.env` text for `role`; fresh passwords unless `passwords` gives them."""
    pw = passwords if passwords is not None else {var: new_password() for var in secret_vars()}
    lines = [
        f"# Written by `soundscape init --role {role}`; used by {COMPOSE_FILES[role]}.",
        "# Keep it secret (mode 0600). The passwords are also in the broker's and the",
        "# database's volumes: change one here and recreate those containers.",
        f"SOUNDSCAPE_MQTT_TOPIC_PREFIX={prefix}",
    ]
    if device_id is not None:
        lines.append(f"SOUNDSCAPE_DEVICE_ID={device_id}")
    lines.append("# Broker passwords (one account per service; see docs/deploy.md).")
    lines += [f"{var}={pw[var]}" for var in (DEVICE_PASSWORD_VAR, *SERVICE_ACCOUNTS.values())]
    lines.append("# PostgreSQL: the superuser, ingest's writer role, the read-only role.")
    lines += [f"{var}={pw[var]}" for var in DATABASE_PASSWORD_VARS]
    lines.append(f"{DASHBOARD_PASSWORD_VAR}={pw[DASHBOARD_PASSWORD_VAR]}")
    lines += [
        "# yamnet runs in real time on a Pi; onnx with a model exported into ./models",
        "# (models/README.md).",
        "SOUNDSCAPE_INFERENCE_BACKEND=yamnet",
        "SOUNDSCAPE_INFERENCE_MODEL=/models/ast-1s",
        "SOUNDSCAPE_INFERENCE_AST_LENGTH=window",
    ]
    if role != "server":
        lines.append("SOUNDSCAPE_CAPTURE_ALSA_DEVICE=AudioMoth")
    if role == "sensor":
        lines += [
            "# The server's broker (the bridge itself is config/bridge.conf from `device add`).",
            f"SERVER_HOST={server_name or 'server.invalid'}",
            f"SERVER_PORT={TLS_PORT}",
            "# local: YAMNet on this Pi, only results leave it; server: audio crosses the bridge",
            "# (QoS 0). Must match the bridge.conf that `soundscape device add` rendered.",
            f"SENSOR_INFERENCE={sensor_inference}",
        ]
        if sensor_inference == "local":
            lines.append("COMPOSE_PROFILES=local-inference")
    return "\n".join(lines) + "\n"


def _subject_alt_names(server_name: str) -> str:
    names = []
    for name in dict.fromkeys([server_name, "localhost", "127.0.0.1"]):
        try:
            ipaddress.ip_address(name)
        except ValueError:
            names.append(f"DNS:{name}")
        else:
            names.append(f"IP:{name}")
    return ",".join(names)


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise InitError("openssl not found: apt-get install openssl")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise InitError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_server_tls(tls_dir: Path, ca_dir: Path, server_name: str) -> None:
    """A CA (key in `ca_dir`) and a server certificate for `server_name` and localhost."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ca_dir, 0o700)
    ca_key, ca_crt = ca_dir / "ca.key", tls_dir / "ca.crt"
    key, crt = tls_dir / "server.key", tls_dir / "server.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    old = os.umask(0o077)
    try:
        _openssl(
            "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt),
            "-days", str(CA_DAYS), "-subj", "/CN=soundscape deployment CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            csr, ext = Path(tmp) / "server.csr", Path(tmp) / "server.ext"
            ext.write_text(
                f"subjectAltName={_subject_alt_names(server_name)}\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid\n"
            )
            _openssl(
                "req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
                "-subj", f"/CN={server_name}",
            )  # fmt: skip
            _openssl(
                "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                "-CAcreateserial", "-CAserial", str(ca_dir / "ca.srl"),
                "-out", str(crt), "-days", str(SERVER_DAYS), "-extfile", str(ext),
            )  # fmt: skip
    finally:
        os.umask(old)
    # Certificates are public; the server key stays 0600 (the broker's entrypoint, as root,
    # hands Mosquitto a copy it can read).
    os.chmod(ca_crt, 0o644)
    os.chmod(crt, 0o644)


def write_acl(config_dir: Path, prefix: str) -> Path:
    """Render the ACL for `prefix` into `config_dir/broker/acl` (readable by the broker)."""
    path = config_dir / "broker" / "acl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_acl(prefix), encoding="utf-8")
    os.chmod(path, 0o644)
    return path


def init(
    folder: Path,
    role: Role,
    prefix: str,
    device_id: str | None,
    server_name: str | None,
    sensor_inference: Literal["local", "server"] = "local",
    force: bool = False,
) -> list[Path]:
    """Set up `folder` for `role`; the files written. Raises InitError, changing nothing."""
    try:
        check_prefix(prefix)
        if device_id is not None:
            check_id(device_id, "device id")
    except MessageError as exc:
        raise InitError(str(exc)) from exc
    if role != "server" and device_id is None:
        raise InitError(f"--device-id is required for --role {role}")
    if device_id is not None and device_id in RESERVED_IDS:
        raise InitError(f"device id {device_id!r} is a service account; choose another")
    if role == "server" and not server_name:
        raise InitError("--server-name (the name sensors connect to) is required for a server")
    env_path = folder / ".env"
    if env_path.exists() and not force:
        raise InitError(f"{env_path} exists: its passwords are in use (--force replaces them)")
    written = []
    if role == "server":
        assert server_name is not None
        make_server_tls(folder / "config" / "tls", folder / "ca", server_name)
        written += [folder / "config" / "tls" / n for n in ("ca.crt", "server.crt", "server.key")]
    written.append(write_acl(folder / "config", prefix))
    text = render_env(role, prefix, device_id, server_name, sensor_inference)
    fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(env_path, 0o600)
    written.insert(0, env_path)
    return written


def env_prefix(env_path: Path) -> str | None:
    """SOUNDSCAPE_MQTT_TOPIC_PREFIX of an existing `.env`, if it sets one."""
    for line in env_path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name == "SOUNDSCAPE_MQTT_TOPIC_PREFIX":
            return value.strip()
    return None


def _acl_only(folder: Path, prefix: str | None) -> int:
    env_path = folder / ".env"
    if prefix is None and env_path.exists():
        prefix = env_prefix(env_path)
    if prefix is None:
        print(f"soundscape init: no --prefix and no prefix in {env_path}", file=sys.stderr)
        return 2
    try:
        check_prefix(prefix)
    except MessageError as exc:
        print(f"soundscape init: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {write_acl(folder / 'config', prefix)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Write `.env`, the ACL and (server) the TLS files; print what to run next."""
    parser = argparse.ArgumentParser(
        prog="soundscape init",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--role", choices=ROLES, default="all-in-one", help="topology")
    parser.add_argument("--prefix", help="MQTT topic prefix (default soundscape)")
    parser.add_argument("--device-id", help="this Pi's device id (all-in-one, sensor)")
    parser.add_argument(
        "--server-name", help="host name or address of the server's broker (server, sensor)"
    )
    parser.add_argument(
        "--sensor-inference",
        choices=("local", "server"),
        default="local",
        help="sensor: classify on the Pi (local) or send audio to the server",
    )
    parser.add_argument("--dir", type=Path, default=Path("."), help="deployment folder")
    parser.add_argument("--force", action="store_true", help="replace an existing .env")
    parser.add_argument(
        "--acl-only",
        action="store_true",
        help="only (re-)render config/broker/acl, for --prefix or the existing .env's prefix "
        "(a sensor bundle from `soundscape device add` brings its own .env)",
    )
    args = parser.parse_args(argv)
    if args.acl_only:
        return _acl_only(args.dir, args.prefix)
    try:
        written = init(
            args.dir,
            args.role,
            args.prefix or "soundscape",
            args.device_id,
            args.server_name,
            args.sensor_inference,
            args.force,
        )
    except InitError as exc:
        print(f"soundscape init: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    compose = COMPOSE_FILES[args.role]
    flag = "" if compose == "docker-compose.yml" else f"-f {compose} "
    print(f"next: docker compose {flag}up -d   (or docker-compose {flag}up -d)")
    return 0
