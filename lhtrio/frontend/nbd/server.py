"""Serving NBD: the listener, the exports it offers by name, and their orderly stop.

One listener serves an :class:`ExportRegistry` (``serve_nbd_registry``: a node's single NBD port
for all its volumes) or a single device (``serve_nbd``: a standalone engine). Each accepted
connection is negotiated by a task of the listener (:class:`~.connection.Connection` has the
protocol side); a connection that enters transmission is handed to its export, which owns it
from then on, and the listener forgets it. A connection that ends during negotiation (the
client listed the exports, asked for one that does not exist, sent garbage or closed) is
closed there and then: nothing waits for it (issue 16 #9: a handler that waited for a
transmission that never came wedged the listener and every stop after it).

**Stopping.** Cancellation stops at once: the listener and, for an export, its connections
(their in-flight requests are abandoned). The orderly stop drains: ``serve_nbd(...,
shutdown=event)`` stops accepting when the event is set, and an :meth:`ExportRegistry.export`
block that is left normally stops its export: no new clients are adopted, every connection
takes no new requests (later ones are answered ``ESHUTDOWN``), answers those in flight and
closes; the whole drain is bounded by ``drain_timeout`` (a deadline on the export's nursery,
after which what is left is cancelled). This is what lets an engine stopped by SIGTERM answer
the writes it accepted instead of failing them.

The connections' per-request design (batches, lingering, replies) is in :mod:`.connection`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Final

import attrs
import trio

from lhtrio.errors import InvalidArgumentError
from lhtrio.frontend.nbd.connection import Connection
from lhtrio.frontend.nbd.device import BlockDevice
from lhtrio.frontend.nbd.proto import NbdProtocolError, Transmission
from lhtrio.net import Address
from lhtrio.net._nursery import open_connection_nursery
from lhtrio.net.listeners import open_listeners, remove_unix_socket
from lhtrio.net.network import Listener
from lhtrio.net.transport import make_transport

__all__ = [
    "BlockDevice",
    "DRAIN_TIMEOUT",
    "ExportRegistry",
    "serve_nbd",
    "serve_nbd_registry",
    "nbd_uri",
]

logger = logging.getLogger(__name__)

#: How long an orderly stop waits for the requests in flight to be answered.
DRAIN_TIMEOUT: Final = 20.0
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_ACCEPT_RETRY: Final = 0.1


def nbd_uri(address: Address, export: str) -> str:
    if address.is_unix:
        return f"nbd+unix:///{export}?socket={address.path}"
    return f"nbd://{address.host}:{address.port}/{export}"


@attrs.define(eq=False)
class _Export:
    """One exported device, the nursery its connections run in, and those connections."""

    device: BlockDevice
    nursery: trio.Nursery
    connections: set[Connection] = attrs.field(factory=set)
    stopping: bool = False


class ExportRegistry:
    """The exports one NBD listener serves, by name; each owns the nursery of its connections.

    :meth:`export` publishes a device for the duration of an ``async with`` block; connections
    that chose it run in the block's nursery, so leaving the block ends them: drained when the
    block is left normally, cancelled when it is left by an exception or cancellation. A
    client asking for a name that is not (or no longer) exported gets the NBD error for an
    unknown export. The empty name selects the only export when there is exactly one.
    """

    def __init__(self) -> None:
        self._exports: dict[str, _Export] = {}

    def lookup(self, name: str) -> BlockDevice | None:
        if not name and len(self._exports) == 1:
            name = next(iter(self._exports))
        entry = self._exports.get(name)
        return entry.device if entry else None

    def names(self) -> list[str]:
        return sorted(self._exports)

    def devices(self) -> list[BlockDevice]:
        return [self._exports[name].device for name in self.names()]

    @contextlib.asynccontextmanager
    async def export(
        self, device: BlockDevice, *, drain_timeout: float = DRAIN_TIMEOUT
    ) -> AsyncIterator[None]:
        """Export ``device`` while the block runs.

        Leaving the block normally drains the export (module docstring) for at most
        ``drain_timeout`` seconds, then returns; leaving it by an exception or cancellation
        closes its connections at once and propagates.
        """
        if device.name in self._exports:
            raise InvalidArgumentError(f"NBD export {device.name} is already served")
        async with open_connection_nursery() as nursery:
            entry = _Export(device, nursery)
            self._exports[device.name] = entry
            try:
                yield
            except BaseException:
                nursery.cancel_scope.cancel()
                raise
            else:
                self._stop(entry)
                nursery.cancel_scope.deadline = min(
                    nursery.cancel_scope.deadline, trio.current_time() + drain_timeout
                )
                if entry.connections:
                    logger.info(
                        "NBD export %s stopping: draining %d connections (at most %g s)",
                        device.name,
                        len(entry.connections),
                        drain_timeout,
                    )
            finally:
                if self._exports.get(device.name) is entry:
                    del self._exports[device.name]

    def _stop(self, entry: _Export) -> None:
        """No new clients for ``entry``; its connections stop taking requests."""
        if self._exports.get(entry.device.name) is entry:
            del self._exports[entry.device.name]
        entry.stopping = True
        for conn in list(entry.connections):
            conn.stop()

    def _adopt(self, conn: Connection, transmission: Transmission, stream: trio.abc.Stream) -> bool:
        """Run ``conn`` (negotiated) under its export; False if the export is gone."""
        entry = self._exports.get(transmission.export.name)
        if entry is None:
            return False
        conn.device = entry.device
        entry.nursery.start_soon(_transmit, entry, conn, transmission, stream)
        return True


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


async def _close(stream: trio.abc.Stream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        await stream.aclose()


async def _transmit(
    entry: _Export, conn: Connection, transmission: Transmission, stream: trio.abc.Stream
) -> None:
    """A connection's life after negotiation, in its export's nursery."""
    entry.connections.add(conn)
    if entry.stopping:
        conn.stop()
    try:
        with _logged(conn.peer):
            await conn.transmit(transmission)
    finally:
        entry.connections.discard(conn)
        await _close(stream)


async def _negotiate(registry: ExportRegistry, stream: trio.abc.Stream) -> None:
    """Negotiate, then hand the connection to its export; else close it, now."""
    try:
        sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        peer = (str(sock.getpeername()) or "unix client") if sock is not None else "client"
    except OSError:
        peer = "client"
    conn = Connection(registry.lookup, registry.devices, make_transport(stream), peer)
    adopted = False
    try:
        with _logged(peer):
            transmission = await conn.handshake(stream)
            if transmission is not None:
                adopted = registry._adopt(conn, transmission, stream)
    finally:
        if not adopted:
            await _close(stream)


async def _accept(listener: Listener, registry: ExportRegistry, nursery: trio.Nursery) -> None:
    """Accept connections on ``listener`` and negotiate each in ``nursery``, until cancelled.

    Unlike ``trio.serve_listeners`` nothing closes a connection when its negotiation task
    returns: by then it belongs to its export."""
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                logger.exception(
                    "NBD listener: accept failed (%s); retrying in %g s",
                    os.strerror(exc.errno or 0),
                    _ACCEPT_RETRY,
                )
                await trio.sleep(_ACCEPT_RETRY)
                continue
            nursery.start_soon(_negotiate, registry, stream)


async def serve_nbd_registry(
    address: Address,
    registry: ExportRegistry,
    *,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve every export of ``registry`` on one listener until cancelled; reports its address.

    Cancelling it stops accepting and ends the negotiations in progress; connections in
    transmission belong to their exports and go on. ConflictError if ``address`` is in use.
    """
    listeners, bound = await open_listeners(address)
    try:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept, listener, registry, nursery)
            logger.info("NBD listener on %s", bound)
            task_status.started(bound)
    finally:
        remove_unix_socket(address)


