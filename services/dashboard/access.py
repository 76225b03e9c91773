"""Pure: who may see the dashboard. The password check and the rule for listen addresses."""

from __future__ import annotations

import hmac
import ipaddress


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison (of the UTF-8 bytes: compare_digest takes ASCII-only str)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def is_loopback(address: str) -> bool:
    """True for `localhost` and loopback IPs (127.0.0.0/8, ::1); False for anything else,
    all-interfaces addresses ("", 0.0.0.0, ::) and other host names included."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_refusal(address: str, has_password: bool, trust_proxy_auth: bool) -> str | None:
    """Why the dashboard must not listen on `address`, or None when it may."""
    if has_password or trust_proxy_auth or is_loopback(address):
        return None
    return (
        f"refusing to listen on {address or 'every interface'!r} without a password: anyone "
        "who reaches it would see every device's data. Set SOUNDSCAPE_DASHBOARD_PASSWORD, or "
        "listen on 127.0.0.1, or, only behind a reverse proxy that authenticates every "
        "request, set SOUNDSCAPE_DASHBOARD_TRUST_PROXY_AUTH=true (see docs/dashboard.md)"
    )
