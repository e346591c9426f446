"""The one long operation a volume runs at a time (rebuild, purge, expansion, revert, salvage)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from lhtrio.engine.operation_gate import OperationGate
from lhtrio.errors import ConflictError
from lhtrio.models.volume import VolumeOperation


def test_the_states_keep_the_names_the_busy_string_had() -> None:
    assert [op.value for op in VolumeOperation] == [
        "",
        "rebuild",
        "purge",
        "expansion",
        "revert",
        "salvage",
    ]


async def test_long_operations_exclude_each_other() -> None:
    gate = OperationGate("v")
    assert gate.state is VolumeOperation.NONE
    await gate.begin(VolumeOperation.REBUILD)
    assert gate.state is VolumeOperation.REBUILD
    for other in (VolumeOperation.PURGE, VolumeOperation.EXPANSION, VolumeOperation.SALVAGE):
        with pytest.raises(ConflictError, match=rf"^volume v is busy \(rebuild\): {other.value}"):
            await gate.begin(other)
    with pytest.raises(ConflictError, match=r"busy \(rebuild\)"):
        await gate.begin(VolumeOperation.PURGE, automatic=True)
    gate.end()
    assert gate.state is VolumeOperation.NONE
    await gate.begin(VolumeOperation.REVERT)
    assert gate.state is VolumeOperation.REVERT


async def test_an_operators_operation_waits_for_one_the_engine_started_itself() -> None:
    gate = OperationGate("v")
    await gate.begin(VolumeOperation.PURGE, automatic=True)
    with pytest.raises(ConflictError, match=r"busy \(purge\)"):
        await gate.begin(VolumeOperation.PURGE, automatic=True)  # the engine's own: refused
    started: list[VolumeOperation] = []

    async def operator() -> None:
        await gate.begin(VolumeOperation.EXPANSION)
        started.append(gate.state)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(operator)
        await trio.testing.wait_all_tasks_blocked()
        assert started == []  # waiting, not refused
        gate.end()
    assert started == [VolumeOperation.EXPANSION]
    assert gate.state is VolumeOperation.EXPANSION
