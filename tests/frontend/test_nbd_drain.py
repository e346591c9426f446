"""An orderly stop of the NBD frontend answers what it accepted (issue 16 #16, frontend half).

``serve_nbd(shutdown=...)`` and a normally left ``ExportRegistry.export`` block stop taking
requests (later ones get ESHUTDOWN), answer those in flight, close, and never wait past their
deadline; leaving the block by an exception or cancellation closes at once.
"""

from __future__ import annotations

import errno
import functools
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
import trio.testing

from lhtrio.frontend.nbd.server import ExportRegistry, serve_nbd, serve_nbd_registry
from lhtrio.net import Address, parse_address

from .nbd_client import HeldDevice, RawClient
from .nbd_helpers import READ, request, write


def _socket(tmp_path: Path) -> Address:
    return parse_address(f"unix:{tmp_path}/nbd.sock")


async def test_a_write_in_flight_is_answered_and_a_later_request_gets_eshutdown(
    tmp_path: Path,
) -> None:
    device = HeldDevice()
    shutdown = trio.Event()
    returned = trio.Event()
    address = _socket(tmp_path)

    async def serve(task_status: trio.TaskStatus[str]) -> None:
        await serve_nbd(address, device, shutdown=shutdown, task_status=task_status)
        returned.set()

    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        await nursery.start(serve)
        client = await stack.enter_async_context(await RawClient.connect(address))
        await client.export_name()
        await client.send(write(1, 4096, b"w" * 4096))
        await device.wait_held()

        shutdown.set()
        await trio.testing.wait_all_tasks_blocked()
        # Stopped: no new clients, and a request sent now is refused, not started.
        with pytest.raises(OSError, match="No such file"):  # (the socket file is gone)
            await RawClient.connect(address)
        await client.send(request(READ, 2, 0, 4096))
        assert await client.simple_reply() == (errno.ESHUTDOWN, 2)
        assert not returned.is_set()  # the write in flight is still to be answered

        device.release()
        assert await client.simple_reply() == (0, 1)
        assert await client.closed()
        with trio.fail_after(5):
            await returned.wait()
    assert device.disk[4096:8192] == b"w" * 4096
    assert [c[0] for c in device.calls] == ["write"]  # the late read never reached the device


async def test_the_drain_never_waits_past_its_deadline(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    device = HeldDevice()
    shutdown = trio.Event()
    address = _socket(tmp_path)
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        await nursery.start(
            functools.partial(serve_nbd, address, device, shutdown=shutdown, drain_timeout=7.0)
        )
        client = await stack.enter_async_context(await RawClient.connect(address))
        await client.export_name()
        await client.send(write(1, 0, b"x" * 512))
        await device.wait_held()  # never released
        start = trio.current_time()
        shutdown.set()
        assert await client.closed()  # without an answer: the deadline passed
        assert 7.0 <= trio.current_time() - start < 8.0
    # serve_nbd returned by itself (the nursery had nothing left to wait for)
    assert trio.current_time() - start < 8.0


async def test_a_connection_idle_at_shutdown_closes_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    device = HeldDevice()
    shutdown = trio.Event()
    address = _socket(tmp_path)
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        await nursery.start(functools.partial(serve_nbd, address, device, shutdown=shutdown))
        client = await stack.enter_async_context(await RawClient.connect(address))
        await client.export_name()
        start = trio.current_time()
        shutdown.set()
        assert await client.closed()
    assert trio.current_time() - start < 1.0


async def _registry_with_held_write(
    tmp_path: Path,
    nursery: trio.Nursery,
    stack: AsyncExitStack,
    registry: ExportRegistry,
    device: HeldDevice,
) -> RawClient:
    address = await nursery.start(serve_nbd_registry, _socket(tmp_path), registry)
    client = await stack.enter_async_context(await RawClient.connect(address))
    await client.export_name()
    await client.send(write(1, 0, b"r" * 4096))
    await device.wait_held()
    return client


async def test_leaving_an_export_block_normally_drains_it(tmp_path: Path) -> None:
    registry, device = ExportRegistry(), HeldDevice()
    left = trio.Event()
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        stop = trio.Event()

        async def export(task_status: trio.TaskStatus[None]) -> None:
            async with registry.export(device):
                task_status.started()
                await stop.wait()
            left.set()

        await nursery.start(export)
        client = await _registry_with_held_write(tmp_path, nursery, stack, registry, device)
        stop.set()
        await trio.testing.wait_all_tasks_blocked()
        assert registry.lookup("vol") is None  # no new clients for it
        assert not left.is_set()  # waiting for the write in flight
        await client.send(request(READ, 2, 0, 4096))
        assert await client.simple_reply() == (errno.ESHUTDOWN, 2)
        device.release()
        assert await client.simple_reply() == (0, 1)
        assert await client.closed()
        with trio.fail_after(5):
            await left.wait()
        nursery.cancel_scope.cancel()


async def test_leaving_an_export_block_by_an_exception_closes_at_once(tmp_path: Path) -> None:
    registry, device = ExportRegistry(), HeldDevice()
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        failed = trio.Event()

        async def fail(task_status: trio.TaskStatus[None]) -> None:
            async with registry.export(device):
                task_status.started()
                await failed.wait()
                raise KeyError("boom")

        raised = trio.Event()

        async def export(task_status: trio.TaskStatus[None]) -> None:
            with pytest.raises(KeyError):  # the block's own exception, not wrapped in a group
                await fail(task_status)
            raised.set()

        await nursery.start(export)
        client = await _registry_with_held_write(tmp_path, nursery, stack, registry, device)
        failed.set()
        with trio.fail_after(5):
            assert await client.closed()  # the write in flight is abandoned, unanswered
            await raised.wait()
        assert registry.lookup("vol") is None
        nursery.cancel_scope.cancel()


async def test_cancelling_serve_nbd_closes_at_once(tmp_path: Path) -> None:
    device = HeldDevice()
    address = _socket(tmp_path)
    scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[str]) -> None:
        with scope:
            await serve_nbd(address, device, task_status=task_status)

    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        await nursery.start(serve)
        client = await stack.enter_async_context(await RawClient.connect(address))
        await client.export_name()
        await client.send(write(1, 0, b"c" * 4096))
        await device.wait_held()
        scope.cancel()
        with trio.fail_after(5):
            assert await client.closed()
