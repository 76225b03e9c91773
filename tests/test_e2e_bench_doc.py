"""`benchmarks/e2e_bench.py --write` replaces only its own block of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import e2e_bench


def test_write_replaces_its_block_and_keeps_the_analysis_around_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "benchmarks.md"
    before = "# Benchmarks\n\n## End to end\n\nHow to read it.\n\n"
    after = "\nWhat limits it, in words.\n\n## Next\n"
    doc.write_text(before + e2e_bench.BEGIN + "old table\n" + e2e_bench.END + after)
    monkeypatch.setattr(e2e_bench, "DOC", doc)
    e2e_bench.write_doc("new table\n\n![plot](e2e_bench.png)\n")
    assert doc.read_text() == (
        before + e2e_bench.BEGIN + "new table\n\n![plot](e2e_bench.png)\n" + e2e_bench.END + after
    )


def test_write_adds_the_section_where_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    monkeypatch.setattr(e2e_bench, "DOC", doc)
    e2e_bench.write_doc("a table")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\n## End to end\n\n" + e2e_bench.BEGIN + "a table\n")
    assert text.endswith(e2e_bench.END)
