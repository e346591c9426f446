"""Names in a replica directory: validation of user-supplied names, and the file-name patterns.

A replica directory is Longhorn's layout (``longhorn-facts.md`` §1.1)::

    volume.meta                      the replica's metadata (JSON)
    revision.counter                 4096 bytes, ASCII decimal, NUL-padded
    volume-head-NNN.img[.meta]       the live head (NNN at least three digits)
    volume-snap-NAME.img[.meta]      one snapshot
    volume-snap-NAME.img.checksum    optional cached hash of a snapshot file
    lhtrio-replica.json              the volume and replica instance it belongs to (JSON)
    volume.intent                    where writes may have been in flight (lhtrio.replica.intent)
    <any of the above>.tmp           an atomic write that a crash interrupted

Snapshot, volume and instance names come from the network, so every name is validated before it is
turned into a path, by the rules of :mod:`lhtrio.models.names` (the same everywhere a name
enters): a snapshot name that could escape the directory (``/``, ``..``), that a shell or a CLI
could take for an option (leading ``-``), that holds a control character, or whose longest file
name (``volume-snap-NAME.img.checksum.tmp``) would not fit the file system's 255 *bytes* is
refused with :class:`~lhtrio.errors.InvalidArgumentError` before any file is touched.

:func:`classify` is the inverse of the builders: every file name the store writes classifies as one
of :class:`FileKind`, and anything else is an *unknown file*, which :meth:`Replica.open` refuses.
"""

from __future__ import annotations

import enum
import re

import attrs

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.names import (
    MAX_SNAPSHOT_NAME,
    snapshot_name_problem,
    validate_instance_name,
    validate_snapshot_name,
    validate_volume_name,
)
from lhtrio.models.replica import snapshot_disk, snapshot_of

__all__ = [
    "MAX_NAME_LENGTH",
    "VOLUME_META",
    "REVISION_COUNTER",
    "IDENTITY",
    "MEMBERS",
    "INTENT",
    "HEAD_PREFIX",
    "IMG_SUFFIX",
    "META_SUFFIX",
    "CHECKSUM_SUFFIX",
    "TMP_SUFFIX",
    "validate_name",
    "head_file",
    "snapshot_file",
    "meta_file",
    "checksum_file",
    "tmp_file",
    "is_head_file",
    "head_number",
    "snapshot_name",
    "disk_file",
    "FileKind",
    "ParsedName",
    "classify",
]

MAX_NAME_LENGTH = MAX_SNAPSHOT_NAME

VOLUME_META = "volume.meta"
REVISION_COUNTER = "revision.counter"
IDENTITY = "lhtrio-replica.json"
MEMBERS = "lhtrio-members.json"
INTENT = "volume.intent"
# Snapshot files are spelled by lhtrio.models.replica.snapshot_disk/snapshot_of (the one naming
# helper, shared with the engine); heads are the replica's alone.
HEAD_PREFIX = "volume-head-"
IMG_SUFFIX = ".img"
META_SUFFIX = ".meta"
CHECKSUM_SUFFIX = ".checksum"
TMP_SUFFIX = ".tmp"

_HEAD_RE = re.compile(r"volume-head-(\d{3,})\.img")


def validate_name(name: str, *, what: str = "snapshot") -> str:
    """Return ``name`` if it is a valid name of kind ``what``, else raise InvalidArgumentError.

    ``what``: ``"snapshot"`` (the default), ``"volume"``, or ``"instance"``/``"node"`` (the
    instance rule); the rules are :mod:`lhtrio.models.names`'.
    """
    if what == "snapshot":
        return validate_snapshot_name(name)
    if what == "volume":
        return validate_volume_name(name)
    if what in ("instance", "node"):
        return validate_instance_name(name, what=what)
    raise ValueError(f"unknown kind of name {what!r}")


def head_file(number: int) -> str:
    """``volume-head-007.img`` for 7."""
    if number < 0:
        raise InvalidArgumentError(f"head number must be >= 0, got {number}")
    return f"{HEAD_PREFIX}{number:03d}{IMG_SUFFIX}"


