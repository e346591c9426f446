"""The checker's workload: writers over NBD feeding a :class:`~lhtrio.verify.model.History`.

``writers`` connections, each with ``depth`` requests in flight (one task per lane), write runs of
1 to ``max_run`` stamped blocks at random places among the first ``blocks`` blocks and now and
then a flush. Every request is recorded before it is sent and when its reply comes: a write that
got no reply (the connection broke) stays *in flight* in the history for good — it may have
landed, now or later. A writer whose connection breaks connects again (after a short backoff)
and goes on, so a workload runs straight through engine restarts and failovers.

The sequence of choices (which blocks, which requests are flushes) of each lane is drawn from
``seed``: a run replays the same requests in the same order per lane; how lanes and writers
interleave depends on timing. Once stopped, each lane sends nothing more and waits (up to
:data:`STOP_GRACE` seconds) for the answer to its last request: a read-back that follows then
finds nothing in flight, so two read-backs must agree (:func:`~lhtrio.verify.model.unstable`).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

import attrs
import trio

from lhtrio.errors import ConnectionLostError, HandshakeError, InvalidArgumentError, StorageError
from lhtrio.verify.model import BLOCK_SIZE, History, Report, check, initial_digest
from lhtrio.verify.nbd import NbdClient, NbdTarget, open_nbd

__all__ = ["Progress", "WorkloadConfig", "probe", "read_back", "run_writers", "verify"]

_LOST = (ConnectionLostError, HandshakeError)
STOP_GRACE = 10.0  # seconds the writers wait for their last requests' answers once stopped


@attrs.frozen(kw_only=True)
class WorkloadConfig:
    """What the writers do (see the module docstring)."""

    blocks: int = 256
    writers: int = 4
    depth: int = 8
    max_run: int = 4
    flush_every: int = 16
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        for name in ("blocks", "writers", "depth", "max_run", "flush_every"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be at least 1, not {getattr(self, name)}")


@attrs.define(eq=False)
class Progress:
    """What the writers saw, for the report: connections made, requests with no reply."""

    connections: int = 0
    broken: int = 0
    errors: int = 0


async def _backoff(stop: trio.Event, delay: float) -> None:
    with trio.move_on_after(delay):
        await stop.wait()


async def _lane(
    client: NbdClient,
    history: History,
    config: WorkloadConfig,
    rng: random.Random,
    *,
    conn: int,
    stop: trio.Event,
) -> None:
    writer = conn // 1_000_000
    while not stop.is_set():  # a request sent is waited for: stopping leaves none in flight
        if rng.randrange(config.flush_every) == 0:
            flush = history.invoke_flush(conn=conn)
            try:
                await client.flush()
            except StorageError:
                history.fail_flush(flush)
            else:
                history.ack_flush(flush)
            continue
        count = rng.randint(1, min(config.max_run, config.blocks))
        first = rng.randrange(config.blocks - count + 1)
        write = history.invoke_write(writer=writer, first=first, count=count, conn=conn)
        try:
            await client.write(first * history.block_size, history.payload(write))
        except StorageError:
            history.fail_write(write)  # an error reply: it may have landed on some replica
        else:
            history.ack_write(write)


async def _writer(
    target: NbdTarget | Callable[[], NbdTarget],
    *,
    history: History,
    config: WorkloadConfig,
    index: int,
    stop: trio.Event,
    progress: Progress,
) -> None:
    rngs = [random.Random(f"{config.seed}/{index}/{lane}") for lane in range(config.depth)]
    connection = 0
    while not stop.is_set():
        conn = index * 1_000_000 + connection
        connection += 1
        try:
            where = target if isinstance(target, NbdTarget) else target()
            async with open_nbd(where) as client, trio.open_nursery() as lanes:
                progress.connections += 1

                async def lane(
                    rng: random.Random, client: NbdClient = client, conn: int = conn
                ) -> None:
                    try:
                        await _lane(client, history, config, rng, conn=conn, stop=stop)
                    except _LOST:
                        progress.broken += 1
                        lanes.cancel_scope.cancel()

                for rng in rngs:
                    lanes.start_soon(lane, rng)
                await stop.wait()
                # The lanes end once their requests are answered; what still has no answer
                # after the grace (a volume that does not answer) stays in flight for good.
                lanes.cancel_scope.deadline = trio.current_time() + STOP_GRACE
        except _LOST:
            progress.broken += 1
        if not stop.is_set():
            await _backoff(stop, 0.05)


async def run_writers(
    target: NbdTarget | Callable[[], NbdTarget],
    history: History,
    config: WorkloadConfig,
    stop: trio.Event,
    progress: Progress | None = None,
) -> Progress:
    """Run the writers until ``stop`` is set; requests still in flight then stay in flight.
    ``target`` may be a callable, asked again at every connection (a volume that moves)."""
    progress = progress or Progress()
    async with trio.open_nursery() as nursery:
        for index in range(config.writers):
            nursery.start_soon(
                functools.partial(
                    _writer,
                    target,
                    history=history,
                    config=config,
                    index=index,
                    stop=stop,
                    progress=progress,
                )
            )
    return progress


async def probe(target: NbdTarget, blocks: int, block_size: int = BLOCK_SIZE) -> tuple[int, bool]:
    """The export's size and multi-conn flag; refuses a size too small for ``blocks``."""
    async with open_nbd(target) as client:
        if blocks * block_size > client.size:
            raise InvalidArgumentError(
                f"{blocks} blocks of {block_size} bytes do not fit in {target} "
                f"({client.size} bytes): ask for at most {client.size // block_size}"
            )
        return client.size, client.multi_conn


async def read_back(
    target: NbdTarget,
    blocks: int,
    block_size: int = BLOCK_SIZE,
    *,
    chunk: int = 64,
    patience: float = 60.0,
) -> dict[int, bytes]:
    """Every block's bytes, read ``chunk`` blocks per request; retried on a broken connection
    (the volume may be coming back) for up to ``patience`` seconds."""
    per = chunk
    with trio.fail_after(patience):
        while True:
            try:
                async with open_nbd(target) as client:
                    data = bytearray()
                    for first in range(0, blocks, per):
                        n = min(per, blocks - first)
                        data += await client.read(first * block_size, n * block_size)
                    return {
                        b: bytes(data[b * block_size : (b + 1) * block_size]) for b in range(blocks)
                    }
            except (*_LOST, StorageError):
                await trio.sleep(0.1)


async def verify(
    target: NbdTarget,
    config: WorkloadConfig,
    *,
    duration: float,
    run: int,
) -> tuple[History, Report, Progress]:
    """The whole check: read the blocks' initial values, write for ``duration`` seconds, read
    back, check."""
    _, multi_conn = await probe(target, config.blocks)
    initial = await read_back(target, config.blocks)
    history = History(run=run, blocks=config.blocks, multi_conn=multi_conn)
    history.initial.update(
        {b: initial_digest(data) for b, data in initial.items() if data.strip(b"\0")}
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        progress = Progress()
        nursery.start_soon(run_writers, target, history, config, stop, progress)
        await _backoff(stop, duration)
        stop.set()
    reads = await read_back(target, config.blocks)
    return history, check(history, reads), progress
