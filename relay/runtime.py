"""Process-wide settings of a running node.

CPython's cyclic garbage collector scans every container object it tracks. A node holds
many long-lived ones (thousands of sessions with their timers and readers, a writer
backlog of decoded frames) and allocates tens of containers per frame, so with the
default thresholds (700, 10, 10) it ran a full collection every few seconds under load,
each taking a quarter of a second: 6.5 s of a 25 s ingest benchmark went to the
collector, and every full collection stalled all connections. Frames are trees of
dicts and lists freed by reference counting; cycles are rare (a failed Deferred's
traceback). So: freeze what start-up created (never garbage) and collect the young
generation after 50,000 allocations instead of 700. Measured in ``relay bench ingest``:
collector time 6.5 s -> 1.2 s, node CPU per frame 96 -> 78 us. Later, through three
tiers at 5,000 frames/s (``relay bench e2e``), a young collection still took 10-25 ms and
came every second or so: after 200,000 allocations instead (the middle generation after
10 of those instead of 20, so a full collection after some 200 million allocations
instead of 100 million) the young collections of a 10 s run took 0.06-0.10 s per tier
instead of 0.13-0.41 s.

Called once per process by the entry points that run nodes (``relay run``, ``relay
demo``, the benchmarks), never by the library: a test process keeps the defaults.
"""

from __future__ import annotations

import gc

#: young-generation threshold and the two older ones (collections of the younger)
GC_THRESHOLDS = (200_000, 10, 100)


def settle_gc() -> None:
    """Freeze the objects made so far and raise the collector's thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
