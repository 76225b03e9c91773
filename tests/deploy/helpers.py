"""Helpers for the deployment tests: a CA and certificates made with openssl, broker
configurations built from the shipped base, and a blocking paho client."""

from __future__ import annotations

import re
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from services.deploy.acl import render_acl
from shared.messages import RESULT_TYPES

ROOT = Path(__file__).resolve().parents[2]
BASE_CONF = ROOT / "mosquitto" / "mosquitto.conf"


RESULTS = tuple(sorted(RESULT_TYPES))


def acl_fixture(prefix: str) -> str:
    """The deployment's ACL as `soundscape init` renders it, plus a test-only `tap` user that
    watches what a broker carries (audio included)."""
    tap = [f"topic read {prefix}/+/{leaf}" for leaf in ("audio", *RESULTS)]
    return render_acl(prefix) + "\n".join(["# Test only.", "user tap", *tap]) + "\n"


@dataclass(frozen=True)
class Pki:
    """A test CA with a server certificate (localhost, 127.0.0.1) and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki(folder: Path) -> Pki:
    """Make a CA and sign a server and a client certificate with it (EC keys: fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    _openssl(
        "req", "-x509", *key, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=soundscape test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    leaves = {}
    for name, usage, san in (
        ("server", "serverAuth", "DNS:localhost,IP:127.0.0.1"),
        ("client", "clientAuth", "DNS:client"),
    ):
        crt, pem = folder / f"{name}.crt", folder / f"{name}.key"
        _openssl(
            "req", "-x509", *key, "-keyout", str(pem), "-out", str(crt), "-days", "2",
            "-subj", f"/CN={name}", "-CA", str(ca), "-CAkey", str(ca_key),
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=critical,digitalSignature",
            "-addext", f"extendedKeyUsage={usage}",
            "-addext", f"subjectAltName={san}",
        )  # fmt: skip
        pem.chmod(0o600)
        leaves[name] = (crt, pem)
    return Pki(ca, *leaves["server"], *leaves["client"])


def tls_listener(port: int, pki: Pki, require_certificate: bool = False) -> str:
    """A TLS listener on 127.0.0.1:`port` with the test CA's server certificate."""
    lines = [
        f"listener {port} 127.0.0.1",
        f"cafile {pki.ca}",
        f"certfile {pki.server_cert}",
        f"keyfile {pki.server_key}",
    ]
    if require_certificate:
        lines.append("require_certificate true")
    return "\n".join(lines) + "\n"


def base_conf(*, passwd: Path, acl: Path, data: Path) -> str:
    """The shipped base configuration with this test's paths and without its listeners
    (`start_mosquitto` adds the first one)."""
    data.mkdir(parents=True, exist_ok=True)
    out = []
    for line in BASE_CONF.read_text().splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() else ""
        if key in {"listener", "port", "bind_address"}:
            continue
        if key == "password_file":
            line = f"password_file {passwd}"
        elif key == "acl_file":
            line = f"acl_file {acl}"
        elif key == "persistence_location":
            line = f"persistence_location {data}/"
        elif key == "include_dir" or (key == "log_dest" and "stdout" not in line):
            continue
        out.append(line)
    text = "\n".join(out) + "\n"
    if not re.search(r"^use_username_as_clientid\s+true", text, re.M):
        # The deployment binds client ids to users; so must the tests' brokers.
        text += "use_username_as_clientid true\n"
    return text


def build_passwd(path: Path, users: dict[str, str], device_lines: Path | None = None) -> None:
    """What the broker's entrypoint does: hash the service accounts with mosquitto_passwd,
    then append the provisioned devices' lines."""
    path.write_text("")
    path.chmod(0o600)
    for user, password in users.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(path), user, password], check=True, timeout=30
        )
    if device_lines is not None and device_lines.exists():
        with path.open("a") as out:
            out.write(device_lines.read_text())


class Client:
    """A blocking paho MQTT 5 client that records what it receives."""

    def __init__(
        self,
        port: int,
        user: str | None,
        password: str | None = None,
        *,
        ca: Path | None = None,
        client_id: str = "",
    ) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.rc: object = None
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if user:
            self.c.username_pw_set(user, password)
        if ca is not None:
            self.c.tls_set_context(ssl.create_default_context(cafile=str(ca)))
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.connected.wait(5)

    def _on_connect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.rc = rc
        self.connected.set()

    @property
    def accepted(self) -> bool:
        return self.rc is not None and not getattr(self.rc, "is_failure", True)

    def sub(self, topic: str, qos: int = 1) -> None:
        self.c.subscribe(topic, qos=qos)

    def pub(self, topic: str, payload: bytes = b"x", qos: int = 1, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.got]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
