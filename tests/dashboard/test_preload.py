"""The frontend preload: which of Streamlit's chunks the page's first element imports."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from services.dashboard import preload


def _build(root: Path, files: dict[str, str]) -> Path:
    js = root / "static" / "js"
    js.mkdir(parents=True)
    (root / "index.html").write_text(
        '<link rel="modulepreload" href="./static/js/shared.1.js">'
        '<script type="module" crossorigin src="./static/js/index.A1.js"></script>'
    )
    for name, text in files.items():
        (js / name).write_text(text)
    return root


def test_the_entries_and_what_they_import_beyond_the_app_module(tmp_path: Path) -> None:
    static = _build(
        tmp_path,
        {
            "index.A1.js": 'import{a}from"./shared.1.js";const p=()=>import(`./PlotlyChart.P.js`);',
            "index.esm.Z.js": "",  # a chunk whose name also starts with index.
            "shared.1.js": "export const a=1;",
            "PlotlyChart.P.js": 'import{a}from"./shared.1.js";import"./plotly.2.js";',
            "plotly.2.js": 'import {b} from "./deep.3.js"; const lazy=()=>import("./lazy.4.js");',
            "deep.3.js": "export const b=2;",
            "lazy.4.js": "",
            "DataFrame.D.js": 'import{a}from"./shared.1.js";import{c}from"./arrow.5.js";',
            "arrow.5.js": "export const c=3;",
        },
    )
    entries, deps = preload.chunks(static)
    assert entries == ("PlotlyChart.P.js", "DataFrame.D.js")
    # shared.1.js is the app module's own; lazy.4.js is a dynamic import: neither preloaded.
    assert deps == ("arrow.5.js", "deep.3.js", "plotly.2.js")


def test_a_build_without_those_chunks_preloads_nothing(tmp_path: Path) -> None:
    static = _build(tmp_path, {"index.A1.js": ""})
    assert preload.chunks(static) == ((), ())
    assert preload.chunks(tmp_path / "missing") == ((), ())


def test_this_streamlit_has_every_chunk_the_pages_use() -> None:
    entries, deps = preload.chunks()
    assert [e.split(".")[0] for e in entries] == list(preload.PRELOAD)
    js = Path(st.__file__).parent / "static" / "static" / "js"
    assert deps and all((js / name).is_file() for name in (*entries, *deps))
    text = preload.script(entries, deps)
    assert all(f'"{name}"' in text for name in (*entries, *deps))
    assert text.startswith("<script>") and text.endswith("</script>")
