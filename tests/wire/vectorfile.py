"""Read and write ``protocol/vectors/*.json``: messages as JSON, frames as hex.

A message is written as ``{"type": "Write", "offset": 4096, "fua": false, "data": {"hex": "..."}}``:
field names are the spec's, byte strings are ``{"hex": ...}``, tuples are JSON arrays. Run this
module to regenerate ``protocol/vectors/v1.json`` (only when the spec deliberately changes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import attrs

from lhtrio.wire import (
    Call,
    Data,
    Done,
    Error,
    Flush,
    Goodbye,
    Hello,
    HelloOk,
    Message,
    Ping,
    Pong,
    Read,
    Result,
    Unmap,
    Write,
    encode_frame,
)
from lhtrio.wire.messages import MESSAGE_TYPES, Zero, ZeroMode

VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors"

_BY_NAME = {cls.__name__: cls for cls in MESSAGE_TYPES.values()}


def to_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"hex"}:
            return bytes.fromhex(value["hex"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def message_to_json(message: Message) -> dict[str, Any]:
    fields = {f.name: to_json(getattr(message, f.name)) for f in attrs.fields(type(message))}  # type: ignore[arg-type]
    return {"type": type(message).__name__, **fields}


def message_from_json(obj: dict[str, Any]) -> Message:
    cls = _BY_NAME[obj["type"]]
    kwargs = {}
    for f in attrs.fields(cls):  # type: ignore[arg-type]
        if f.name in obj:
            value = from_json(obj[f.name])
            kwargs[f.name] = tuple(value) if isinstance(f.default, tuple) else value
    return cls(**kwargs)


def examples() -> list[tuple[str, int, Message]]:
    return [
        ("hello", 1, Hello("vol-a", "vol-a-r-1a2b", "engine-vol-a", (1,), ("batch-ack",))),
        ("hello-any-instance", 1, Hello("db-1")),
        ("hello-ok", 1, HelloOk(1, "vol-a", "vol-a-r-1a2b", ())),
        (
            "hello-ok-local",
            1,
            HelloOk(1, "vol-a", "vol-a-r-1a2b", ("local",), "unix:@lhtrio-0123456789abcdef"),
        ),
        ("hello-ok-replica", 1, HelloOk(1, "vol-a", "vol-a-r-1a2b", (), "", "replica")),
        ("ping", 2, Ping()),
        ("pong", 2, Pong()),
        ("read-4k", 3, Read(4096, 4096)),
        ("read-large-offset", 4294967296, Read(10 * 2**40, 1 << 20)),
        ("write-16b", 7, Write(512, bytes(range(16)))),
        ("write-fua", 8, Write(0, b"\xab" * 8, True)),
        ("write-empty", 9, Write(0, b"")),
        ("unmap", 10, Unmap(8192, 65536)),
        ("flush", 11, Flush()),
        ("call-info", 12, Call("info", {})),
        ("call-snapshot", 13, Call("snapshot", {"name": "s1", "labels": {"k": "v"}, "user": True})),
        ("data", 3, Data(b"\x00\x01\x02\x03")),
        ("done", 7, Done(4096)),
        ("done-zero", 11, Done(0)),
        ("result-map", 12, Result({"size": 1 << 30, "chain": ["volume-head-001.img"]})),
        ("result-nil", 13, Result(None)),
        ("error-out-of-range", 3, Error(9, "read of 4096 bytes at 1073741824 is past the end")),
        ("error-connection", 0, Error(2, "bad frame magic 0x0000 (expected 0x484c)")),
        ("goodbye", 0, Goodbye("server shutting down")),
        ("zero", 14, Zero(4096, 1 << 20)),
        ("zero-fast", 15, Zero(0, 32 << 20, ZeroMode.FAST)),
        ("zero-allocate", 16, Zero(8192, 4096, ZeroMode.ALLOCATE)),
        (
            "error-not-supported",
            15,
            Error(17, "cannot zero 33554432 bytes at offset 0 fast: older snapshots hold data"),
        ),
    ]


# Byte strings every v1 decoder must reject, and the error class lhtrio raises for each.
MALFORMED = [
    ("bad-magic", "4c4900000300000000000000920207", "RemoteProtocolError"),
    ("flags-set", "4c4801000300000000000000920207", "RemoteProtocolError"),
    ("empty-head", "4c4800000000000000000000", "RemoteProtocolError"),
    ("head-over-cap", "4c480000010010000000000000", "FrameTooLargeError"),
    ("data-over-cap", "4c48000003000000010000020092 0207".replace(" ", ""), "FrameTooLargeError"),
    ("head-not-array", "4c480000010000000000000007", "RemoteProtocolError"),
    ("head-too-short", "4c48000002000000000000009102", "RemoteProtocolError"),
    ("seq-negative", "4c48000003000000000000009202ff", "RemoteProtocolError"),
    ("payload-on-ping", "4c480000030000000100000092020700", "RemoteProtocolError"),
    (
        "read-offset-string",
        "4c48000006000000000000009403 07a1 61 04".replace(" ", ""),
        "RemoteProtocolError",
    ),
    ("read-length-over-cap", "4c480000090000000000000094030700ce02000001", "RemoteProtocolError"),
    ("bad-msgpack", "4c4800000200000000000000c1c1", "RemoteProtocolError"),
    ("zero-length-over-cap", "4c480000090000000000000094080700ce02000001", "RemoteProtocolError"),
    ("zero-without-length", "4c4800000600000000000000930807cd1000", "RemoteProtocolError"),
    ("zero-mode-negative", "4c4800000a00000000000000950807cd1000cd1000ff", "RemoteProtocolError"),
    ("truncated-head", "4c480000050000000000000094", "NEED_DATA"),
]


def build() -> dict[str, Any]:
    return {
        "protocol": "lhtrio wire protocol",
        "version": 1,
        "messages": [
            {
                "name": name,
                "seq": seq,
                "message": message_to_json(msg),
                "hex": encode_frame(seq, msg).hex(),
            }
            for name, seq, msg in examples()
        ],
        "malformed": [{"name": n, "hex": h, "error": e} for n, h, e in MALFORMED],
    }


if __name__ == "__main__":
    json.dump(build(), sys.stdout, indent=2)
    sys.stdout.write("\n")
