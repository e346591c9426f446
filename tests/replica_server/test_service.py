"""The replica service's scheduling rules, driven directly (no sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from lhtrio.errors import ConflictError, UnknownCallError
from lhtrio.replica.service import ReplicaService
from lhtrio.replica.store import Replica
from lhtrio.wire import Call, Data, Done, Read, Reply, Result, Write


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
                results.append(await pending)  # type: ignore[misc]

            nursery.start_soon(finish)
            await trio.testing.wait_all_tasks_blocked()
            assert results == []
            assert service.replica.read(0, 1) == b"a"  # not applied while the gate is held
        await trio.testing.wait_all_tasks_blocked()  # the gate opened: the write runs
    assert results == [Done(4096)]
    assert service.replica.read(0, 1) == b"b"


async def test_one_purge_at_a_time(service: ReplicaService) -> None:
    async with service._exclusive("hold"):
        assert isinstance(await answer(service, Call("purge")), Result)
        with pytest.raises(ConflictError, match="already purging"):
            service(Call("purge"))


async def test_unknown_call(service: ReplicaService) -> None:
    with pytest.raises(UnknownCallError, match="no control call 'format'"):
        service(Call("format"))
