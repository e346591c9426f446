"""``serve_nbd``: the trio shell around the sans-I/O NBD protocol, serving one block device.

Per connection: the handshake runs on plain receive/send; then the transmission loop receives
into the decoder's own buffer, takes every complete request of that receive as one *batch*, and
hands the batch to a task that executes it against the device: all its writes in one
``write_batch`` call, all its reads in one ``read_batch`` (the engine turns each into one frame
batch per replica). Replies go to the connection's :class:`~lhtrio.net.transport.Outbox`: sent at
once when nothing else is about to add to them, else coalesced by the writer task into one
``writev``. While batches are in flight the loop keeps receiving (up to ``MAX_BATCHES`` per
connection), so the client's queue depth reaches the replicas.

Ordering: NBD does not order requests that are in flight together; within a batch this server
runs writes, then reads, then flushes, trims, zeroing and block status, so a flush in a batch
covers the writes before it. Every request gets exactly one reply. A broken stream (bad magic, an
oversized write) closes the connection; any other bad request is refused with its NBD error and
never reaches the device (a refused write changes no byte).

The device is anything with the :class:`BlockDevice` methods (the engine's volume); this module
does not import the engine.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Sequence
from typing import Any, Final, Protocol

import trio

from lhtrio.errors import (
    InvalidArgumentError,
    LhtrioError,
    NoSpaceError,
    ShuttingDownError,
)
from lhtrio.frontend.nbd.proto import (
    NEED_DATA,
    BlockStatus,
    Disconnect,
    ExportInfo,
    Flush,
    Handshake,
    InvalidRequest,
    NbdProtocolError,
    OptionRequest,
    Read,
    Ready,
    Transmission,
    TransmissionDecoder,
    Trim,
    Write,
    WriteZeroes,
    block_status_chunk,
    error_reply,
    none_chunk,
    read_reply,
    simple_reply,
)
from lhtrio.net import Address
from lhtrio.net.listeners import open_listeners, remove_unix_socket
from lhtrio.net.transport import Outbox, Transport, make_transport

__all__ = ["BlockDevice", "serve_nbd", "nbd_uri"]

logger = logging.getLogger(__name__)

MAX_BATCHES: Final = 16
_HOLE_ZERO: Final = 3  # NBD_STATE_HOLE | NBD_STATE_ZERO
_FUA: Final = 1  # NBD_CMD_FLAG_FUA as a plain int: IntFlag arithmetic is slow on the hot path


class BlockDevice(Protocol):
    """What the NBD frontend needs from a volume."""

    name: str
    size: int

    async def read_batch(self, reads: Sequence[tuple[int, int]]) -> list[Any]: ...
    async def write_batch(self, writes: Sequence[tuple[int, Any, bool]]) -> None: ...
    async def write_zeroes(self, offset: int, length: int, *, fua: bool) -> None: ...
    async def trim(self, offset: int, length: int) -> None: ...
    async def flush(self) -> None: ...
    async def allocation(self, offset: int, length: int) -> list[tuple[int, bool]]: ...


def _errno(exc: LhtrioError) -> int:
    if isinstance(exc, InvalidArgumentError):
        return errno.EINVAL
    if isinstance(exc, NoSpaceError):
        return errno.ENOSPC
    if isinstance(exc, ShuttingDownError):
        return errno.ESHUTDOWN
    return errno.EIO


def nbd_uri(address: Address, export: str) -> str:
    if address.is_unix:
        return f"nbd+unix:///{export}?socket={address.path}"
    return f"nbd://{address.host}:{address.port}/{export}"


class _Connection:
    def __init__(self, device: BlockDevice, transport: Transport, peer: str) -> None:
        self.device = device
        self.transport = transport
        self.peer = peer
        self.out = Outbox(transport)
        self.batches = trio.Semaphore(MAX_BATCHES)
        self.structured = False
        self.context: int | None = None

    def export(self, name: str) -> ExportInfo | None:
        device = self.device
        if name not in ("", device.name):
            return None
        return ExportInfo(name=device.name, size=device.size, description="lhtrio volume")

    async def handshake(self, stream: trio.abc.Stream) -> Transmission | None:
        hs = Handshake(self.export, list_exports=lambda: [e for e in [self.export("")] if e])
        await stream.send_all(hs.data_to_send())
        while True:
            event = hs.next_event()
            if event is NEED_DATA:
                data = await stream.receive_some()
                if data:
                    hs.receive_data(data)
                else:
                    hs.eof()
                continue
            out = hs.data_to_send()
            if out:
                await stream.send_all(out)
            if isinstance(event, OptionRequest):
                continue
            if isinstance(event, Ready):
                self.trailing = hs.trailing_data
                return event.transmission
            return None  # aborted or closed

    async def transmit(self, transmission: Transmission) -> None:
        self.structured = transmission.structured_replies
        self.context = transmission.meta_context
        decoder = TransmissionDecoder(transmission)
        decoder.receive_data(self.trailing)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.writer)
            try:
                await self.read_loop(decoder, nursery)
            except NbdProtocolError as exc:
                logger.warning("closing NBD connection from %s: %s", self.peer, exc)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                logger.debug("NBD connection from %s broke: %s", self.peer, exc)
            finally:
                # Every accepted request is answered before we close (or the deadline passes).
                for _ in range(MAX_BATCHES):
                    await self.batches.acquire()
                self.out.close()

    async def read_loop(self, decoder: TransmissionDecoder, nursery: trio.Nursery) -> None:
        transport = self.transport
        while True:
            decoder.size = self.device.size
            items = decoder.drain()
            if items:
                batch: list[Any] = []
                for item in items:
                    if isinstance(item, InvalidRequest):
                        self.out.buffers.append(
                            error_reply(
                                item.handle,
                                item.error,
                                structured=self.structured,
                                message=item.message,
                            )
                        )
                    elif isinstance(item, Disconnect):
                        if batch:
                            await self.batches.acquire()
                            nursery.start_soon(self.execute, batch)
                        self.out.flush(now=False)
                        return
                    else:
                        batch.append(item)
                if batch:
                    await self.batches.acquire()
                    nursery.start_soon(self.execute, batch)
                self.out.flush(now=False)
            if not await transport.receive_into(decoder):
                decoder.eof()
                return

    async def execute(self, batch: list[Any]) -> None:
        # Replies go to self.out.buffers *after* each await: the writer swaps the list meanwhile.
        try:
            writes = [r for r in batch if r.__class__ is Write]
            reads = [r for r in batch if r.__class__ is Read]
            if writes:
                try:
                    await self.device.write_batch(
                        [(w.offset, w.data, bool(w.flags & _FUA)) for w in writes]
                    )
                except LhtrioError as exc:
                    self.out.buffers += [self.error(w.handle, exc) for w in writes]
                else:
                    self.out.buffers += [simple_reply(w.handle) for w in writes]
            if reads:
                try:
                    data = await self.device.read_batch([(r.offset, r.length) for r in reads])
                except LhtrioError as exc:
                    self.out.buffers += [self.error(r.handle, exc) for r in reads]
                else:
                    out, structured = self.out.buffers, self.structured
                    for r, buf in zip(reads, data, strict=True):
                        read_reply(out, r.handle, r.offset, buf, structured=structured)
            for request in batch:
                if request.__class__ is not Write and request.__class__ is not Read:
                    reply = await self.other(request)
                    self.out.buffers.append(reply)
            with contextlib.suppress(trio.BrokenResourceError):  # the writer sees it too
                self.out.flush()
        finally:
            self.batches.release()

    async def other(self, request: Any) -> bytes:
        device = self.device
        try:
            if isinstance(request, Flush):
                await device.flush()
            elif isinstance(request, Trim):
                await device.trim(request.offset, request.length)
                if request.fua:
                    await device.flush()
            elif isinstance(request, WriteZeroes):
                await device.write_zeroes(request.offset, request.length, fua=request.fua)
            elif isinstance(request, BlockStatus):
                assert self.context is not None  # the decoder refuses it otherwise
                extents = await device.allocation(request.offset, request.length)
                return block_status_chunk(
                    request.handle,
                    self.context,
                    [(n, 0 if allocated else _HOLE_ZERO) for n, allocated in extents],
                    length=request.length,
                    req_one=request.req_one,
                )
        except LhtrioError as exc:
            return self.error(request.handle, exc)
        if self.structured and isinstance(request, BlockStatus):
            return none_chunk(request.handle)
        return simple_reply(request.handle)

    def error(self, handle: int, exc: LhtrioError) -> bytes:
        code = _errno(exc)
        if code == errno.EIO:
            logger.warning("NBD request from %s failed: %s", self.peer, exc)
        return error_reply(handle, code, structured=self.structured, message=str(exc))

    async def writer(self) -> None:
        try:
            await self.out.writer()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("NBD client %s went away: %s", self.peer, exc)


async def _serve_connection(device: BlockDevice, stream: trio.SocketStream) -> None:
    try:
        peer = str(stream.socket.getpeername()) or "unix client"
    except OSError:
        peer = "client"
    conn = _Connection(device, make_transport(stream), peer)
    try:
        transmission = await conn.handshake(stream)
        if transmission is not None:
            await conn.transmit(transmission)
    except NbdProtocolError as exc:
        logger.warning("closing NBD connection from %s: %s", peer, exc)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        logger.debug("NBD connection from %s broke: %s", peer, exc)
    except Exception:
        # A bug must not take the volume's other connections down with this one.
        logger.exception("NBD connection from %s failed unexpectedly; closing it", peer)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()


async def serve_nbd(
    address: Address,
    device: BlockDevice,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``device`` as the NBD export named ``device.name`` until cancelled.

    ``address`` is TCP (port 0 picks one) or a Unix socket path. Reports the export's URI.
    """
    listeners, bound = await open_listeners(address)

    async def handle(stream: trio.SocketStream) -> None:
        await _serve_connection(device, stream)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handle, listeners)
            uri = nbd_uri(bound, device.name)
            logger.info("NBD export %s at %s", device.name, uri)
            task_status.started(uri)
    finally:
        remove_unix_socket(address)
