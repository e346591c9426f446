"""Golden vectors in protocol/vectors/: every message encodes to exactly its bytes and back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lhtrio import errors
from lhtrio.wire import NEED_DATA, Decoder, encode_frame

from .vectorfile import VECTORS, build, message_from_json

SPEC = json.loads((VECTORS / "v1.json").read_text())


def test_vector_file_is_current() -> None:
    # The file is the spec: the examples in vectorfile.py must still produce it exactly.
    assert build() == SPEC


@pytest.mark.parametrize("vector", SPEC["messages"], ids=lambda v: v["name"])
def test_encode_matches_vector(vector: dict[str, Any]) -> None:
    message = message_from_json(vector["message"])
    assert encode_frame(vector["seq"], message).hex() == vector["hex"]


@pytest.mark.parametrize("vector", SPEC["messages"], ids=lambda v: v["name"])
def test_decode_matches_vector(vector: dict[str, Any]) -> None:
    decoder = Decoder()
    decoder.receive_data(bytes.fromhex(vector["hex"]))
    assert decoder.next_message() == (vector["seq"], message_from_json(vector["message"]))
    assert decoder.next_message() is NEED_DATA


@pytest.mark.parametrize("vector", SPEC["malformed"], ids=lambda v: v["name"])
def test_malformed_vectors_are_rejected(vector: dict[str, Any]) -> None:
    decoder = Decoder()
    decoder.receive_data(bytes.fromhex(vector["hex"]))
    if vector["error"] == "NEED_DATA":
        assert decoder.next_message() is NEED_DATA
        return
    with pytest.raises(getattr(errors, vector["error"])):
        decoder.next_message()
