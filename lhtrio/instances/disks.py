"""The node's disks: identity files, capacity, and where replicas live on them.

A disk is a directory (the data dir, or an extra ``--disk``). It carries ``lhtrio-disk.json``
with a UUID created the first time the node sees it, so the control plane can tell a disk from a
path (a disk mounted elsewhere keeps its UUID; a fresh disk at the old path gets a new one).
Replica instances live in ``<disk>/replicas/<instance name>``. The node reports each disk's
capacity and free bytes (``statvfs``), the bytes scheduled to its replicas (their volume sizes),
and its replicas' directories.
"""

from __future__ import annotations

import json
import os
import uuid

import attrs

from lhtrio.errors import CorruptMetadataError, InvalidArgumentError, NotFoundError
from lhtrio.models.instance import DiskStatus
from lhtrio.replica import fs
from lhtrio.replica.names import validate_name

__all__ = ["IDENTITY_FILE", "REPLICAS_DIR", "Disk", "open_disk", "disk_status", "find_disk"]

IDENTITY_FILE = "lhtrio-disk.json"
REPLICAS_DIR = "replicas"


@attrs.frozen(kw_only=True)
class Disk:
    uuid: str
    path: str

    def replica_dir(self, name: str) -> str:
        return os.path.join(self.path, REPLICAS_DIR, validate_name(name, what="instance"))


def open_disk(path: str) -> Disk:
    """The disk at ``path`` (created, with a new identity, if needed)."""
    path = os.path.abspath(path)
    try:
        os.makedirs(os.path.join(path, REPLICAS_DIR), exist_ok=True)
    except OSError as exc:
        raise fs.os_error(exc, f"cannot use disk {path}") from None
    dir_fd = fs.open_dir(path)
    try:
        try:
            raw = fs.read_small(dir_fd, IDENTITY_FILE, 4096)
        except FileNotFoundError:
            identity = str(uuid.uuid4())
            fs.write_atomic(dir_fd, IDENTITY_FILE, json.dumps({"uuid": identity}).encode())
            return Disk(uuid=identity, path=path)
        except (OSError, ValueError) as exc:
            raise CorruptMetadataError(f"{path}/{IDENTITY_FILE}: {exc}") from None
        try:
            data = json.loads(raw)
            identity = str(uuid.UUID(data["uuid"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptMetadataError(
                f"{path}/{IDENTITY_FILE}: not a disk identity ({exc}); move it away to give "
                "the disk a new identity"
            ) from None
        return Disk(uuid=identity, path=path)
    finally:
        os.close(dir_fd)


def disk_status(disk: Disk, replicas: dict[str, int]) -> DiskStatus:
    """``replicas``: instance name -> volume size of the replicas scheduled on ``disk``."""
    try:
        st = os.statvfs(disk.path)
    except OSError as exc:
        raise fs.os_error(exc, f"cannot stat disk {disk.path}") from None
    return DiskStatus(
        uuid=disk.uuid,
        path=disk.path,
        capacity=st.f_blocks * st.f_frsize,
        available=st.f_bavail * st.f_frsize,
        scheduled=sum(replicas.values()),
        replicas={name: disk.replica_dir(name) for name in sorted(replicas)},
    )


def find_disk(disks: list[Disk], key: str) -> Disk:
    """The disk whose UUID or path is ``key`` (the first disk for "")."""
    if not disks:
        raise InvalidArgumentError("the node has no disks")
    if not key:
        return disks[0]
    for disk in disks:
        if key in (disk.uuid, disk.path):
            return disk
    raise NotFoundError(f"the node has no disk {key!r}")
