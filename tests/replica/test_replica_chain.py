from __future__ import annotations

import datetime as dt

import pytest

from lhtrio.errors import ConflictError, CorruptMetadataError, InvalidArgumentError, NotFoundError
from lhtrio.models.replica import ActionKind, RemovalAction
from lhtrio.replica import chain
from lhtrio.replica.meta import DiskMeta

WHEN = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
HEAD = "volume-head-009.img"


def snap(name: str) -> str:
    return f"volume-snap-{name}.img"


def disks(spec: dict[str, tuple[str, bool, bool]]) -> dict[str, DiskMeta]:
    """``{short name: (parent short name, removed, user_created)}``; "head" is the head."""

    def full(short: str) -> str:
        return "" if not short else HEAD if short == "head" else snap(short)

    return {
        full(name): DiskMeta(
            name=full(name),
            parent=full(parent),
            removed=removed,
            user_created=user,
            created=WHEN,
        )
        for name, (parent, removed, user) in spec.items()
    }


LINEAR = disks(
    {
        "a": ("", False, True),
        "b": ("a", False, True),
        "c": ("b", False, True),
        "head": ("c", False, False),
    }
)


def test_live_chain_and_children() -> None:
    assert chain.validate(LINEAR, HEAD) == [HEAD, snap("c"), snap("b"), snap("a")]
    children = chain.children_map(LINEAR)
    assert children[snap("a")] == [snap("b")]
    assert children[HEAD] == []


def test_validate_errors_name_the_file() -> None:
    with pytest.raises(CorruptMetadataError, match=r"/r/volume.meta: the head .* has no"):
        chain.validate(LINEAR, "volume-head-001.img", origin="/r")
    broken = {**LINEAR, snap("b"): DiskMeta(name=snap("b"), parent=snap("zz"), created=WHEN)}
    with pytest.raises(
        CorruptMetadataError, match=r"/r/volume-snap-b.img.meta: its parent volume-snap-zz.img"
    ):
        chain.validate(broken, HEAD, origin="/r")
    cycle = {**LINEAR, snap("a"): DiskMeta(name=snap("a"), parent=snap("c"), created=WHEN)}
    with pytest.raises(CorruptMetadataError, match="cycle"):
        chain.validate(cycle, HEAD, origin="/r")
    selfish = {**LINEAR, snap("a"): DiskMeta(name=snap("a"), parent=snap("a"), created=WHEN)}
    with pytest.raises(CorruptMetadataError, match="cycle"):
        chain.validate(selfish, HEAD)


def test_chain_limit() -> None:
    spec = {str(i): (str(i - 1) if i else "", False, True) for i in range(250)}
    ok = disks({**spec, "head": ("248", False, False)})
    assert len(chain.validate(ok, HEAD)) == 250
    too_long = disks({**spec, "head": ("249", False, False)})
    with pytest.raises(CorruptMetadataError, match="more than 250") as info:
        chain.validate(too_long, HEAD, origin="/r")
    assert "volume-head-009.img.meta" in str(info.value)


def test_prepare_remove_cases() -> None:
    spec = {
        "a": ("", True, True),  # one child, not the head → coalesce + replace
        "b": ("a", True, True),  # several children (after a revert) → nothing
        "c": ("b", True, True),  # child is the head → prune
        "d": ("b", True, True),  # the old branch: a leaf → remove
        "e": ("", False, True),
        "head": ("c", False, False),
    }
    graph = disks(spec)
    assert chain.prepare_remove(graph, HEAD, snap("a")) == [
        RemovalAction(kind=ActionKind.COALESCE, source=snap("a"), target=snap("b")),
        RemovalAction(kind=ActionKind.REPLACE, source=snap("a"), target=snap("b")),
    ]
    assert chain.prepare_remove(graph, HEAD, snap("b")) == []
    assert chain.prepare_remove(graph, HEAD, snap("c")) == [
        RemovalAction(kind=ActionKind.PRUNE, source=snap("c"), target=HEAD)
    ]
    assert chain.prepare_remove(graph, HEAD, snap("d")) == [
        RemovalAction(kind=ActionKind.REMOVE, source=snap("d"))
    ]
    with pytest.raises(ConflictError, match="not marked removed"):
        chain.prepare_remove(graph, HEAD, snap("e"))
    with pytest.raises(NotFoundError):
        chain.prepare_remove(graph, HEAD, snap("zz"))
    with pytest.raises(InvalidArgumentError, match="head"):
        chain.prepare_remove(graph, HEAD, HEAD)


def test_purge_marks_system_snapshots() -> None:
    graph = disks(
        {
            "a": ("", False, False),
            "b": ("a", True, False),
            "c": ("b", False, True),
            "head": ("c", False, False),
        }
    )
    assert chain.purge_marks(graph, HEAD) == [snap("a")]


def test_purge_order_defers_the_head_parent() -> None:
    graph = disks(
        {
            "a": ("", True, True),
            "b": ("a", True, True),
            "c": ("b", True, True),
            "head": ("c", False, False),
        }
    )
    assert chain.purge_order(graph, HEAD) == [snap("b"), snap("a"), snap("c")]


def test_purge_order_processes_branches_before_their_fork() -> None:
    graph = disks(
        {
            "a": ("", True, True),
            "b": ("a", True, True),  # fork: old branch x-y, live branch c-head
            "x": ("b", True, True),
            "y": ("x", True, True),
            "c": ("b", False, True),
            "head": ("c", False, False),
        }
    )
    order = chain.purge_order(graph, HEAD)
    assert set(order) == {snap(n) for n in "abxy"}
    assert order.index(snap("y")) < order.index(snap("x")) < order.index(snap("b"))
    assert order.index(snap("b")) < order.index(snap("a"))
    assert snap("c") not in order  # not removed
