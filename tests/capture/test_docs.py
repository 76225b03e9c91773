"""docs/capture.md documents every setting and every counter capture publishes."""

from __future__ import annotations

import re
from pathlib import Path

from services.capture.settings import CaptureSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "capture.md"


def test_every_setting_is_documented_with_its_description() -> None:
    text = DOC.read_text()
    rows = {
        m[1]: m[2]
        for m in re.finditer(r"^\| `(SOUNDSCAPE_CAPTURE_\w+)` \|[^|]*\| (.*) \|$", text, re.M)
    }
    fields = CaptureSettings.model_fields
    assert set(rows) == {f"SOUNDSCAPE_CAPTURE_{name.upper()}" for name in fields}
    for name, field in fields.items():
        assert field.description is not None
        assert rows[f"SOUNDSCAPE_CAPTURE_{name.upper()}"].startswith(field.description)


def test_every_counter_is_documented() -> None:
    text = DOC.read_text()
    root = Path(__file__).resolve().parents[2] / "services" / "capture"
    used = set()
    for path in root.glob("*.py"):
        used |= set(re.findall(r"counters\[\"(\w+)\"\]", path.read_text()))
    assert used >= {"chunks", "gaps", "samples_lost", "restarts"}
    for name in used:
        assert f"`{name}`" in text, name
