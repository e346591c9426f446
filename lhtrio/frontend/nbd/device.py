"""What the NBD frontend needs from a volume, and what it tells clients about one.

The engine's :class:`~lhtrio.engine.volume.Volume` satisfies :class:`BlockDevice`; the frontend
never imports the engine (they meet through this protocol, composed by ``lhtrio.cli`` and
``lhtrio.node``).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lhtrio.errors import (
    InvalidArgumentError,
    LhtrioError,
    NoSpaceError,
    NotSupportedError,
    ShuttingDownError,
)
from lhtrio.frontend.nbd.proto import ExportInfo

__all__ = ["BlockDevice", "device_errno", "export_info"]


class BlockDevice(Protocol):
    """What the NBD frontend needs from a volume."""

    name: str
    size: int

    def start_writes(
        self,
        writes: Sequence[tuple[int, Any, bool]],
        done: Callable[[LhtrioError | None], None],
    ) -> bool: ...
    def start_reads(
        self,
        reads: Sequence[tuple[int, int]],
        done: Callable[[list[Any] | LhtrioError], None],
    ) -> bool: ...
    async def read_batch(self, reads: Sequence[tuple[int, int]]) -> list[Any]: ...
    async def write_batch(self, writes: Sequence[tuple[int, Any, bool]]) -> None: ...
    async def write_zeroes(
        self, offset: int, length: int, *, fua: bool, fast: bool = False, punch: bool = True
    ) -> None:
        """Make the range read as zeros. ``punch=False``: it stays allocated. ``fast``: only
        if that is quicker than writing zeros, else NotSupportedError and nothing changed."""

    async def trim(self, offset: int, length: int) -> None: ...
    async def flush(self) -> None: ...
    def linger(self, client: int, *, partial: bool = False) -> bool:
        """Called when the connection's only batch is in flight and nothing else is to do, or
        (``partial``) while the client is in the middle of sending a request: the device may
        wait right here, briefly, for its answers and for the client's next bytes (the engine's
        volume does, in a process of its own), instead of in later task steps. True if
        descriptor ``client`` is readable now."""

    async def allocation(self, offset: int, length: int) -> list[tuple[int, bool]]: ...


def device_errno(exc: LhtrioError) -> int:
    """The NBD error for a device's error."""
    if isinstance(exc, InvalidArgumentError):
        return errno.EINVAL
    if isinstance(exc, NoSpaceError):
        return errno.ENOSPC
    if isinstance(exc, ShuttingDownError):
        return errno.ESHUTDOWN
    if isinstance(exc, NotSupportedError):
        return errno.ENOTSUP
    return errno.EIO


def export_info(device: BlockDevice) -> ExportInfo:
    """What clients are told about ``device``.

    ``NBD_FLAG_CAN_MULTI_CONN``: every connection to an export drives the same device, which
    answers a write only once every replica applied it and a flush only once every replica
    made durable what it had applied; so what one connection's FLUSH or FUA reply covers is
    durable, and visible to reads on any other connection, when the reply is sent.
    """
    return ExportInfo(
        name=device.name,
        size=device.size,
        description="lhtrio volume",
        can_multi_conn=True,
        can_fast_zero=True,
        can_cache=True,
    )
