"""Species results at ingest's boundary: rows in the species table's column order, the key,
and hostile species payloads rejected with a reason."""

from __future__ import annotations

import msgpack
import pytest

from services.ingest.core import Rejection, Result, Triage, result_key, row_problem, rows_of
from services.ingest.schema import TABLES
from shared.errors import MessageError
from shared.messages import SpeciesResult, SpeciesScore
from tests.ingest.helpers import NOW, T0


def species(seq: int = 3) -> SpeciesResult:
    return SpeciesResult(
        device="yor",
        seq=seq,
        start=T0 + 3 * seq,
        duration=3.0,
        model="BirdNET_GLOBAL_6K_V2.4",
        detections=[
            SpeciesScore(scientific_name="Parus major", common_name="Great Tit", score=0.8),
            SpeciesScore(
                scientific_name="Turdus merula", common_name="Eurasian Blackbird", score=0.3
            ),
        ],
        min_confidence=0.25,
        location_filtered=True,
        inference_ms=40.0,
    )


def test_one_row_per_species_in_rank_order() -> None:
    msg = species()
    table = TABLES["species"]
    got = [dict(zip(table.names, r, strict=True)) for r in rows_of(msg)]
    assert [(g["scientific_name"], g["rank"]) for g in got] == [
        ("Parus major", 1),
        ("Turdus merula", 2),
    ]
    assert got[0]["window_start"] == T0 + 9 and got[0]["window_duration"] == 3.0
    assert all(row_problem("species", r) is None for r in rows_of(msg))
    assert result_key(msg) == '["yor", "1764400009.0", "BirdNET_GLOBAL_6K_V2.4"]'
    verdict = Triage("p").message(msg.topic("p"), msg.encode(), None, NOW)
    assert isinstance(verdict, Result) and verdict.kind == "species"


@pytest.mark.parametrize(
    "change",
    [
        {"detections": []},
        {"detections": [{"scientific_name": "Parus\x00", "common_name": "x", "score": 0.5}]},
        {
            "detections": [
                {"scientific_name": "Parus major", "common_name": "Great Tit", "score": 1.5}
            ]
        },
        {"detections": [{"scientific_name": "a", "common_name": "b", "score": 0.5}] * 51},
        {"location_filtered": "yes"},
    ],
    ids=["empty", "nul", "score", "too-many", "type"],
)
def test_hostile_species_payloads_are_rejected(change: dict[str, object]) -> None:
    data = {**species().model_dump(), **change}
    payload = msgpack.packb(data, use_bin_type=True)
    with pytest.raises(MessageError):
        SpeciesResult.decode(payload)
    verdict = Triage("p").message("p/yor/species", payload, None, NOW)
    assert isinstance(verdict, Rejection)
