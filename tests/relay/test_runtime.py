"""relay/runtime.py: the collector settings a node process runs with (checked in a child
process: the test process keeps CPython's defaults)."""

from __future__ import annotations

import json
import subprocess
import sys

from relay.runtime import GC_THRESHOLDS


def test_settle_gc_freezes_start_up_objects_and_raises_the_thresholds():
    code = ("import gc, json; from relay.runtime import settle_gc; before = gc.get_threshold(); settle_gc(); "
            "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    before, after, frozen = json.loads(out.stdout)
    assert tuple(before) == (700, 10, 10)  # CPython's defaults, to show the change is ours
    assert tuple(after) == GC_THRESHOLDS and GC_THRESHOLDS[0] >= 10_000
    assert frozen > 1000  # the modules and objects made before it
