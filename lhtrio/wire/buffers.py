"""What a receive-side decoder offers a transport, and the copying way to feed one.

Decoders (protocol v1's, the NBD frontend's) hand out their own memory to receive into
(``receive_buffer`` + ``commit``): a socket transport fills it without a copy. Streams that produce
their own ``bytes`` (memory streams, tests) use :func:`feed`, which copies into the same memory.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable
from typing import Final, Protocol

from lhtrio.wire.messages import Buffer

__all__ = ["PEEK", "Receiver", "feed", "unfilled"]

#: The most a decoder takes in the first receive after a large payload (one received into its own
#: buffer): the next frame's header, and a little more. Large writes come in runs, and whatever
#: part of the next payload lands in the shared buffer is copied into that payload's own buffer.
#: With a full 256 KiB receive that copy was 7 % of a replica's CPU and 2.9 % of the engine's in
#: 1 MiB writes, 1 % and 0.35 % with this limit (perf, 2026-12-04). A run of small frames loses
#: one short receive.
PEEK: Final = 16 << 10


class Receiver(Protocol):
    def receive_buffer(self) -> memoryview: ...
    def commit(self, nbytes: int) -> None: ...
    def receive_data(self, data: Buffer) -> None: ...


def _bytearray_allocator() -> Callable[[int], bytearray]:
    if sys.implementation.name != "cpython":
        return bytearray
    new = ctypes.pythonapi.PyByteArray_FromStringAndSize
    new.argtypes = (ctypes.c_char_p, ctypes.c_ssize_t)
    new.restype = ctypes.py_object
    return functools.partial(new, None)


_allocate = _bytearray_allocator()


def unfilled(size: int) -> bytearray:
    """A new ``bytearray`` of ``size`` bytes, not zeroed: it holds whatever memory it was given.

    For a large payload's own receive buffer, which the decoder hands on only once the peer
    filled every byte of it. ``bytearray(size)`` zeroes the memory first, only for the receive to
    overwrite it: 14 µs per MiB here, 8 % of a replica's CPU and 2.4 % of the engine's in 1 MiB
    writes (perf). CPython's ``PyByteArray_FromStringAndSize(NULL, size)`` leaves it as it is.
    The old contents are this process's memory (in a node, other volumes' data), so such a
    buffer must never be handed on, sent or written before it is full.
    """
    return _allocate(size)


def feed(receiver: Receiver, data: Buffer) -> None:
    """Copy ``data`` into ``receiver``'s buffers, as much per step as they offer."""
    view = memoryview(data).cast("B")
    while view:
        target = receiver.receive_buffer()
        n = min(len(target), len(view))
        target[:n] = view[:n]
        receiver.commit(n)
        view = view[n:]
