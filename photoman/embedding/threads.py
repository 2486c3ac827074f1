"""How many threads ONNX Runtime uses for the calling thread's next encodings.

The daemon splits the cores between its indexer and its queries per thread (the indexer takes half,
a query what is left, all of them when idle); every ONNX Runtime session, text or image, asks here.
Unset, a thread uses one per physical core: what torch and ONNX Runtime choose themselves, and what
`photoman index` wants beside its decode workers.
"""

from __future__ import annotations

import functools
import os
import threading

_local = threading.local()


def use(n: int) -> None:
    """Threads for this thread's next encodings."""
    _local.n = max(1, int(n))


def current() -> int:
    """This thread's setting, else one per physical core."""
    return getattr(_local, "n", None) or physical_cores()


@functools.cache
def physical_cores() -> int:
    """Physical cores this process may run on (hyperthread siblings counted once)."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/core_cpus_list") as fh:
                cores.add(fh.read().strip())
        except OSError:
            return len(cpus) or 1
    return len(cores) or 1
