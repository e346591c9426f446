"""The replica service's scheduling rules, driven directly (no sockets)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from lhtrio.errors import ConflictError, UnknownCallError
from lhtrio.replica.service import ReplicaService
from lhtrio.replica.store import Replica
from lhtrio.wire import Call, Data, Done, Flush, Read, Reply, Result, Write


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ReplicaService]:
    replica = Replica.create(str(tmp_path / "r"), size=1 << 20, volume="v", instance="r")
    async with trio.open_nursery() as nursery:
        yield ReplicaService(replica, nursery)
        nursery.cancel_scope.cancel()
    replica.close()


async def answer(service: ReplicaService, request: object) -> Reply:
    result = service(request)  # type: ignore[arg-type]
    return result if isinstance(result, Reply) else await result


async def test_data_path_answers_inline(service: ReplicaService) -> None:
    assert service(Write(0, b"x" * 4096)) == Done(4096)
    assert service(Read(0, 4)) == Data(b"xxxx")
    fua = service(Write(0, b"y" * 4096, True))
    assert not isinstance(fua, Reply)  # FUA waits for a flush in a worker thread
    assert await fua == Done(4096)


async def test_writes_that_waited_for_the_gate_land_in_arrival_order(
    service: ReplicaService,
) -> None:
    """Overlapping writes sent one after the other while a control operation runs land in that
    order, and so do a flush and a write that arrive while they still wait: every replica ends
    with the same data (before, woken waiters ran in trio's random order)."""
    for round in range(10):
        answers: list[Reply] = []
        async with trio.open_nursery() as nursery:
            async with service._exclusive("test"):
                pending = [service(Write(0, bytes([n]) * 4096)) for n in range(1, 9)]
                pending.append(service(Flush()))
                for result in reversed(pending):  # whoever waits first: not what decides
                    assert not isinstance(result, Reply)

                    async def finish(
                        result: Awaitable[Reply] = result, out: list[Reply] = answers
                    ) -> None:
                        out.append(await result)

                    nursery.start_soon(finish)
                await trio.testing.wait_all_tasks_blocked()
                assert answers == []
            late = service(Write(0, bytes([9 + round]) * 4096))  # after the gate opened
            assert late == Done(4096)
        assert len(answers) == 9
        assert service.replica.read(0, 4096) == bytes([9 + round]) * 4096


async def test_data_waits_while_a_control_operation_holds_the_gate(
    service: ReplicaService,
) -> None:
    service(Write(0, b"a" * 4096))
    results: list[Reply] = []
    async with trio.open_nursery() as nursery:
        async with service._exclusive("test"):
            pending = service(Write(0, b"b" * 4096))
            assert not isinstance(pending, Reply)

            async def finish() -> None:
                results.append(await pending)

            nursery.start_soon(finish)
            await trio.testing.wait_all_tasks_blocked()
            assert results == []
            assert service.replica.read(0, 1) == b"a"  # not applied while the gate is held
        await trio.testing.wait_all_tasks_blocked()  # the gate opened: the write runs
    assert results == [Done(4096)]
    assert service.replica.read(0, 1) == b"b"


async def test_a_control_operation_waits_for_a_write_running_in_a_connection_thread(
    service: ReplicaService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data path may run in a connection's thread (lhtrio.net.threaded): a control operation
    starts only after a data request already inside has finished, and later ones wait for it."""
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []
    real_write = Replica.write

    def slow_write(replica: Replica, offset: int, data: bytes) -> None:
        inside.set()
        assert release.wait(10)
        real_write(replica, offset, data)
        order.append(f"write {data[:1].decode()}")

    monkeypatch.setattr(Replica, "write", slow_write)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, service, Write(0, b"a" * 4096))
        assert await trio.to_thread.run_sync(inside.wait, 10)

        async def control() -> None:
            async with service._exclusive("test"):
                order.append("control")
                later = service(Write(4096, b"b" * 4096))  # arrives while the gate is held
                assert not isinstance(later, Reply)
                nursery.start_soon(answer_later, later)

        async def answer_later(pending: Any) -> None:
            assert await pending == Done(4096)

        nursery.start_soon(control)
        await trio.testing.wait_all_tasks_blocked()
        assert order == []  # the control operation waits for the write inside
        release.set()
    assert order == ["write a", "control", "write b"]
    assert service.replica.read(0, 1) == b"a"
    assert service.replica.read(4096, 1) == b"b"


async def test_one_purge_at_a_time(service: ReplicaService) -> None:
    async with service._exclusive("hold"):
        assert isinstance(await answer(service, Call("purge")), Result)
        with pytest.raises(ConflictError, match="already purging"):
            await answer(service, Call("purge"))


async def test_unknown_call(service: ReplicaService) -> None:
    with pytest.raises(UnknownCallError, match="no control call 'format'"):
        service(Call("format"))


async def test_writes_flow_while_a_purge_coalesces(
    service: ReplicaService, monkeypatch: pytest.MonkeyPatch
) -> None:

    from lhtrio.models.replica import ActionKind

    replica = service.replica
    replica.write(0, b"1" * 4096)
    replica.snapshot("a", user_created=False)  # a system snapshot: purge removes it
    replica.write(4096, b"2" * 4096)
    replica.snapshot("b")
    in_coalesce, release = threading.Event(), threading.Event()
    apply = Replica.apply

    def slow_apply(self: Replica, action: Any) -> None:
        if action.kind is ActionKind.COALESCE:
            in_coalesce.set()
            release.wait(30)
        apply(self, action)

    monkeypatch.setattr(Replica, "apply", slow_apply)
    await answer(service, Call("purge"))
    with trio.fail_after(30):
        await trio.to_thread.run_sync(in_coalesce.wait)
    # The coalesce is copying: data requests still run inline (no gate).
    assert service(Write(8192, b"3" * 4096)) == Done(4096)
    assert service(Read(0, 4)) == Data(b"1111")
    release.set()
    with trio.fail_after(30):
        status = await answer(service, Call("purge_status", {"wait": True}))
    assert isinstance(status, Result)
    assert status.value == {"purging": False, "done": 1, "total": 1, "error": ""}
    assert list(replica.info().chain) == ["volume-head-002.img", "volume-snap-b.img"]
    assert replica.read(0, 4096 * 3) == b"1" * 4096 + b"2" * 4096 + b"3" * 4096
