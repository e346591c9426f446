from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lhtrio.errors import InvalidArgumentError, OutOfRangeError
from lhtrio.replica.index import MAX_LAYERS, ReadIndex


class Layers:
    """A model of which layers hold which blocks, and a counting resolver over it."""

    def __init__(self, blocks: int, layers: int) -> None:
        self.blocks = blocks
        self.held: list[set[int]] = [set() for _ in range(layers + 1)]  # [0] unused
        self.calls = 0

    def owner(self, block: int) -> int:
        for layer in range(len(self.held) - 1, 1, -1):
            if block in self.held[layer]:
                return layer
        return 1

    def resolve(self, block: int, limit: int) -> tuple[int, int]:
        self.calls += 1
        layer = self.owner(block)
        count = 1
        while count < limit and self.owner(block + count) == layer:
            count += 1
        return layer, count


def test_lookup_resolves_once_and_caches() -> None:
    model = Layers(16, 3)
    model.held[2] = {4, 5, 6}
    index = ReadIndex(16, 3, model.resolve)
    assert index.lookup(5) == 2
    calls = model.calls
    assert index.lookup(5) == 2
    assert index.lookup(6) == 2  # resolved with the same run
    assert model.calls == calls
    assert index.lookup(0) == 1


def test_runs_group_and_resolve() -> None:
    model = Layers(32, 3)
    model.held[3] = {2, 3}
    model.held[2] = {3, 4, 5, 10}
    index = ReadIndex(32, 3, model.resolve)
    assert list(index.runs(0, 12)) == [
        (1, 0, 2),
        (3, 2, 2),
        (2, 4, 2),
        (1, 6, 4),
        (2, 10, 1),
        (1, 11, 1),
    ]
    index.mark_written(0, 4)
    assert list(index.runs(0, 6)) == [(3, 0, 4), (2, 4, 2)]


def test_runs_merge_known_and_unknown_entries_of_one_layer() -> None:
    model = Layers(8, 2)
    model.held[2] = set(range(8))
    index = ReadIndex(8, 2, model.resolve)
    index.mark_written(2, 1)
    assert list(index.runs(0, 8)) == [(2, 0, 8)]


def test_mark_written_large_ranges() -> None:
    index = ReadIndex(5000, 4, Layers(5000, 4).resolve)
    index.mark_written(1, 4998)
    assert index.loc[0] == 0
    assert index.loc[4999] == 0
    assert set(index.loc[1:4999]) == {4}
    index.mark_written(0, 1024)
    assert set(index.loc[0:1024]) == {4}


def test_forget_and_structure_changes() -> None:
    index = ReadIndex(8, 1, Layers(8, 1).resolve)
    index.mark_written(0, 8)
    index.add_layer()
    index.mark_written(2, 2)
    index.add_layer()
    index.mark_written(4, 1)
    assert list(index.loc) == [1, 1, 2, 2, 3, 1, 1, 1]
    index.forget(0, 1)
    assert index.loc[0] == 0

    merged = ReadIndex(8, 3, Layers(8, 3).resolve)
    merged.loc[:] = bytes([0, 1, 2, 2, 3, 1, 1, 1])
    merged.merge_down(1)
    assert list(merged.loc) == [0, 1, 1, 1, 2, 1, 1, 1]
    assert merged.layers == 2

    index.remove_layer(2)
    assert list(index.loc) == [0, 1, 0, 0, 2, 1, 1, 1]
    assert index.layers == 2
    index.mark_written(0, 1)
    assert index.loc[0] == 2

    index.expand(10)
    assert index.blocks == 10
    assert list(index.loc[8:]) == [0, 0]
    with pytest.raises(OutOfRangeError):
        index.expand(4)

    loc = index.loc
    index.reset(5)
    assert index.loc is loc
    assert set(index.loc) == {0}
    assert index.layers == 5


def test_layer_limits() -> None:
    index = ReadIndex(1, MAX_LAYERS, Layers(1, MAX_LAYERS).resolve)
    with pytest.raises(InvalidArgumentError, match="250"):
        index.add_layer()
    with pytest.raises(InvalidArgumentError):
        ReadIndex(1, 0, Layers(1, 1).resolve)
    single = ReadIndex(1, 1, Layers(1, 1).resolve)
    with pytest.raises(InvalidArgumentError):
        single.remove_layer(1)
    with pytest.raises(InvalidArgumentError):
        single.merge_down(1)


def test_bad_resolver_is_caught() -> None:
    index = ReadIndex(4, 2, lambda block, limit: (3, 1))
    with pytest.raises(AssertionError, match="resolver answered"):
        index.lookup(0)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 63), st.integers(1, 16)),
        st.tuples(st.just("hold"), st.integers(0, 63), st.integers(1, 16)),
        st.tuples(st.just("forget"), st.integers(0, 63), st.integers(1, 16)),
        st.tuples(st.just("snapshot"), st.just(0), st.just(0)),
        st.tuples(st.just("remove"), st.integers(0, 10), st.just(0)),
        st.tuples(st.just("runs"), st.integers(0, 63), st.integers(1, 64)),
    ),
    max_size=40,
)


@settings(max_examples=200)
@given(_ops)
def test_index_agrees_with_the_layers(ops: list[tuple[str, int, int]]) -> None:
    """Whatever happens, every answer is the topmost layer holding the block."""
    blocks = 64
    model = Layers(blocks, 1)
    index = ReadIndex(blocks, 1, model.resolve)
    for op, a, b in ops:
        end = min(a + b, blocks)
        if op == "write":
            model.held[-1].update(range(a, end))
            index.mark_written(a, end - a)
        elif op == "hold":  # data the index does not know about yet appears below (e.g. open)
            model.held[-1].update(range(a, end))
            index.forget(a, end - a)
        elif op == "forget":
            for held in model.held[1:]:
                held.difference_update(range(a, end))
            index.forget(a, end - a)
        elif op == "snapshot" and len(model.held) < 12:
            model.held.append(set())
            index.add_layer()
        elif op == "remove" and 1 <= a < len(model.held) - 1:
            del model.held[a]
            index.remove_layer(a)
        elif op == "runs":
            covered = a
            for owner, first, count in index.runs(a, end - a):
                assert first == covered
                assert count >= 1
                covered += count
                for block in range(first, first + count):
                    assert model.owner(block) == owner
            assert covered == end
        for block in range(blocks):
            assert index.lookup(block) == model.owner(block)
