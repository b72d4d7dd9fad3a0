"""One glibc malloc arena for the whole sidecar (decision 161), and the heap's free pages
given back after the exporters' bursts (decision 178).

glibc gives each thread that allocates an arena of its own (up to 8 per CPU), and memory
freed in one arena is not reused by another: every exporter thread of MeshAccessLog,
MeshMetric and MeshTrace (and the resolver's) then holds its own ~1.5 MiB of heap beside the
main one. Python allocates under the GIL, so the arenas buy these threads no parallelism; one
arena (`M_ARENA_MAX` 1, as `MALLOC_ARENA_MAX=1` would set it) keeps the sidecar's heap in
one place and within its RSS budget (docs/benchmarks.md).

glibc returns freed memory to the system only from the top of the heap: what an export
burst frees in its middle stays resident (0.4-0.7 MiB with the three OpenTelemetry backends
under load). `trim` (`malloc_trim(0)`, ~0.1-0.3 ms) releases those pages; the exporter
threads call it when their queue runs empty after a batch, at most once every TRIM_SECONDS.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024  # glibc's default, kept fixed
TRIM_SECONDS = 1.0

_trim: Callable[[int], int] | None = None  # glibc's malloc_trim, once one_arena found it
_next_trim = 0.0


def one_arena() -> bool:
    """Limits malloc to one arena; False where there is no glibc `mallopt` (e.g. musl)."""
    global _trim
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # only here: the sidecar has no other use for it

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _trim = getattr(libc, "malloc_trim", None)
    # fixed, it is not raised by each large buffer freed (glibc raises it up to 32 MiB, and
    # big export bodies then stay in the heap once freed instead of going back to the system)
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return bool(mallopt(M_ARENA_MAX, 1))


def trim(now: float | None = None) -> bool:
    """Gives the heap's free pages back to the system, unless done less than TRIM_SECONDS
    ago (any thread; a race costs one more trim). False: not done (too soon, no glibc)."""
    global _next_trim
    now = time.monotonic() if now is None else now
    if _trim is None or now < _next_trim:
        return False
    _next_trim = now + TRIM_SECONDS
    _trim(0)
    return True
