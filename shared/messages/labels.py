"""`{prefix}/{device}/labels`: what inference heard in one window. Owned by inference."""

from __future__ import annotations

from pydantic import Field

from shared.messages.common import Part, Text
from shared.messages.window import WindowMessage


class LabelScore(Part):
    """One AudioSet class and its sigmoid score."""

    label: Text = Field(description="Class display name from the model's id2label")
    score: float = Field(ge=0.0, le=1.0, description="Sigmoid of the logit, 0..1")


class LabelsResult(WindowMessage):
    """`{prefix}/{device}/labels`: the top-k classes of one analysis window."""

    LEAF = "labels"

    model: Text = Field(description="Model id or path that produced the scores")
    labels: list[LabelScore] = Field(
        min_length=1, max_length=527, description="Top-k labels, highest score first"
    )
    speech_present: bool | None = Field(
        None, description="Speech scored above threshold anywhere in the full score vector"
    )
    inference_ms: float | None = Field(None, ge=0, description="Time spent classifying, ms")
