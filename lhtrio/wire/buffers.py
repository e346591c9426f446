"""What a receive-side decoder offers a transport, and the copying way to feed one.

Decoders (protocol v1's, the NBD frontend's) hand out their own memory to receive into
(``receive_buffer`` + ``commit``): a socket transport fills it without a copy. Streams that produce
their own ``bytes`` (memory streams, tests) use :func:`feed`, which copies into the same memory.
"""

from __future__ import annotations

from typing import Protocol

from lhtrio.wire.messages import Buffer

__all__ = ["Receiver", "feed"]


class Receiver(Protocol):
    def receive_buffer(self) -> memoryview: ...
    def commit(self, nbytes: int) -> None: ...
    def receive_data(self, data: Buffer) -> None: ...


def feed(receiver: Receiver, data: Buffer) -> None:
    """Copy ``data`` into ``receiver``'s buffers, as much per step as they offer."""
    view = memoryview(data).cast("B")
    while view:
        target = receiver.receive_buffer()
        n = min(len(target), len(view))
        target[:n] = view[:n]
        receiver.commit(n)
        view = view[n:]
