"""Which file system a replica's directory is on, and whether it survives a power loss.

A replica's promise (what a flush acknowledged survives) rests on the file system keeping its
own metadata consistent across a crash. File systems without a journal do not: ext2 frees blocks
and hands them out again before the freeing is on disk, so after a power loss two files can own
the same block. The chaos runs' power losses found exactly that on ext2 (snapshot files gone,
indirect blocks holding another file's text) and nothing on ext4 (docs/reliability.md). Longhorn
supports ext4 and XFS for its data path; so does this.

The replica still starts on such a file system (a test bed, a scratch volume): it says so, once,
at start. The type comes from ``/proc/self/mountinfo`` (the mount whose point is the longest
prefix of the directory's real path; the last such mount hides the others).
"""

from __future__ import annotations

import os
import re

__all__ = ["NO_JOURNAL", "file_system_type", "mount_type", "power_loss_warning"]

_ESCAPE = re.compile(r"\\([0-7]{3})")

NO_JOURNAL = frozenset({"ext2", "vfat", "msdos", "exfat", "minix"})
"""On-disk file systems with no journal or log: their metadata may not survive a power loss."""


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_type(mountinfo: str, path: str) -> str | None:
    """The type of the file system ``path`` (an absolute, resolved path) is on, from the text of
    a ``mountinfo`` file; None if no line covers it."""
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        try:
            point = _unescape(fields[4])
            fstype = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue  # not a mount line
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return None if best is None else best[1]


def file_system_type(path: str) -> str | None:
    """The type of the file system the directory ``path`` is on (None where /proc cannot say)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError:
        return None
    return mount_type(text, os.path.realpath(path))


def power_loss_warning(path: str) -> str | None:
    """A sentence for the operator if ``path`` is on a file system without a journal."""
    fstype = file_system_type(path)
    if fstype not in NO_JOURNAL:
        return None
    return (
        f"replica directory {path} is on {fstype}, a file system without a journal: after a "
        f"power loss its files can lose or share blocks, and flushed writes can be lost; put "
        f"replicas on ext4 or xfs"
    )
