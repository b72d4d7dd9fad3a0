"""One glibc malloc arena for the whole sidecar (decision 161).

glibc gives each thread that allocates an arena of its own (up to 8 per CPU), and memory
freed in one arena is not reused by another: every exporter thread of MeshAccessLog,
MeshMetric and MeshTrace (and the resolver's) then holds its own ~1.5 MiB of heap beside the
main one. Python allocates under the GIL, so the arenas buy these threads no parallelism; one
arena (`M_ARENA_MAX` 1, as `MALLOC_ARENA_MAX=1` would set it) keeps the sidecar's heap in
one place and within its RSS budget (docs/benchmarks.md).
"""

from __future__ import annotations

import sys

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024  # glibc's default, kept fixed


def one_arena() -> bool:
    """Limits malloc to one arena; False where there is no glibc `mallopt` (e.g. musl)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # only here: the sidecar has no other use for it

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # fixed, it is not raised by each large buffer freed (glibc raises it up to 32 MiB, and
    # big export bodies then stay in the heap once freed instead of going back to the system)
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return bool(mallopt(M_ARENA_MAX, 1))
