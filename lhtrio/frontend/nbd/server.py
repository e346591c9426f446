"""``serve_nbd``: the trio shell around the sans-I/O NBD protocol, serving block devices.

One listener serves an :class:`ExportRegistry` (``serve_nbd_registry``: a node's single NBD port
for all its volumes) or a single device (``serve_nbd``: a standalone engine).

Per connection: the handshake runs on plain receive/send; then the transmission loop receives
into the decoder's own buffer and takes every complete request of that receive as one *batch*.
A batch of only writes or only reads (nearly all of them) is *started* right there
(``start_writes`` / ``start_reads``: the engine sends it to its replicas and returns) and
completed by a callback when the replicas answered, in the task that received the last answer:
no task per batch, no task switch between the replicas' answer and the client's reply. At queue
depth 1 every task step costs tens of microseconds on a VM, so this is most of the latency we
control (measured: an engine went from 5 task steps per 4 KiB write to 2). A device may also
*linger*: with the connection's only batch in flight, or while the rest of a request is on its
way (a large write arrives in pieces of the client's socket buffer), the loop lets it wait right
there for the answers and the client's next bytes, which the loop then takes without a
checkpoint, up to ``MAX_INLINE`` in a row (a standalone engine: 0.2 task steps per 4 KiB write at
queue depth 1; 7 instead of 12 per 1 MiB write at queue depth 8). Anything else, and a
batch the device cannot start now (I/O paused for a snapshot, say), runs in a task: all its
writes in one ``write_batch`` call, then its reads in one ``read_batch``, then the rest in order.
Replies go to the connection's :class:`~lhtrio.net.transport.Outbox`: sent at once when nothing
else is about to add to them, else coalesced by the writer task into one ``writev``. While
batches are in flight the loop keeps receiving (up to ``MAX_BATCHES`` per connection), so the
client's queue depth reaches the replicas.

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
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Final, Protocol, cast

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

__all__ = ["BlockDevice", "ExportRegistry", "serve_nbd", "serve_nbd_registry", "nbd_uri"]

logger = logging.getLogger(__name__)

MAX_BATCHES: Final = 16
#: Requests a connection takes one after another without a checkpoint when the device lingers
#: (``BlockDevice.linger``): at queue depth 1 the other tasks wait a few milliseconds at most.
MAX_INLINE: Final = 16
_HOLE_ZERO: Final = 3  # NBD_STATE_HOLE | NBD_STATE_ZERO
_FUA: Final = 1  # NBD_CMD_FLAG_FUA as a plain int: IntFlag arithmetic is slow on the hot path


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
    async def write_zeroes(self, offset: int, length: int, *, fua: bool) -> None: ...
    async def trim(self, offset: int, length: int) -> None: ...
    async def flush(self) -> None: ...
    def linger(self, client: int, *, partial: bool = False) -> bool:
        """Called when the connection's only batch is in flight and nothing else is to do, or
        (``partial``) while the client is in the middle of sending a request: the device may
        wait right here, briefly, for its answers and for the client's next bytes (the engine's
        volume does, in a process of its own), instead of in later task steps. True if
        descriptor ``client`` is readable now."""

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


class ExportRegistry:
    """The exports one NBD listener serves, by name; each owns the nursery of its connections.

    :meth:`export` publishes a device for the duration of a ``with`` block; connections that chose
    it run in the block's nursery, so leaving the block (a stopped frontend) closes them. A client
    asking for a name that is not (or no longer) exported gets the NBD error for an unknown export.
    The empty name selects the only export when there is exactly one.
    """

    def __init__(self) -> None:
        self._exports: dict[str, tuple[BlockDevice, trio.Nursery]] = {}

    def lookup(self, name: str) -> BlockDevice | None:
        if not name and len(self._exports) == 1:
            name = next(iter(self._exports))
        entry = self._exports.get(name)
        return entry[0] if entry else None

    def names(self) -> list[str]:
        return sorted(self._exports)

    @contextlib.asynccontextmanager
    async def export(self, device: BlockDevice) -> AsyncIterator[None]:
        if device.name in self._exports:
            raise InvalidArgumentError(f"NBD export {device.name} is already served")
        async with trio.open_nursery() as nursery:
            self._exports[device.name] = (device, nursery)
            try:
                yield
            finally:
                del self._exports[device.name]
                nursery.cancel_scope.cancel()

    def adopt(self, name: str, serve: Callable[[], Awaitable[None]]) -> bool:
        """Run ``serve`` (a negotiated connection) under export ``name``; False if it is gone."""
        entry = self._exports.get(name)
        if entry is None:
            return False
        entry[1].start_soon(serve)
        return True


def _write_args(writes: list[Write]) -> list[tuple[int, Any, bool]]:
    return [(w.offset, w.data, bool(w.flags & _FUA)) for w in writes]


def _read_args(reads: list[Read]) -> list[tuple[int, int]]:
    return [(r.offset, r.length) for r in reads]


def _info(device: BlockDevice) -> ExportInfo:
    return ExportInfo(name=device.name, size=device.size, description="lhtrio volume")


class _Connection:
    def __init__(self, registry: ExportRegistry, transport: Transport, peer: str) -> None:
        self.registry = registry
        self.device: BlockDevice = cast("BlockDevice", None)  # chosen by the handshake
        self.transport = transport
        self.peer = peer
        self.out = Outbox(transport)
        self.inflight = 0  # batches started and not yet answered
        self._room: trio.Event | None = None  # set when a batch completes, for run() / transmit()
        self.structured = False
        self.context: int | None = None

    def export(self, name: str) -> ExportInfo | None:
        device = self.registry.lookup(name)
        return None if device is None else _info(device)

    def exports(self) -> list[ExportInfo]:
        devices = [self.registry.lookup(name) for name in self.registry.names()]
        return [_info(device) for device in devices if device is not None]

    async def handshake(self, stream: trio.abc.Stream) -> Transmission | None:
        hs = Handshake(self.export, list_exports=self.exports)
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
                await self.until_at_most(0)
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

    async def run(self, batch: list[Any], nursery: trio.Nursery) -> None:
        """Start ``batch``: on the device's fast path if it allows, else in a task."""
        if self.inflight >= MAX_BATCHES:
            await self.until_at_most(MAX_BATCHES - 1)
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
        """Queue the replies to ``reads``: their data, or the error."""
        if isinstance(outcome, LhtrioError):
            self.out.buffers += [self.error(r.handle, outcome) for r in reads]
        else:
            out, structured = self.out.buffers, self.structured
            for r, buf in zip(reads, outcome, strict=True):
                read_reply(out, r.handle, r.offset, buf, structured=structured)

    def complete(self) -> None:
        self.inflight -= 1
        if self._room is not None:
            self._room.set()
            self._room = None
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


