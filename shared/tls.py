"""The TLS context of every MQTT client (aiomqtt and paho alike), from the broker settings.

`SOUNDSCAPE_MQTT_CA_FILE` names the CA that signed the broker's certificate (a deployment's own
CA, `config/tls/ca.crt`); setting it turns TLS on. `SOUNDSCAPE_MQTT_TLS=true` alone verifies
against the system's CA store. A client certificate and key are sent when the broker asks.
The broker's name is always checked against its certificate.
"""

from __future__ import annotations

import ssl

from shared.errors import ConfigError
from shared.settings import MqttSettings


def client_tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """The context to connect with, or None for a plain TCP connection."""
    if not settings.uses_tls:
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file is not None else None
        )
        if settings.cert_file is not None and settings.key_file is not None:
            context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot set up TLS to the broker: {exc}") from exc
    return context
