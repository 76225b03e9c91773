"""`.env.example` names every variable the Compose files require (`${VAR:?...}`), so the
documented `docker-compose --env-file .env.example config` renders each of them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ("docker-compose.yml", "compose.server.yml", "compose.sensor.yml")


def test_env_example_defines_every_required_variable() -> None:
    required = {
        name
        for f in COMPOSE
        for name in re.findall(r"\$\{([A-Z0-9_]+):\?", (ROOT / f).read_text(encoding="utf-8"))
    }
    defined = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert required, "no required variables found: the pattern is wrong"
    assert sorted(required - defined) == []
