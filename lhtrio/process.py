"""Process-wide settings for lhtrio's long-running processes (replica, engine, node).

Garbage collection: the data path allocates many short-lived objects per request (frames, reply
objects, buffers) and almost no reference cycles. CPython's default young-generation threshold
(700 allocations) then runs a collection every few dozen requests. Raising it, and freezing what
start-up allocated, measured about 10 % more RPC round trips per second at 32 in flight
(``nox -s bench -- rpc``). Cycles are still collected, just in larger steps.

Memory allocator: a write of 1 MiB arrives in a buffer of its own. glibc serves such sizes with a
fresh ``mmap`` once its adaptive threshold is passed and gives freed heap tops back to the kernel,
so every large write paid for page faults and the kernel zeroing the pages, on top of Python's
own zeroing. Keeping blocks up to 32 MiB (the protocol's largest request) on the heap, and up to
64 MiB of free heap before trimming, took 3 replicas from 285-373 to 416 MiB/s of 1 MiB writes
over TCP and from 600 to 670 on Unix sockets (``nox -s bench -- nbd``). Nothing happens where
the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

__all__ = ["tune_gc", "tune_malloc"]

GEN0_THRESHOLD = 100_000
_M_TRIM_THRESHOLD = -1  # glibc's mallopt() parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


def tune_gc() -> None:
    """Collect once, freeze the start-up heap, and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, 50, 100)


def tune_malloc() -> bool:
    """Keep large buffers on glibc's heap (see the module docstring); False if not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
