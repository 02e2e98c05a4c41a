"""app/runtime/memory.py: freed chunk-sized buffers are reused, not faulted in again; what start-up made is frozen."""
from __future__ import annotations

import json
import subprocess
import sys

# In a process of its own: allocate and free 8 MiB buffers 64 times, touching every page, and print the
# minor page faults that took. ``keep`` 0 is glibc's defaults.
PROBE = """
import os, resource, sys
from app.runtime import memory
took = memory.keep_freed(int(sys.argv[1]))
data = os.urandom(8 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(64):
    buf = bytearray(data)
    copy = bytes(buf) + b"x"
    del buf, copy
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(keep_mb: int) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(keep_mb)], capture_output=True, text=True, check=True)
    took, count = out.stdout.split()
    return took == "True", int(count)


def test_kept_memory_is_reused_rather_than_faulted_in_again():
    took, tuned = faults(128)
    untouched, plain = faults(0)
    assert took and not untouched
    pages = 64 * 2 * (8 << 20) // 4096          # every page of every buffer, if none were reused
    assert plain > pages // 4, plain            # glibc's defaults give most of them back each time
    assert tuned < pages // 20, tuned           # kept: the first buffers' pages serve all the others


def test_nothing_is_tuned_with_keep_0():
    from app.runtime import memory
    assert memory.keep_freed(0) is False


def test_the_worker_freezes_what_it_made_at_start_and_counts_its_garbage_collections():
    # in a process of its own: freezing is for the whole process
    probe = ("import gc, json\nimport app.main\nfrom app.runtime import memory, status\n"
             "frozen = gc.get_freeze_count()\ngc.collect()\n"
             "print(json.dumps([frozen, status.read('memory'), gc.get_threshold() == memory.THRESHOLDS]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    frozen, report, thresholds = json.loads(out.stdout.split("\n")[-2])
    assert frozen > 50_000 and report["frozen_objects"] == frozen      # modules, Faust, the app
    assert report["gc"]["2"]["collections"] >= 1 and report["gc_cpu_s"] >= 0
    assert thresholds
