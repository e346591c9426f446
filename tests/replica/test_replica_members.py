"""The replica set the engine records on a replica (``lhtrio-members.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lhtrio.errors import CorruptMetadataError, InvalidArgumentError
from lhtrio.models.replica import MemberRecord, SetMember
from lhtrio.replica.store import Replica

from .replica_helpers import BLOCK, fill, open_replica, tree

A = SetMember("r0", "tcp://10.0.0.1:7000")
B = SetMember("r1", "tcp://10.0.0.2:7000")


def test_nothing_is_recorded_in_a_new_replica(replica: Replica, rdir: Path) -> None:
    assert replica.members() == MemberRecord()
    assert not (rdir / "lhtrio-members.json").exists()


def test_a_record_survives_a_reopen_and_an_older_one_does_not_replace_it(
    replica: Replica, rdir: Path
) -> None:
    newer = MemberRecord(epoch=5, members=(A, B))
    assert replica.set_members(newer) == newer
    assert replica.set_members(MemberRecord(epoch=4, members=(A,))) == newer  # crossed on the way
    assert replica.set_members(MemberRecord(epoch=5, members=(B,))) == newer
    replica.close()
    with open_replica(rdir) as reopened:
        assert reopened.members() == newer
    assert json.loads((rdir / "lhtrio-members.json").read_text()) == {
        "epoch": 5,
        "members": [["r0", "tcp://10.0.0.1:7000"], ["r1", "tcp://10.0.0.2:7000"]],
    }


@pytest.mark.parametrize(
    "record",
    [
        MemberRecord(epoch=0, members=(A,)),
        MemberRecord(epoch=-1),
        MemberRecord(epoch=3, members=(A, SetMember("r0", "tcp://elsewhere:1"))),
        MemberRecord(epoch=3, members=(SetMember("../x", "tcp://h:1"),)),
        MemberRecord(epoch=3, members=(SetMember("r2", ""),)),
        MemberRecord(epoch=3, members=(SetMember("r2", "x" * 300),)),
    ],
)
def test_a_record_no_engine_makes_is_refused_and_changes_nothing(
    replica: Replica, rdir: Path, record: MemberRecord
) -> None:
    replica.write(0, fill(1, BLOCK))
    replica.flush()
    before = tree(rdir)
    with pytest.raises(InvalidArgumentError):
        replica.set_members(record)
    assert tree(rdir) == before
    assert not replica.failed


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b'{"epoch": 1}', b'{"epoch": "1", "members": []}', b'{"epoch": 1, "members": [1]}'],
)
def test_a_corrupt_record_is_an_error_that_names_the_file(
    replica: Replica, rdir: Path, content: bytes
) -> None:
    (rdir / "lhtrio-members.json").write_bytes(content)
    with pytest.raises(CorruptMetadataError, match=r"lhtrio-members\.json"):
        replica.members()
    assert (rdir / "lhtrio-members.json").read_bytes() == content  # left for a human to look at
