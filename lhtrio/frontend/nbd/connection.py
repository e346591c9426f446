"""One NBD connection, server side: its handshake, then its transmission phase and its drain.

The trio shell around the sans-I/O core (:mod:`.proto`); :mod:`.server` accepts connections and
hands each to the export it chose.

**Batches.** The handshake runs on plain receive/send; then the transmission loop receives into
the decoder's own buffer and takes every complete request of that receive as one *batch*. A
batch of only writes or only reads (nearly all of them) is *started* right there
(``start_writes`` / ``start_reads``: the engine sends it to its replicas and returns) and
completed by a callback when the replicas answered, in the task that received the last answer:
no task per batch, no task switch between the replicas' answer and the client's reply. At queue
depth 1 every task step costs tens of microseconds on a VM, so this is most of the latency we
control (measured: an engine went from 5 task steps per 4 KiB write to 2). A device may also
*linger*: with the connection's only batch in flight, or while the rest of a request is on its
way (a large write arrives in pieces of the client's socket buffer), the loop lets it wait right
there for the answers and the client's next bytes, which the loop then takes without a
checkpoint, up to ``MAX_INLINE`` in a row (a standalone engine: 0.2 task steps per 4 KiB write at
queue depth 1; 7 instead of 12 per 1 MiB write at queue depth 8). Anything else, and a batch the
device cannot start now (I/O paused for a snapshot, say), runs in a task: all its writes in one
``write_batch`` call, then its reads in one ``read_batch``, then the rest in order. Replies go to
the connection's :class:`~lhtrio.net.transport.Outbox`: sent at once when nothing else is about
to add to them, else coalesced by the writer task into one ``writev``. While batches are in
flight the loop keeps receiving (up to ``MAX_BATCHES`` per connection), so the client's queue
depth reaches the replicas.

**Ordering.** NBD does not order requests that are in flight together; within a batch this
server runs writes, then reads, then flushes, trims, zeroing, cache hints and block status, so a
flush in a batch covers the writes before it. Every request gets exactly one reply. A broken
stream (bad magic, an oversized write) closes the connection; any other bad request is refused
with its NBD error and never reaches the device (a refused write changes no byte). Zero-length
TRIM, WRITE_ZEROES and CACHE are answered at once, without the device.

**Replies.** Structured reads send the ranges that read as zeros as hole chunks
(:func:`~.replies.sparse_read_reply`), unless the client set ``NBD_CMD_FLAG_DF``. Block status
reports what no layer of the volume holds as ``HOLE | ZERO``. A fast WRITE_ZEROES the device
cannot do by punching alone, or one that also asks to stay allocated (``NO_HOLE``), is
answered ``ENOTSUP`` without changing anything.

**Stopping (drain).** :meth:`Connection.stop` (the export is stopping): the loop stops taking
requests at its next checkpoint (a batch it was waiting to start is refused), then answers
everything that still arrives with ``ESHUTDOWN`` until the batches in flight are answered, and
the connection closes once their replies are sent. The caller bounds all of it with a deadline
(:meth:`.server.ExportRegistry.export`); cancellation ends the connection at once. The stop
costs the hot path nothing but an attribute test per completed batch: one cancel scope spans the
whole read loop.

The device is anything with the :class:`~.device.BlockDevice` methods (the engine's volume);
this module does not import the engine.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
from collections.abc import Callable
from typing import Any, Final, cast

import trio

from lhtrio.errors import LhtrioError, NotSupportedError
from lhtrio.frontend.nbd.device import BlockDevice, device_errno, export_info
from lhtrio.frontend.nbd.proto import (
    NEED_DATA,
    BlockStatus,
    Cache,
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
    sparse_read_reply,
)
from lhtrio.net.transport import Outbox, Transport

__all__ = ["Connection", "MAX_BATCHES", "MAX_INLINE"]

logger = logging.getLogger(__name__)

MAX_BATCHES: Final = 16
#: Requests a connection takes one after another without a checkpoint when the device lingers
#: (``BlockDevice.linger``): at queue depth 1 the other tasks wait a few milliseconds at most.
MAX_INLINE: Final = 16
_HOLE_ZERO: Final = 3  # NBD_STATE_HOLE | NBD_STATE_ZERO
_FUA: Final = 1  # NBD_CMD_FLAG_FUA as a plain int: IntFlag arithmetic is slow on the hot path
_DF: Final = 4  # NBD_CMD_FLAG_DF
#: Best-effort sends during the handshake (a last error reply) take at most this long.
_LAST_WORDS: Final = 1.0


def _write_args(writes: list[Write]) -> list[tuple[int, Any, bool]]:
    return [(w.offset, w.data, bool(w.flags & _FUA)) for w in writes]


def _read_args(reads: list[Read]) -> list[tuple[int, int]]:
    return [(r.offset, r.length) for r in reads]


class Connection:
    """One client connection: :meth:`handshake`, then :meth:`transmit` on ``device``."""

    def __init__(
        self,
        lookup: Callable[[str], BlockDevice | None],
        devices: Callable[[], list[BlockDevice]],
        transport: Transport,
        peer: str,
    ) -> None:
        self._lookup = lookup
        self._devices = devices
        self.device: BlockDevice = cast("BlockDevice", None)  # chosen by the handshake
        self.transport = transport
        self.peer = peer
        self.out = Outbox(transport)
        self.inflight = 0  # batches started and not yet answered
        self._room: trio.Event | None = None  # set when a batch completes, for run() / transmit()
        self.structured = False
        self.context: int | None = None
        self.trailing = b""
        self.stopping = False
        self._reading: trio.CancelScope | None = None  # the read loop's, cancelled by stop()
        self._idle: trio.CancelScope | None = None  # cancelled once nothing is in flight

    # --- handshake -------------------------------------------------------------------------

    def _export(self, name: str) -> ExportInfo | None:
        device = self._lookup(name)
        return None if device is None else export_info(device)

    def _exports(self) -> list[ExportInfo]:
        return [export_info(device) for device in self._devices()]

    async def handshake(self, stream: trio.abc.Stream) -> Transmission | None:
        """Negotiate; the transmission agreed on, or None if the client left without one.

        Raises NbdProtocolError (after sending, best effort, the error reply the handshake
        queued, such as ``NBD_REP_ERR_TOO_BIG``) or a broken-stream error."""
        hs = Handshake(self._export, list_exports=self._exports)
        await stream.send_all(hs.data_to_send())
        while True:
            try:
                event = hs.next_event()
            except NbdProtocolError:
                last = hs.data_to_send()
                if last:
                    with (
                        trio.move_on_after(_LAST_WORDS),
                        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                    ):
                        await stream.send_all(last)
                raise
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

    # --- transmission ----------------------------------------------------------------------

    def stop(self) -> None:
        """Take no new requests; answer those in flight, then close (module docstring)."""
        self.stopping = True
        if self._reading is not None:
            self._reading.cancel()

    async def transmit(self, transmission: Transmission) -> None:
        """Serve requests until the client disconnects, the stream breaks, or :meth:`stop`;
        returns once every request taken was answered (or on cancellation)."""
        self.structured = transmission.structured_replies
        self.context = transmission.meta_context
        decoder = TransmissionDecoder(transmission)
        decoder.receive_data(self.trailing)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.writer)
            try:
                with trio.CancelScope() as reading:
                    self._reading = reading
                    if self.stopping:
                        reading.cancel()
                    await self.read_loop(decoder, nursery)
                self._reading = None
                if reading.cancelled_caught:
                    await self.refuse_until_idle(decoder)
            except NbdProtocolError as exc:
                logger.warning("closing NBD connection from %s: %s", self.peer, exc)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                logger.debug("NBD connection from %s broke: %s", self.peer, exc)
            finally:
                self._reading = None
                try:
                    # Every accepted request is answered before we close (or cancelled).
                    await self.until_at_most(0)
                finally:
                    self.out.close()

    async def read_loop(self, decoder: TransmissionDecoder, nursery: trio.Nursery) -> None:
        transport = self.transport
        client = transport.fileno()
        inline = 0  # requests taken after the device lingered, since the last checkpoint
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
                            await self.run(batch, nursery)
                        self.out.flush(now=False)
                        return
                    else:
                        batch.append(item)
                if batch:
                    await self.run(batch, nursery)
                self.out.flush(now=False)
            # A lone batch in flight (perhaps all the client waits for), or the rest of a request
            # on its way: the device may wait for it here, without a scheduler round.
            partial = decoder.buffered > 0
            if (
                (partial or self.inflight == 1)
                and inline < MAX_INLINE
                and client >= 0
                and self.device.linger(client, partial=partial)
            ):
                inline += 1
                n = transport.receive_nowait(decoder)
                if n:
                    continue
                if n == 0:
                    decoder.eof()
                    return
            inline = 0
            if not await transport.receive_into(decoder):  # (a checkpoint, always)
                decoder.eof()
                return

    async def refuse_until_idle(self, decoder: TransmissionDecoder) -> None:
        """After :meth:`stop`: answer what still arrives with ``ESHUTDOWN`` (refusals with their
        own error) until no batch is in flight; returns early if the client disconnects."""
        while True:
            for item in decoder.drain():
                if isinstance(item, Disconnect):
                    return
                if isinstance(item, InvalidRequest):
                    reply = error_reply(
                        item.handle, item.error, structured=self.structured, message=item.message
                    )
                else:
                    reply = self.shutting_down(item.handle)
                self.out.buffers.append(reply)
            self.out.flush(now=False)
            if not self.inflight:
                return
            with trio.CancelScope() as idle:
                self._idle = idle  # complete() cancels it with the last batch in flight
                received = await self.transport.receive_into(decoder)
            self._idle = None
            if not idle.cancelled_caught and not received:
                decoder.eof()
                return

    def shutting_down(self, handle: int) -> bytes:
        return error_reply(
            handle,
            errno.ESHUTDOWN,
            structured=self.structured,
            message=f"NBD export {self.device.name} is stopping: the request was not started",
        )

    async def run(self, batch: list[Any], nursery: trio.Nursery) -> None:
        """Start ``batch``: on the device's fast path if it allows, else in a task."""
        if self.inflight >= MAX_BATCHES:
            try:
                await self.until_at_most(MAX_BATCHES - 1)
            except trio.Cancelled:  # stopped (or the export is ending): not started
                self.out.buffers += [self.shutting_down(r.handle) for r in batch]
                raise
        self.inflight += 1
        if not self.start(batch):
            nursery.start_soon(self.execute, batch)

    def start(self, batch: list[Any]) -> bool:
        """Only writes or only reads (what a busy connection sends): no task, the device calls
        back when the replicas answered (``BlockDevice.start_writes``)."""
        cls = batch[0].__class__
        if cls is not Write and cls is not Read:
            return False
        for request in batch:
            if request.__class__ is not cls:
                return False
        try:
            if cls is Write:
                return self.device.start_writes(
                    _write_args(batch), functools.partial(self.write_done, batch)
                )
            return self.device.start_reads(
                _read_args(batch), functools.partial(self.read_done, batch)
            )
        except LhtrioError as exc:  # refused before anything was sent
            self.out.buffers += [self.error(r.handle, exc) for r in batch]
            self.complete()
            return True

    async def until_at_most(self, batches: int) -> None:
        """Wait until no more than ``batches`` batches are in flight."""
        while self.inflight > batches:
            room = self._room = trio.Event()
            await room.wait()

    def write_done(self, writes: list[Write], error: LhtrioError | None) -> None:
        self.written(writes, error)
        self.complete()

    def read_done(self, reads: list[Read], outcome: list[Any] | LhtrioError) -> None:
        self.read(reads, outcome)
        self.complete()

    def written(self, writes: list[Write], error: LhtrioError | None) -> None:
        """Queue the replies to ``writes``."""
        if error is None:
            self.out.buffers += [simple_reply(w.handle) for w in writes]
        else:
            self.out.buffers += [self.error(w.handle, error) for w in writes]

    def read(self, reads: list[Read], outcome: list[Any] | LhtrioError) -> None:
        """Queue the replies to ``reads``: their data (zeros as holes), or the error."""
        if isinstance(outcome, LhtrioError):
            self.out.buffers += [self.error(r.handle, outcome) for r in reads]
        elif self.structured:
            out = self.out.buffers
            for r, buf in zip(reads, outcome, strict=True):
                if r.flags & _DF:
                    read_reply(out, r.handle, r.offset, buf, structured=True)
                else:
                    sparse_read_reply(out, r.handle, r.offset, buf)
        else:
            out = self.out.buffers
            for r, buf in zip(reads, outcome, strict=True):
                read_reply(out, r.handle, r.offset, buf, structured=False)

    def complete(self) -> None:
        self.inflight -= 1
        if self._room is not None:
            self._room.set()
            self._room = None
        if self._idle is not None and not self.inflight:
            self._idle.cancel()  # (a stopped connection waits for this)
        # The last batch in flight replies at once; others leave it to the writer, which sends
        # the replies of every batch completed meanwhile together.
        with contextlib.suppress(trio.BrokenResourceError):  # the writer sees it too
            self.out.flush(now=not self.inflight)

    async def execute(self, batch: list[Any]) -> None:
        # Replies go to self.out.buffers *after* each await: the writer swaps the list meanwhile.
        try:
            writes = [r for r in batch if r.__class__ is Write]
            reads = [r for r in batch if r.__class__ is Read]
            if writes:
                try:
                    await self.device.write_batch(_write_args(writes))
                except LhtrioError as exc:
                    self.written(writes, exc)
                else:
                    self.written(writes, None)
            if reads:
                try:
                    data = await self.device.read_batch(_read_args(reads))
                except LhtrioError as exc:
                    self.read(reads, exc)
                else:
                    self.read(reads, data)
            for request in batch:
                if request.__class__ is not Write and request.__class__ is not Read:
                    reply = await self.other(request)
                    self.out.buffers.append(reply)
        finally:
            self.complete()

    async def other(self, request: Any) -> bytes:
        device = self.device
        try:
            if isinstance(request, Flush):
                await device.flush()
            elif isinstance(request, Trim):
                if request.length:  # (zero length: nothing to do, answered at once)
                    await device.trim(request.offset, request.length)
                    if request.fua:
                        await device.flush()
            elif isinstance(request, WriteZeroes):
                if request.length and request.fast and request.no_hole:
                    raise NotSupportedError(
                        f"NBD export {device.name} cannot zero fast and keep the range "
                        "allocated (FAST_ZERO with NO_HOLE); zero without FAST_ZERO"
                    )
                if request.length:
                    await device.write_zeroes(
                        request.offset,
                        request.length,
                        fua=request.fua,
                        fast=request.fast,
                        punch=not request.no_hole,
                    )
            elif isinstance(request, Cache):
                pass  # a hint: every read goes to a replica, which keeps its own page cache
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
        code = device_errno(exc)
        if code == errno.EIO:
            logger.warning("NBD request from %s failed: %s", self.peer, exc)
        return error_reply(handle, code, structured=self.structured, message=str(exc))

    async def writer(self) -> None:
        try:
            await self.out.writer()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("NBD client %s went away: %s", self.peer, exc)
