"""The levels service keeps freed array memory for reuse (services/levels/memory.py)."""

from __future__ import annotations

import platform
import resource

import numpy as np
import pytest

from services.levels.memory import keep_freed_memory


def _blocks(rounds: int) -> None:
    """What measuring blocks of chunks does: a dozen 1 MiB arrays made, then freed."""
    for _ in range(rounds):
        arrays = [np.ones(1 << 17) for _ in range(12)]
        del arrays


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_arrays_are_reused_without_faulting_in_fresh_pages() -> None:
    # glibc's defaults hand the freed megabytes back to the kernel: 20 rounds fault in about
    # 60,000 pages (12 arrays x 256 pages x 20). Kept, the next rounds fault in none.
    assert keep_freed_memory()
    _blocks(2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    _blocks(20)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 256