@contextlib.contextmanager
def _logged(peer: str) -> Iterator[None]:
    """Log how a connection ended; a bug in one never takes the others down."""
    try:
        yield
    except NbdProtocolError as exc:
        logger.warning("closing NBD connection from %s: %s", peer, exc)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        logger.debug("NBD connection from %s broke: %s", peer, exc)
    except Exception:
        logger.exception("NBD connection from %s failed unexpectedly; closing it", peer)


async def _close(stream: trio.SocketStream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        await stream.aclose()


async def _serve_connection(registry: ExportRegistry, stream: trio.SocketStream) -> None:
    """Negotiate, then hand the connection to its export's nursery (a stopped export closes it)."""
    try:
        peer = str(stream.socket.getpeername()) or "unix client"
    except OSError:
        peer = "client"
    conn = _Connection(registry, make_transport(stream), peer)

    done = trio.Event()

    async def transmit(transmission: Transmission) -> None:
        try:
            with _logged(peer):
                await conn.transmit(transmission)
        finally:
            await _close(stream)
            done.set()

    adopted = False
    try:
        with _logged(peer):
            transmission = await conn.handshake(stream)
            if transmission is None:
                return
            name = transmission.export.name
            device = registry.lookup(name)
            if device is None:
                return  # unexported between the handshake and now
            conn.device = device
            adopted = registry.adopt(name, functools.partial(transmit, transmission))
    finally:
        if not adopted:
            await _close(stream)
    # trio.serve_listeners closes the stream when this handler returns, so it waits for the
    # connection, shielded: a listener that stops accepting leaves established connections to
    # their export, which ends them after their in-flight requests.
    with trio.CancelScope(shield=True):
        await done.wait()


async def serve_nbd_registry(
    address: Address,
    registry: ExportRegistry,
    *,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve every export of ``registry`` on one listener until cancelled; reports its address."""
    listeners, bound = await open_listeners(address)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                trio.serve_listeners, functools.partial(_serve_connection, registry), listeners
            )
            logger.info("NBD listener on %s", bound)
            task_status.started(bound)
    finally:
        remove_unix_socket(address)


async def serve_nbd(
    address: Address,
    device: BlockDevice,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``device`` as the NBD export named ``device.name`` until cancelled.

    ``address`` is TCP (port 0 picks one) or a Unix socket path. Reports the export's URI.
    """
    registry = ExportRegistry()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_nbd_registry, address, registry)
        async with registry.export(device):  # left first: its connections end, then listening
            uri = nbd_uri(bound, device.name)
            logger.info("NBD export %s at %s", device.name, uri)
            task_status.started(uri)
            await trio.sleep_forever()
