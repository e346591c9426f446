"""The store against a dict-of-blocks model of the whole disk tree (Hypothesis state machine).

The model keeps, for every disk (head and snapshots), the blocks its *file* holds, and the parent
links. Reading a block walks from the head down to the first disk holding it (zeros if none). The
model applies the same rules as the store: writes replace whole blocks in the head (an unaligned
write patches what the chain read); unmap drops blocks from the head and from the removed
ancestors directly below it that have no other child, after which those blocks read whatever lies
below; purge runs the pure plan from ``lhtrio.replica.chain`` on the model's own data.

After every step the volume must read exactly like the model, every disk file must hold exactly the
model's blocks (content, and SEEK_DATA sees exactly those blocks allocated), the structure and the
revision counters (in memory and persisted) must match. ``kill`` abandons the replica without
closing (fds closed, nothing flushed, no metadata written): the page cache survives a process kill,
so everything — in particular every flushed write — must be there after reopening, while the
counter falls back to its value at the last flush.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from lhtrio.errors import AlreadyExistsError
from lhtrio.models.replica import ActionKind
from lhtrio.replica import chain as chainlib
from lhtrio.replica.meta import DiskMeta
from lhtrio.replica.names import head_file, snapshot_file
from lhtrio.replica.store import Replica

from .replica_helpers import BLOCK, INSTANCE, VOLUME, data_blocks, fill

ZERO = bytes(BLOCK)
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NAMES = st.sampled_from(["a", "b", "c", "d", "e", "f"])
HOT = 6 * BLOCK


@attrs.define
class Disk:
    parent: str
    blocks: dict[int, bytes] = attrs.Factory(dict)
    removed: bool = False
    user_created: bool = False


class Model:
    def __init__(self, size: int) -> None:
        self.size = size
        self.head_no = 0
        self.head = head_file(0)
        self.disks = {self.head: Disk(parent="")}
        self.counter = 0
        self.persisted = 0

    def block(self, b: int) -> bytes:
        disk = self.head
        while disk:
            found = self.disks[disk].blocks.get(b)
            if found is not None:
                return found
            disk = self.disks[disk].parent
        return ZERO

    def view(self) -> bytes:
        return b"".join(self.block(b) for b in range(self.size // BLOCK))

    def metas(self) -> dict[str, DiskMeta]:
        return {
            name: DiskMeta(
                name=name,
                parent=d.parent,
                removed=d.removed,
                user_created=d.user_created,
                created=WHEN,
            )
            for name, d in self.disks.items()
        }

    def chain(self) -> list[str]:
        return chainlib.live_chain(self.metas(), self.head)

    def write(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        for b in range(offset // BLOCK, (end + BLOCK - 1) // BLOCK):
            start = b * BLOCK
            block = bytearray(self.block(b))
            lo, hi = max(offset, start), min(end, start + BLOCK)
            block[lo - start : hi - start] = data[lo - offset : hi - offset]
            self.disks[self.head].blocks[b] = bytes(block)
        self.counter += 1

    def unmap(self, offset: int, length: int) -> None:
        self.counter += 1
        start = (offset + BLOCK - 1) // BLOCK
        stop = (offset + length) // BLOCK
        if length < BLOCK or stop <= start:
            return
        children = chainlib.children_map(self.metas())
        targets = [self.head]
        for disk in self.chain()[1:]:
            if not self.disks[disk].removed or len(children[disk]) != 1:
                break
            targets.append(disk)
        for disk in targets:
            for b in range(start, stop):
                self.disks[disk].blocks.pop(b, None)

    def new_head(self, parent: str) -> None:
        self.head_no += 1
        self.head = head_file(self.head_no)
        self.disks[self.head] = Disk(parent=parent)

    def snapshot(self, name: str, *, user_created: bool = True) -> None:
        self.persisted = self.counter
        disk = snapshot_file(name)
        old = self.disks.pop(self.head)
        self.disks[disk] = Disk(parent=old.parent, blocks=old.blocks, user_created=user_created)
        self.new_head(disk)

    def revert(self, name: str) -> None:
        self.persisted = self.counter
        del self.disks[self.head]
        self.new_head(snapshot_file(name))

    def purge(self) -> None:
        self.persisted = self.counter
        for disk in chainlib.purge_marks(self.metas(), self.head):
            self.disks[disk].removed = True
        for disk in chainlib.purge_order(self.metas(), self.head):
            if disk not in self.disks or not self.disks[disk].removed:
                continue
            for action in chainlib.prepare_remove(self.metas(), self.head, disk):
                source = self.disks[action.source]
                if action.kind is ActionKind.REMOVE:
                    del self.disks[action.source]
                elif action.kind is ActionKind.COALESCE:
                    source.blocks.update(self.disks[action.target].blocks)
                elif action.kind is ActionKind.REPLACE:
                    target = self.disks[action.target]
                    target.blocks = source.blocks
                    target.parent = source.parent
                    del self.disks[action.source]
                else:  # prune
                    for b in self.disks[action.target].blocks:
                        source.blocks.pop(b, None)

    def snapshots(self, *, removed: bool | None = None) -> list[str]:
        return sorted(
            name
            for name, d in self.disks.items()
            if name != self.head and (removed is None or d.removed == removed)
        )


class ReplicaMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="lhtrio-replica-sm-")
        self.path = os.path.join(self.tmp, "replica")
        self.replica: Replica | None = None
        self.model = Model(BLOCK)
        self.tag = 0

    @property
    def r(self) -> Replica:
        assert self.replica is not None
        return self.replica

    def teardown(self) -> None:
        if self.replica is not None:
            self.replica.abandon()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def offset(self, data: st.DataObject, *, aligned: bool = False) -> int:
        """An offset, half of the time in a small hot region so that operations overlap."""
        top = data.draw(st.sampled_from([HOT, self.model.size]))
        offset = data.draw(st.integers(0, min(top, self.model.size) - 1))
        return offset - offset % BLOCK if aligned else offset

    def next_data(self, length: int) -> bytes:
        self.tag += 1
        return fill(self.tag, length)

    @initialize(blocks=st.integers(16, 32), history=st.booleans())
    def create(self, blocks: int, history: bool) -> None:
        self.replica = Replica.create(
            self.path, size=blocks * BLOCK, volume=VOLUME, instance=INSTANCE
        )
        self.model = Model(blocks * BLOCK)
        if history:  # start with data under the head, so that short programs reach it
            payload = self.next_data(HOT)
            self.r.write(0, payload)
            self.model.write(0, payload)
            self.r.snapshot("base")
            self.model.snapshot("base")

    # -- data path ------------------------------------------------------------------------------

    @rule(data=st.data(), count=st.integers(1, 8))
    def write_aligned(self, data: st.DataObject, count: int) -> None:
        first = self.offset(data) // BLOCK
        count = min(count, self.model.size // BLOCK - first)
        payload = self.next_data(count * BLOCK)
        self.r.write(first * BLOCK, payload)
        self.model.write(first * BLOCK, payload)

    @rule(data=st.data(), length=st.integers(1, 3 * BLOCK + 100))
    def write_unaligned(self, data: st.DataObject, length: int) -> None:
        offset = self.offset(data)
        length = min(length, self.model.size - offset)
        payload = self.next_data(length)
        self.r.write(offset, memoryview(payload))
        self.model.write(offset, payload)

    @rule(
        data=st.data(),
        length=st.one_of(
            st.integers(1, 6).map(lambda n: n * BLOCK),
            st.integers(0, 6 * BLOCK),
        ),
    )
    def unmap(self, data: st.DataObject, length: int) -> None:
        offset = self.offset(data, aligned=data.draw(st.booleans()))
        length = min(length, self.model.size - offset)
        self.r.unmap(offset, length)
        self.model.unmap(offset, length)

    @rule(data=st.data(), length=st.integers(1, 5 * BLOCK))
    def read(self, data: st.DataObject, length: int) -> None:
        offset = self.offset(data)
        length = min(length, self.model.size - offset)
        assert self.r.read(offset, length) == self.model.view()[offset : offset + length]

    @rule()
    def flush(self) -> None:
        self.r.flush()
        self.model.persisted = self.model.counter

    # -- snapshots ------------------------------------------------------------------------------

    @rule(name=NAMES, user_created=st.booleans())
    def snapshot(self, name: str, user_created: bool) -> None:
        if snapshot_file(name) in self.model.disks:
            try:
                self.r.snapshot(name)
            except AlreadyExistsError:
                return
            raise AssertionError(f"snapshot {name} taken twice")
        self.r.snapshot(name, user_created=user_created)
        self.model.snapshot(name, user_created=user_created)

    @precondition(lambda self: self.model.snapshots(removed=False))
    @rule(data=st.data())
    def mark_removed(self, data: st.DataObject) -> None:
        disk = data.draw(st.sampled_from(self.model.snapshots(removed=False)))
        self.r.mark_removed(disk)
        self.model.disks[disk].removed = True

    @rule()
    def purge(self) -> None:
        self.r.purge()
        self.model.purge()

    @precondition(lambda self: self.model.snapshots(removed=False))
    @rule(data=st.data())
    def revert(self, data: st.DataObject) -> None:
        disk = data.draw(st.sampled_from(self.model.snapshots(removed=False)))
        self.r.revert(disk)
        self.model.revert(disk[len("volume-snap-") : -len(".img")])

    @precondition(lambda self: self.model.size < 128 * BLOCK)
    @rule(more=st.integers(1, 16))
    def expand(self, more: int) -> None:
        size = self.model.size + more * BLOCK
        self.r.expand(size)
        self.model.snapshot(f"expand-{size}", user_created=False)
        self.model.size = size

    # -- lifetime -------------------------------------------------------------------------------

    def reopen(self) -> None:
        self.replica = Replica.open(self.path, volume=VOLUME, instance=INSTANCE)

    def dirty_on_disk(self) -> bool:
        with open(os.path.join(self.path, "volume.meta"), "rb") as f:
            return json.load(f)["Dirty"] is True

    @rule()
    def close_and_reopen(self) -> None:
        self.r.close()
        assert self.dirty_on_disk() is False
        self.model.persisted = self.model.counter
        self.reopen()
        assert self.dirty_on_disk() is True

    @rule()
    def kill_and_reopen(self) -> None:
        self.r.abandon()
        assert self.dirty_on_disk() is True
        self.model.counter = self.model.persisted
        self.reopen()

    # -- checks ---------------------------------------------------------------------------------

    @invariant()
    def volume_reads_like_the_model(self) -> None:
        if self.replica is None:
            return
        assert self.r.size == self.model.size
        assert self.r.read(0, self.model.size) == self.model.view()

    @invariant()
    def structure_and_counters_match(self) -> None:
        if self.replica is None:
            return
        info = self.r.info()
        assert info.head == self.model.head
        assert list(info.chain) == self.model.chain()
        assert {n: (d.parent, d.removed) for n, d in info.disks.items()} == {
            n: (d.parent, d.removed) for n, d in self.model.disks.items()
        }
        assert self.r.revision_counter == self.model.counter
        assert self.r.persisted_revision_counter == self.model.persisted
        with open(os.path.join(self.path, "revision.counter"), "rb") as f:
            assert f.read().rstrip(b"\0") == str(self.model.persisted).encode()

    @invariant()
    def files_hold_exactly_the_model_blocks(self) -> None:
        if self.replica is None:
            return
        for name, disk in self.model.disks.items():
            path = os.path.join(self.path, name)
            with open(path, "rb") as f:
                content = f.read()
            for b in range(len(content) // BLOCK):
                expected = disk.blocks.get(b, ZERO)
                assert content[b * BLOCK : (b + 1) * BLOCK] == expected, (name, b)
            assert data_blocks(path) == set(disk.blocks), name


ReplicaMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestReplicaMachine = ReplicaMachine.TestCase