async def serve_nbd(
    address: Address,
    device: BlockDevice,
    *,
    shutdown: trio.Event | None = None,
    drain_timeout: float = DRAIN_TIMEOUT,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``device`` as the NBD export named ``device.name``; reports the export's URI.

    ``address`` is TCP (port 0 picks one) or a Unix socket path (ConflictError, naming it, if
    a server answers there). Serves until cancelled (connections end at once), or until
    ``shutdown`` is set: then it stops accepting, drains its connections (module docstring)
    for at most ``drain_timeout`` seconds, and returns once every connection is closed.
    """
    registry = ExportRegistry()
    listening = trio.CancelScope()

    async def listen(task_status: trio.TaskStatus[Address]) -> None:
        with listening:
            await serve_nbd_registry(address, registry, task_status=task_status)

    async with open_connection_nursery() as nursery:  # (its errors as themselves, not a group)
        bound = await nursery.start(listen)
        async with registry.export(device, drain_timeout=drain_timeout):
            uri = nbd_uri(bound, device.name)
            logger.info("NBD export %s at %s", device.name, uri)
            task_status.started(uri)
            if shutdown is None:
                await trio.sleep_forever()
            else:
                await shutdown.wait()
            listening.cancel()  # the listener goes first: nobody new while the export drains
        logger.info("NBD export %s stopped", device.name)
