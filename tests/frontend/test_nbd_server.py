"""``serve_nbd`` with a device that lingers: requests taken in place, and other tasks still run."""

from __future__ import annotations

import functools
import itertools
import select
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from lhtrio.frontend.nbd.connection import MAX_INLINE
from lhtrio.frontend.nbd.server import serve_nbd
from lhtrio.net import parse_address

SIZE = 16 << 20


class _Lingering:
    """A device that answers its batches in ``linger`` and then waits there for the client, as
    a standalone engine's volume does (without its budget: it always waits). Batches nobody
    lingers for are answered by the event loop, as the volume's reactor task would."""

    name = "vol"
    size = SIZE

    def __init__(self) -> None:
        self.disk = bytearray(SIZE)
        self.answers: list[Callable[[], None]] = []
        self.writes = 0
        self.lingered = 0
        self.partial = 0  # lingers for the rest of a request

    def start_writes(
        self, writes: Sequence[tuple[int, Any, bool]], done: Callable[[None], None]
    ) -> bool:
        for offset, data, _ in writes:
            self.disk[offset : offset + len(data)] = data
        self.writes += len(writes)
        self._answer_later(functools.partial(done, None))
        return True

    def start_reads(
        self, reads: Sequence[tuple[int, int]], done: Callable[[list[Any]], None]
    ) -> bool:
        data = [bytes(self.disk[offset : offset + n]) for offset, n in reads]
        self._answer_later(functools.partial(done, data))
        return True

    def _answer_later(self, answer: Callable[[], None]) -> None:
        self.answers.append(answer)
        trio.lowlevel.current_trio_token().run_sync_soon(self._answer)

    def _answer(self) -> None:
        while self.answers:
            self.answers.pop(0)()

    def linger(self, client: int, *, partial: bool = False) -> bool:
        if partial:
            self.partial += 1
            return bool(select.select([client], [], [], 10)[0])
        if not self.answers:
            return False  # (a batch run by a task: its answer is not ours to give)
        self.lingered += 1
        self._answer()
        readable, _, _ = select.select([client], [], [], 10)
        return bool(readable)

    async def read_batch(self, reads: Sequence[tuple[int, int]]) -> list[Any]:
        return [bytes(self.disk[offset : offset + n]) for offset, n in reads]

    async def write_batch(self, writes: Sequence[tuple[int, Any, bool]]) -> None:
        for offset, data, _ in writes:
            self.disk[offset : offset + len(data)] = data

    async def write_zeroes(self, offset: int, length: int, *, fua: bool) -> None:
        self.disk[offset : offset + length] = bytes(length)

    async def trim(self, offset: int, length: int) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def allocation(self, offset: int, length: int) -> list[tuple[int, bool]]:
        return [(length, True)]


async def test_a_connection_takes_requests_in_place_but_checkpoints_between_runs(
    tmp_path: Path,
) -> None:
    device = _Lingering()
    seen: list[int] = []  # the writes taken so far, each time another task got to run

    async def other_task() -> None:
        while True:
            seen.append(device.writes)
            await trio.lowlevel.checkpoint()

    writes = 5 * MAX_INLINE
    commands = [arg for n in range(writes) for arg in ("-c", f"write -P {n % 250} {n * 512} 512")]
    async with trio.open_nursery() as nursery:
        uri = await nursery.start(serve_nbd, parse_address(f"unix:{tmp_path}/nbd.sock"), device)
        nursery.start_soon(other_task)
        with trio.fail_after(60):
            result = await trio.run_process(
                ["qemu-io", "-f", "raw", *commands, uri], capture_stdout=True, check=False
            )
        nursery.cancel_scope.cancel()
    assert result.returncode == 0, result.stdout
    assert device.writes == writes
    assert all(
        device.disk[n * 512 : (n + 1) * 512] == bytes([n % 250]) * 512 for n in range(writes)
    )
    assert device.lingered >= writes * 0.9  # nearly all of them answered in linger()
    # Each run of the connection's task takes at most MAX_INLINE requests in place, +1 read by
    # its checkpointing receive. Between two turns of the other task the connection runs at most
    # twice: trio reverses half its batches, so a task may run last in one and first in the next.
    assert max(b - a for a, b in itertools.pairwise(seen)) <= 2 * (MAX_INLINE + 1)


async def test_a_large_write_is_received_in_place_while_the_device_lingers(tmp_path: Path) -> None:
    device = _Lingering()
    async with trio.open_nursery() as nursery:
        uri = await nursery.start(serve_nbd, parse_address(f"unix:{tmp_path}/nbd.sock"), device)
        with trio.fail_after(60):
            result = await trio.run_process(
                ["qemu-io", "-f", "raw", "-c", "write -P 7 1M 8M", "-c", "read -P 7 1M 8M", uri],
                capture_stdout=True,
                check=False,
            )
        nursery.cancel_scope.cancel()
    assert result.returncode == 0, result.stdout
    assert b"verification failed" not in result.stdout
    assert device.disk[1 << 20 : 9 << 20] == b"\x07" * (8 << 20)
    assert device.disk[: 1 << 20] == bytes(1 << 20)
    assert device.disk[9 << 20 :] == bytes(SIZE - (9 << 20))
    # 8 MiB cannot arrive in one receive (a Unix socket's send buffer is far smaller): the rest
    # of the request was waited for in place.
    assert device.partial > 0
