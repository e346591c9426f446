"""Helpers shared by the replica store tests (imported as a plain module)."""

from __future__ import annotations

import os
from pathlib import Path

from lhtrio.replica.names import FileKind, classify
from lhtrio.replica.store import Replica

VOLUME = "vol"
INSTANCE = "inst"
BLOCK = 4096


def tree(path: str | Path) -> dict[str, bytes]:
    """Every file of a directory with its full content (for "nothing changed" checks)."""
    result = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            result[name + "/"] = b""
        elif os.path.islink(full):
            result[name + "@"] = os.readlink(full).encode()
        else:
            with open(full, "rb") as f:
                result[name] = f.read()
    return result


def data_blocks(path: str | Path) -> set[int]:
    """The 4 KiB blocks of a file that SEEK_DATA reports as allocated."""
    blocks: set[int] = set()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            blocks.update(range(data // BLOCK, (hole + BLOCK - 1) // BLOCK))
            pos = hole
    finally:
        os.close(fd)
    return blocks


def fill(tag: int, length: int) -> bytes:
    """Recognisable, position-dependent content for write number ``tag``."""
    start = tag % 251
    base = bytes(range(1, 252)) * (length // 251 + 2)
    return base[start : start + length]


def open_replica(path: str | Path) -> Replica:
    return Replica.open(str(path), volume=VOLUME, instance=INSTANCE)


def assert_clean(rdir: Path, r: Replica) -> None:
    """No temporary file left, and every disk file the replica lists exists with its .meta."""
    info = r.info()
    for name in os.listdir(rdir):
        parsed = classify(name)
        assert parsed is not None, name
        assert parsed.kind is not FileKind.TMP, name
        if parsed.disk:
            assert parsed.disk in info.disks, name
            assert (rdir / parsed.disk).exists(), name
            assert (rdir / (parsed.disk + ".meta")).exists(), name
