"""`{prefix}/{device}/species`: bird species BirdNET detected in one window. Owned by
inference (a worker with the birdnet backend)."""

from __future__ import annotations

from pydantic import Field

from shared.messages.common import Part, Text
from shared.messages.window import WindowMessage

#: Most species one result may carry (those above the minimum confidence, highest first).
MAX_SPECIES = 50


class SpeciesScore(Part):
    """One species and its BirdNET score."""

    scientific_name: Text = Field(description="Scientific name, e.g. 'Turdus merula'")
    common_name: Text = Field(description="English common name, e.g. 'Eurasian Blackbird'")
    score: float = Field(ge=0.0, le=1.0, description="BirdNET's sigmoid score, 0..1")


class SpeciesResult(WindowMessage):
    """`{prefix}/{device}/species`: species scored at or above the minimum confidence in one
    window (start .. start + duration); a window with none publishes nothing."""

    LEAF = "species"
    MAX_PAYLOAD_BYTES = 64 * 1024
    MAX_ITEMS = MAX_SPECIES
    MAX_CONTAINERS = MAX_SPECIES + 2

    model: Text = Field(description="Model id that produced the scores")
    detections: list[SpeciesScore] = Field(
        min_length=1, max_length=MAX_SPECIES, description="Species, highest score first"
    )
    min_confidence: float = Field(
        ge=0.0, le=1.0, description="Lowest score that counted as a detection"
    )
    location_filtered: bool = Field(
        description="Species not expected at the device's coordinates and week were removed"
    )
    inference_ms: float | None = Field(None, ge=0, description="Time spent classifying, ms")
