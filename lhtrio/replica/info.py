"""Frozen values describing a replica, returned by :meth:`Replica.info`."""

from __future__ import annotations

import datetime as dt

import attrs

__all__ = ["DiskInfo", "ReplicaInfo"]


@attrs.frozen(kw_only=True)
class DiskInfo:
    """One disk (snapshot or head). Names are disk file names; ``size`` (the file's length) and
    ``allocated`` are in bytes."""

    name: str
    parent: str
    children: tuple[str, ...]
    removed: bool
    user_created: bool
    created: dt.datetime
    labels: dict[str, str] | None
    size: int
    allocated: int


@attrs.frozen(kw_only=True)
class ReplicaInfo:
    """A replica at one instant.

    ``chain`` is the live chain, head first. ``revision_counter`` is the in-memory counter and
    ``persisted_revision_counter`` what ``revision.counter`` holds (see ``store`` for the
    guarantee). ``last_modify_time`` is the head's mtime in nanoseconds.
    """

    path: str
    volume: str
    instance: str
    size: int
    sector_size: int
    head: str
    parent: str
    dirty: bool
    rebuilding: bool
    revision_counter: int
    persisted_revision_counter: int
    chain: tuple[str, ...]
    disks: dict[str, DiskInfo]
    head_allocated: int
    last_modify_time: int
