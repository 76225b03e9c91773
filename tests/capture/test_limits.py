"""Capture refuses a chunk format whose PCM would not fit in one audio message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.capture.settings import CaptureSettings
from shared.messages.audio import MAX_PCM_BYTES


def test_a_chunk_beyond_16_mib_of_pcm_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="more than the 16777216 bytes"):
        CaptureSettings(
            device_id="m", source="synthetic", rate=384_000, channels=8, chunk_seconds=3
        )
    with pytest.raises(ValidationError, match="shorten chunk_seconds"):
        CaptureSettings(device_id="m", source="synthetic", rate=192_000, chunk_seconds=60)


def test_the_largest_chunk_that_fits_is_accepted() -> None:
    # 2.5 s at 384 kHz, 8 channels of S16_LE: 15.36 MB
    s = CaptureSettings(
        device_id="m", source="synthetic", rate=384_000, channels=8, chunk_seconds=2.5
    )
    assert 2.5 * s.rate * 2 * s.channels <= MAX_PCM_BYTES
    assert CaptureSettings(device_id="m", source="synthetic", chunk_seconds=60).rate == 16000
