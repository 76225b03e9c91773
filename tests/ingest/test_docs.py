"""docs/ingest.md stays true: its settings table and roles SQL are what the code has."""

from __future__ import annotations

from pathlib import Path

from services.ingest.schema import TABLES, roles_sql
from services.ingest.settings import IngestSettings
from services.settings_doc import render_class

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest.md"


def test_settings_table_matches_the_settings_class() -> None:
    text = DOC.read_text(encoding="utf-8")
    inside = text.split("<!-- settings:begin -->\n", 1)[1].split("\n<!-- settings:end -->", 1)[0]
    table = "\n".join(render_class(IngestSettings).splitlines()[4:])
    assert inside == table, "regenerate the table in docs/ingest.md from render_class"


def test_roles_sql_and_tables_are_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert roles_sql("soundscape_ingest", "soundscape_reader").rstrip("\n") in text
    for table in [*(t.name for t in TABLES.values()), "devices", "syncs", "gaps"]:
        assert f"| `{table}` |" in text, table
