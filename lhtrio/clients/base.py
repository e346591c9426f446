"""One typed control call over an RPC connection."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from lhtrio.errors import RemoteProtocolError
from lhtrio.net import RpcClient
from lhtrio.wire import Call, Data, Result
from lhtrio.wire.control import CallSpec, converter, structure_result

__all__ = ["invoke"]

A = TypeVar("A")
R = TypeVar("R")


async def invoke(rpc: RpcClient, spec: CallSpec[A, R], args: A) -> R:
    """Call ``spec`` with ``args``; its result as the declared type.

    The peer's errors are raised as their lhtrio exceptions (by the RPC client); a result that
    does not have the declared shape is a :class:`~lhtrio.errors.RemoteProtocolError`.
    """
    values: dict[str, Any] = converter.unstructure(args, spec.args)
    reply = await rpc.call(Call(name=spec.name, args=values))
    if spec.result is Data:
        if not isinstance(reply, Data):
            raise RemoteProtocolError(f"{rpc.peer} answered call {spec.name!r} with {reply!r}")
        return cast(R, reply)
    if not isinstance(reply, Result):
        raise RemoteProtocolError(f"{rpc.peer} answered call {spec.name!r} with {reply!r}")
    return cast(R, structure_result(spec.result, reply.value, spec.name))
