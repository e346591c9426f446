"""Codec benchmark: the hand-tuned data-message path against the generic cattrs path.

For each data message, encoding and decoding one frame (32 frames decoded per batch, as a server
sees them) through :func:`lhtrio.wire.encode` / :meth:`Decoder.drain` (tuned) and through
``encode_generic`` / a decoder in generic mode (every message through the cattrs converter).
The result decides which path the codec uses (see :mod:`lhtrio.wire.codec`).

Run: ``nox -s bench -- wire``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from lhtrio.bench._util import record, table
from lhtrio.wire import Data, Decoder, Done, Message, Read, Write, encode, encode_frame
from lhtrio.wire.codec import encode_generic

MESSAGES: list[tuple[str, Message]] = [
    ("Write 4 KiB", Write(1 << 30, bytes(4096))),
    ("Read", Read(1 << 30, 4096)),
    ("Data 4 KiB", Data(bytes(4096))),
    ("Done", Done(4096)),
]


def _per_op(run: Callable[[], object], ops_per_run: int, seconds: float) -> float:
    runs = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        run()
        runs += 1
    return elapsed / (runs * ops_per_run) * 1e6


def _decode_batch(frames: bytes, *, generic: bool) -> Callable[[], None]:
    decoder = Decoder()
    decoder.generic = generic

    def run() -> None:
        decoder.receive_data(frames)
        assert len(decoder.drain()) == 32

    return run


def main(*, quick: bool = False) -> None:
    seconds = 0.2 if quick else 1.0
    rows: list[list[object]] = []
    for name, message in MESSAGES:
        frames = b"".join(encode_frame(seq, message) for seq in range(1, 33))
        enc_tuned = _per_op(functools.partial(encode, 7, message), 1, seconds)
        enc_generic = _per_op(functools.partial(encode_generic, 7, message), 1, seconds)
        dec_tuned = _per_op(_decode_batch(frames, generic=False), 32, seconds)
        dec_generic = _per_op(_decode_batch(frames, generic=True), 32, seconds)
        rows.append(
            [
                name,
                enc_tuned,
                enc_generic,
                enc_generic / enc_tuned,
                dec_tuned,
                dec_generic,
                dec_generic / dec_tuned,
            ]
        )
    text = table(
        "Codec: µs per message, hand-tuned vs generic cattrs path (decode includes copying "
        "the frames into the decoder)",
        [
            "message",
            "encode tuned",
            "encode cattrs",
            "ratio",
            "decode tuned",
            "decode cattrs",
            "ratio",
        ],
        rows,
    )
    print(text)
    if not quick:
        record("wire", text)
