"""The arguments of the replica's control calls, one frozen attrs class per call shape.

:func:`lhtrio.wire.control.structure_args` turns a ``Call``'s msgpack map into one of these
strictly (unknown keys, missing keys and wrong types are ``INVALID_ARGUMENT``); the checks that
need more than a type (names, labels, times, addresses) are here too, so that the service's
handlers only run on arguments that can be acted upon. The calls are listed in
:mod:`lhtrio.replica.service`.
"""

from __future__ import annotations

import attrs

from lhtrio.errors import InvalidArgumentError
from lhtrio.net import parse_address
from lhtrio.replica import meta as metalib
from lhtrio.replica import transfer
from lhtrio.replica.adopt import PlannedDisk
from lhtrio.replica.meta import DiskMeta

__all__ = [
    "WaitArgs",
    "SnapshotArgs",
    "ActionArgs",
    "RevertArgs",
    "RangeArgs",
    "ChecksumArgs",
    "RebuildingArgs",
    "CounterArgs",
    "RangesArgs",
    "MapArgs",
    "DiffArgs",
    "PlannedArgs",
    "AdoptArgs",
    "SyncArgs",
    "StatusArgs",
    "ClearArgs",
    "plan",
    "source_address",
]


@attrs.frozen(kw_only=True)
class WaitArgs:
    wait: bool = False


@attrs.frozen(kw_only=True)
class SnapshotArgs:
    name: str
    user_created: bool = True
    created: str | None = None
    labels: dict[str, str] | None = None


@attrs.frozen(kw_only=True)
class ActionArgs:
    kind: str
    source: str
    target: str = ""


@attrs.frozen(kw_only=True)
class RevertArgs:
    name: str
    created: str | None = None


@attrs.frozen(kw_only=True)
class RangeArgs:
    offset: int
    length: int


@attrs.frozen(kw_only=True)
class ChecksumArgs:
    name: str
    force: bool = False


@attrs.frozen(kw_only=True)
class RebuildingArgs:
    rebuilding: bool


@attrs.frozen(kw_only=True)
class CounterArgs:
    value: int


@attrs.frozen(kw_only=True)
class RangesArgs:
    name: str
    ranges: list[tuple[int, int]]


@attrs.frozen(kw_only=True)
class MapArgs:
    name: str
    offset: int = 0
    limit: int = transfer.MAP_EXTENTS


@attrs.frozen(kw_only=True)
class DiffArgs:
    name: str
    groups: list[list[tuple[int, int]]]
    digests: bytes


@attrs.frozen(kw_only=True)
class PlannedArgs:
    parent: str
    removed: bool
    user_created: bool
    created: str
    labels: dict[str, str] | None
    size: int


@attrs.frozen(kw_only=True)
class AdoptArgs:
    disks: dict[str, PlannedArgs]


@attrs.frozen(kw_only=True)
class SyncArgs:
    source: str
    files: list[str]
    existing: list[str]
    dirty: list[tuple[int, int]] | None = None
    dirty_file: str = ""


@attrs.frozen(kw_only=True)
class StatusArgs:
    wait: float = 0.0


@attrs.frozen(kw_only=True)
class ClearArgs:
    everything: bool = False


def plan(args: AdoptArgs) -> dict[str, PlannedDisk]:
    plan = {}
    for name, disk in args.disks.items():
        try:
            created = metalib.parse_time(disk.created)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"adopt: {name!r}: bad creation time: {exc}") from None
        meta = DiskMeta(
            name=name,
            parent=disk.parent,
            removed=disk.removed,
            user_created=disk.user_created,
            created=created,
            labels=disk.labels,
        )
        plan[name] = PlannedDisk(meta=meta, size=disk.size)
    return plan


def source_address(text: str) -> str:
    """A rebuild source's address, checked before a task tries to connect to it."""
    address = parse_address(text)  # InvalidArgumentError
    if not text.isascii() or not text.isprintable() or any(c.isspace() for c in text):
        problem = "it holds characters other than printable ASCII"
    elif address.is_unix:
        if len(address.path) <= 107:
            return text
        problem = "its socket path is longer than 107 bytes"
    elif len(address.host) <= 253 and all(0 < len(x) <= 63 for x in address.host.split(".")):
        return text
    else:
        problem = "its host is not a valid host name or address"
    raise InvalidArgumentError(f"sync_start: bad source address {text!r}: {problem}")
