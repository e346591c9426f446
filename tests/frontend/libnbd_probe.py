"""Drive one NBD server with libnbd in strict mode and print what it observed, as JSON.

Run by ``tests/engine/test_nbd_libnbd.py`` against lhtrio and qemu-nbd in turn: ``python
libnbd_probe.py URI`` with Debian's ``python3-libnbd`` on ``PYTHONPATH``. The server must export
a 64 MiB disk that reads as zeros. Every step records an outcome ("ok", an errno name, or what
was read back), so two servers can be compared step by step.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any

import nbd  # type: ignore[import-not-found]

MiB = 1 << 20
URI = sys.argv[1]


def connect() -> Any:
    h = nbd.NBD()
    h.add_meta_context("base:allocation")
    h.connect_uri(URI)
    # Strict mode: libnbd refuses to send what the server did not advertise, and checks the
    # server's replies (chunks inside the request, no overlap, ...) with or without it.
    assert h.get_strict_mode() & nbd.STRICT_COMMANDS
    return h


def outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except nbd.Error as exc:
        return errno.errorcode.get(exc.errnum or 0, f"error {exc.errnum}: {exc.string}")
    return "ok"


def digest(data: bytes) -> str:
    return "zeros" if not any(data) else hashlib.sha256(data).hexdigest()[:16]


def status(h: Any, offset: int, length: int) -> list[list[int]]:
    """``[length, flags]`` extents of base:allocation over the range, merged (a server may
    answer a request with less than asked: ask again from where it stopped)."""
    out: list[list[int]] = []
    end = offset + length
    got: list[int] = []

    def extents(meta: str, off: int, entries: list[int], err: object) -> int:
        if meta == "base:allocation":
            got.extend(entries)
        return 0

    while offset < end:
        got.clear()
        h.block_status(end - offset, offset, extents)
        for i in range(0, len(got), 2):
            n = min(got[i], end - offset)
            if out and out[-1][1] == got[i + 1]:
                out[-1][0] += n
            else:
                out.append([n, got[i + 1]])
            offset += n
            if offset >= end:
                break
    return out


def chunks(h: Any, offset: int, length: int, flags: int = 0) -> list[list[int]]:
    """``[offset, length, status]`` of every chunk of a structured read (status 1: data,
    2: hole), in the order received."""
    seen: list[list[int]] = []

    def chunk(buf: bytes, off: int, state: int, err: object) -> int:
        seen.append([off, len(buf), state])
        return 0

    h.pread_structured(length, offset, chunk, flags)
    return sorted(seen)


def main() -> None:
    h = connect()
    obs: dict[str, Any] = {}
    obs["flags"] = {
        name: getattr(h, name)()
        for name in (
            "can_zero",
            "can_fast_zero",
            "can_trim",
            "can_cache",
            "can_df",
            "can_multi_conn",
            "can_flush",
            "can_fua",
        )
    }

    # Zero-length requests (strict mode refuses to send them: that check alone is relaxed).
    h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ZERO_SIZE)
    fua = nbd.CMD_FLAG_FUA
    obs["zero-length"] = {
        "read": outcome(lambda: h.pread(0, 4096)),
        "write": outcome(lambda: h.pwrite(b"", 4096)),
        "write+fua": outcome(lambda: h.pwrite(b"", 4096, fua)),
        "trim": outcome(lambda: h.trim(0, 4096)),
        "trim+fua": outcome(lambda: h.trim(0, 4096, fua)),
        "zero": outcome(lambda: h.zero(0, 4096)),
        "zero+fua": outcome(lambda: h.zero(0, 4096, fua)),
        "cache": outcome(lambda: h.cache(0, 4096)),
        "block-status": outcome(lambda: h.block_status(0, 4096, lambda *a: 0)),
    }
    h.set_strict_mode(h.get_strict_mode() | nbd.STRICT_ZERO_SIZE)
    obs["still-serving"] = digest(h.pread(4096, 0))

    # Zeroing and trimming beyond the 32 MiB maximum block size.
    for offset in range(0, 48 * MiB, 4 * MiB):
        h.pwrite(b"\x11" * (4 * MiB), offset)
    obs["zero-40MiB"] = outcome(lambda: h.zero(40 * MiB, 0))
    obs["after-zero-40MiB"] = [digest(h.pread(4 * MiB, o)) for o in range(0, 48 * MiB, 4 * MiB)]
    obs["status-after-zero"] = status(h, 0, 48 * MiB)
    obs["trim-40MiB"] = outcome(lambda: h.trim(40 * MiB, 8 * MiB))

    # FAST_ZERO: over data that nothing older shows through, it succeeds; with NO_HOLE it is
    # up to the server (lhtrio refuses at once: keeping the range allocated needs writes).
    h.pwrite(b"\x33" * MiB, 48 * MiB)
    fast = nbd.CMD_FLAG_FAST_ZERO
    obs["fast-zero"] = outcome(lambda: h.zero(MiB, 48 * MiB, fast))
    obs["after-fast-zero"] = digest(h.pread(MiB, 48 * MiB))
    obs["fast-zero+no-hole"] = outcome(lambda: h.zero(4096, 49 * MiB, fast | nbd.CMD_FLAG_NO_HOLE))
    obs["cache"] = outcome(lambda: h.cache(8 * MiB, 0))
    # (not compared: qemu-nbd zeroes a NO_HOLE range with fallocate(ZERO_RANGE), which its block
    # status then reports as a hole; lhtrio writes zeros there, which it reports as data)
    obs["no-hole-zero"] = outcome(lambda: h.zero(4096, 63 * MiB, nbd.CMD_FLAG_NO_HOLE))
    obs["after-no-hole-zero"] = digest(h.pread(4096, 63 * MiB))

    # Several connections to one export: a FUA write on one is read back on another, and a
    # flush on one covers writes answered on the other.
    h2 = connect()
    h.pwrite(b"\x44" * 4096, 51 * MiB, fua)
    obs["multi-conn-read"] = digest(h2.pread(4096, 51 * MiB)) == digest(b"\x44" * 4096)
    h2.pwrite(b"\x55" * 4096, 51 * MiB + 4096)
    obs["multi-conn-flush"] = outcome(h.flush)
    obs["multi-conn-read-back"] = digest(h.pread(4096, 51 * MiB + 4096)) == digest(b"\x55" * 4096)
    h2.shutdown()

    # Structured reads: zeros come as hole chunks, unless the client asks for one chunk (DF).
    h.pwrite(b"\x22" * 65536, 52 * MiB + 4096)
    obs["read-chunks"] = chunks(h, 52 * MiB, MiB)
    obs["read-chunks-df"] = chunks(h, 52 * MiB, MiB, nbd.CMD_FLAG_DF)
    obs["read-chunks-all-zero"] = chunks(h, 60 * MiB, 256 * 1024)
    obs["status"] = status(h, 48 * MiB, 8 * MiB)
    h.shutdown()
    json.dump(obs, sys.stdout)


if __name__ == "__main__":
    main()
