"""Garbage collection during a run: rare full collections, and freed memory handed back before a second copy."""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

#: a young (generation 0) collection after this many allocations during a run (Python's default: 700)
YOUNG_COLLECTION_ALLOCATIONS = 50_000


@contextlib.contextmanager
def rare_full_collections() -> Iterator[None]:
    """Python's full (generation 2) collections walk every object the imported libraries made (about 200,000):
    seven of them cost 0.7 s of a long run. Young garbage is collected every 50,000 allocations rather than 700
    (as in a run's kernel, :mod:`labkit.runners.kernel`: 0.3 s of a long in-process run, same peak memory), a full
    collection runs where the run asks for one (:func:`release_memory`), and the thresholds are restored
    afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], YOUNG_COLLECTION_ALLOCATIONS), before[1], max(before[2], 1000))
    try:
        yield
    finally:
        gc.set_threshold(*before)


def release_memory() -> None:
    """Collect reference cycles and hand freed heap back to the system (glibc), so a long recording's
    next copy reuses that memory instead of adding to the peak."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
