"""Hypothesis strategies for protocol v1 messages."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

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
)
from lhtrio.wire.codec import DEFAULT_MAX_DATA

offsets = st.integers(0, 2**63 - 1)
lengths = st.integers(0, DEFAULT_MAX_DATA)
seqs = st.integers(0, 2**64 - 1)
payloads = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=64 << 10, max_size=(64 << 10) + 3),  # the direct-receive path
)
names = st.text(max_size=20)

msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Hello,
        volume=names,
        instance=names,
        client=names,
        versions=st.lists(st.integers(0, 2**16), max_size=3).map(tuple),
        features=st.lists(names, max_size=3).map(tuple),
    ),
    st.just(Ping()),
    st.builds(Read, offset=offsets, length=lengths),
    st.builds(Write, offset=offsets, data=payloads, fua=st.booleans()),
    st.builds(Unmap, offset=offsets, length=lengths),
    st.just(Flush()),
    st.builds(
        Call, name=names, args=st.dictionaries(st.text(max_size=8), msgpack_values, max_size=4)
    ),
    st.builds(
        HelloOk,
        version=st.integers(0, 2**16),
        volume=names,
        instance=names,
        features=st.lists(names, max_size=3).map(tuple),
    ),
    st.just(Pong()),
    st.builds(Data, data=payloads),
    st.builds(Done, count=st.integers(0, 2**63 - 1)),
    st.builds(Result, value=msgpack_values),
    st.builds(Error, code=st.integers(0, 2**16), message=names),
    st.builds(Goodbye, reason=names),
)
