"""Keep freed array memory in the process, so measuring a batch does not fault in fresh pages.

Measuring a layer of chunks allocates a dozen arrays of 1-4 MB each (8 to 32 rows of 16,000
float64 samples, their spectra, the weighted signals) and frees them again. glibc serves
allocations above its mmap threshold (128 kB at first) with fresh mappings from the kernel and
returns them on free, so every layer faulted in every page of every array again: about a
tenth to a third of the measurement's CPU time, much of it in the kernel
(`benchmarks.levels_bench` compares the two in fresh processes). Raising the threshold and
the trim threshold keeps that memory in the heap for the next layer; the process's resident
size then stays near its peak working set (tens of MB).
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: `mallopt` parameters (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's largest mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX): 32 MiB.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept rather than returned to the kernel.
TRIM_THRESHOLD = 128 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed large blocks; False where that is not possible (another
    C library, such as musl or macOS's), which only makes measuring slower."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