def snapshot_file(name: str) -> str:
    """``volume-snap-NAME.img`` for a valid snapshot name."""
    return snapshot_disk(validate_snapshot_name(name))


def meta_file(disk: str) -> str:
    return disk + META_SUFFIX


def checksum_file(disk: str) -> str:
    return disk + CHECKSUM_SUFFIX


def tmp_file(name: str) -> str:
    return name + TMP_SUFFIX


def head_number(disk: str) -> int | None:
    """The NNN of ``volume-head-NNN.img``, or None if ``disk`` is not a head file name."""
    m = _HEAD_RE.fullmatch(disk)
    if m is None:
        return None
    number = int(m.group(1))
    # Only the canonical spelling (what head_file() writes) is a head file.
    return number if head_file(number) == disk else None


def is_head_file(disk: str) -> bool:
    return head_number(disk) is not None


def snapshot_name(disk: str) -> str | None:
    """The NAME of ``volume-snap-NAME.img`` if it is a valid name, else None."""
    name = snapshot_of(disk)
    return name if name is not None and snapshot_name_problem(name) is None else None


def disk_file(name_or_file: str) -> str:
    """The disk file for a bare snapshot name or a disk file name (head or snapshot).

    ``"a"`` and ``"volume-snap-a.img"`` both give ``"volume-snap-a.img"``; a head file name is
    returned unchanged. Anything else is validated as a snapshot name.
    """
    if is_head_file(name_or_file) or snapshot_name(name_or_file) is not None:
        return name_or_file
    return snapshot_file(name_or_file)


class FileKind(enum.Enum):
    VOLUME_META = "volume-meta"
    REVISION_COUNTER = "revision-counter"
    HEAD_IMG = "head-img"
    HEAD_META = "head-meta"
    HEAD_CHECKSUM = "head-checksum"
    SNAP_IMG = "snap-img"
    SNAP_META = "snap-meta"
    SNAP_CHECKSUM = "snap-checksum"
    IDENTITY = "identity"
    MEMBERS = "members"
    INTENT = "intent"
    TMP = "tmp"


@attrs.frozen(kw_only=True)
class ParsedName:
    """What a file in a replica directory is.

    ``disk`` is the disk file the name belongs to (``""`` for volume.meta, revision.counter and
    the identity record);
    for a ``.tmp`` file, ``target`` is the parsed name of the file the write was for.
    """

    kind: FileKind
    disk: str = ""
    target: ParsedName | None = None


_SUFFIX_KINDS = (
    (META_SUFFIX, FileKind.HEAD_META, FileKind.SNAP_META),
    (CHECKSUM_SUFFIX, FileKind.HEAD_CHECKSUM, FileKind.SNAP_CHECKSUM),
    ("", FileKind.HEAD_IMG, FileKind.SNAP_IMG),
)


def classify(filename: str) -> ParsedName | None:
    """Parse a file name of a replica directory; None for an unknown file."""
    if filename == VOLUME_META:
        return ParsedName(kind=FileKind.VOLUME_META)
    if filename == REVISION_COUNTER:
        return ParsedName(kind=FileKind.REVISION_COUNTER)
    if filename == IDENTITY:
        return ParsedName(kind=FileKind.IDENTITY)
    if filename == MEMBERS:
        return ParsedName(kind=FileKind.MEMBERS)
    if filename == INTENT:
        return ParsedName(kind=FileKind.INTENT)
    if filename.endswith(TMP_SUFFIX):
        target = classify(filename[: -len(TMP_SUFFIX)])
        if target is None or target.kind is FileKind.TMP:
            return None
        return ParsedName(kind=FileKind.TMP, disk=target.disk, target=target)
    for suffix, head_kind, snap_kind in _SUFFIX_KINDS:
        if suffix and not filename.endswith(suffix):
            continue
        disk = filename[: -len(suffix)] if suffix else filename
        if is_head_file(disk):
            return ParsedName(kind=head_kind, disk=disk)
        if snapshot_name(disk) is not None:
            return ParsedName(kind=snap_kind, disk=disk)
        if suffix:
            # "volume-snap-x.img.meta" failed as a meta file: it is not an .img either.
            return None
    return None
