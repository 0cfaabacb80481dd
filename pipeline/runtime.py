"""Process-level CPU settings for the torch stages (train, ensemble, predict, baselines).

Why: glibc malloc serves every block above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and gives it
back with ``munmap`` on free. PyTorch's CPU allocator does not cache, so every large intermediate tensor (one
line-graph activation of a 64-crystal batch at width 256 is ~70 MB) is page-faulted in anew on first touch. On this
machine that made a 70 MB ``sigmoid`` take 47 ms instead of 10 ms, and it dominated training time.

The usual remedy is jemalloc/tcmalloc through ``LD_PRELOAD``; they are not pip-installable and would need a launcher
change on every cluster, so we use glibc's own ``mallopt`` instead (hand-written because no maintained package
wraps it): ``M_MMAP_MAX = 0`` makes large blocks come from the heap (glibc still falls back to mmap when the heap
cannot grow) and ``M_TRIM_THRESHOLD = -1`` (never trim) keeps freed blocks for reuse instead of returning them to
the system. A finite threshold is not enough: a paper-preset training step holds a few GB of activations, so the
free space at the top of the heap after each step exceeds any threshold below that and was trimmed, only to be
faulted in again by the next step. Resident memory therefore stays at the process's peak (as with PyTorch's CUDA
caching allocator) instead of dropping between steps.

Set ``PHONON_MALLOC_TUNING=0`` to leave malloc alone. Off glibc (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_MAX = -4
NEVER_TRIM = -1  # glibc reads it as SIZE_MAX

_applied: bool | None = None


def tune_malloc_for_torch() -> bool:
    """Apply the glibc settings above once per process; True when they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("PHONON_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)) and bool(mallopt(M_MMAP_MAX, 0))
    return _applied
