"""`{prefix}/{device}/labels`: what inference heard in one window. Owned by inference."""

from __future__ import annotations

from pydantic import Field

from shared.messages.common import Part, Text
from shared.messages.window import WindowMessage

#: Most labels one result may carry: every AudioSet class.
MAX_LABELS = 527


class LabelScore(Part):
    """One AudioSet class and its sigmoid score."""

    label: Text = Field(description="Class display name from the model's id2label")
    score: float = Field(ge=0.0, le=1.0, description="Sigmoid of the logit, 0..1")


class LabelsResult(WindowMessage):
    """`{prefix}/{device}/labels`: the top-k classes of one analysis window."""

    LEAF = "labels"
    MAX_PAYLOAD_BYTES = 512 * 1024  # 527 labels of 200 characters fit, in UTF-8 too
    MAX_ITEMS = MAX_LABELS
    MAX_CONTAINERS = MAX_LABELS + 2

    model: Text = Field(description="Model id or path that produced the scores")
    labels: list[LabelScore] = Field(
        min_length=1, max_length=MAX_LABELS, description="Top-k labels, highest score first"
    )
    speech_present: bool | None = Field(
        None, description="Speech scored above threshold anywhere in the full score vector"
    )
    inference_ms: float | None = Field(None, ge=0, description="Time spent classifying, ms")
