"""Mosquitto password-file lines, made with hashlib (no `mosquitto_passwd` needed).

Mosquitto 2.0 reads `user:$7$<iterations>$<base64 salt>$<base64 hash>` where the hash is
PBKDF2-HMAC-SHA512 of the password over the (decoded) salt, 64 bytes long; `mosquitto_passwd`
writes 101 iterations and a 12-byte salt, and so does this module. A line made here and one
made by `mosquitto_passwd` are interchangeable (the tests check both ways).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from typing import Final

#: What mosquitto_passwd 2.0 writes.
ITERATIONS: Final = 101
SALT_BYTES: Final = 12
HASH_BYTES: Final = 64


def new_password() -> str:
    """A fresh random password (URL-safe, 32 characters: no quoting needed anywhere)."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The `$7$...` hash of `password` (a fresh random salt unless given)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify(hashed: str, password: str) -> bool:
    """True when `hashed` (a `$7$` hash) is the hash of `password`."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)


def parse(text: str) -> dict[str, str]:
    """user -> hash of a password file, in file order (blank lines and comments skipped)."""
    entries: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise ValueError(f"not a password-file line: {user[:40]!r}...")
        entries[user] = hashed
    return entries


def render(entries: dict[str, str]) -> str:
    """A password file with one `user:hash` line per entry."""
    return "".join(f"{user}:{hashed}\n" for user, hashed in entries.items())
