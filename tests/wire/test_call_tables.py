"""The call tables, the shared dispatcher and the typed client's result checking."""

from __future__ import annotations

import attrs
import pytest

from lhtrio.clients import invoke
from lhtrio.errors import InvalidArgumentError, RemoteProtocolError, UnknownCallError
from lhtrio.models.instance import Instance, InstanceKind, InstanceState
from lhtrio.wire import Call, Ping, Result
from lhtrio.wire.calls import node as node_calls
from lhtrio.wire.control import (
    CallTable,
    Dispatcher,
    NameArgs,
    NoArgs,
    converter,
    structure_result,
)


@attrs.frozen(kw_only=True)
class Echo:
    name: str
    times: int


def _table() -> tuple[CallTable, Dispatcher]:
    table = CallTable("toy")
    echo = table.call("echo", NameArgs, Echo)
    ping = table.call("ping", NoArgs, type(None))
    dispatcher = Dispatcher(table)

    async def on_echo(args: NameArgs) -> Echo:
        return Echo(name=args.name, times=2)

    async def on_ping(_: NoArgs) -> None:
        return None

    dispatcher.bind(echo, on_echo)
    dispatcher.bind(ping, on_ping)
    dispatcher.check()
    return table, dispatcher


async def test_dispatch_structures_arguments_and_unstructures_results() -> None:
    _, dispatcher = _table()
    assert await dispatcher(Call("echo", {"name": "a"})) == Result({"name": "a", "times": 2})
    assert await dispatcher(Call("ping", {})) == Result(None)


@pytest.mark.parametrize(
    "args",
    [{}, {"name": 5}, {"name": "a", "extra": 1}, {"name": ["a"]}],
)
async def test_bad_arguments_are_refused_before_the_handler(args: dict[str, object]) -> None:
    _, dispatcher = _table()
    with pytest.raises(InvalidArgumentError, match="bad arguments for call 'echo'"):
        await dispatcher(Call("echo", args))


def test_unknown_calls_and_other_requests_are_unknown_calls() -> None:
    _, dispatcher = _table()
    with pytest.raises(UnknownCallError, match="the toy has no control call 'nope'"):
        dispatcher(Call("nope", {}))
    with pytest.raises(UnknownCallError, match="takes control calls, not Ping"):
        dispatcher(Ping())


def test_a_table_refuses_a_call_twice_and_a_dispatcher_an_unbound_call() -> None:
    table = CallTable("toy")
    table.call("a", NoArgs, type(None))
    with pytest.raises(ValueError, match="twice"):
        table.call("a", NoArgs, type(None))
    with pytest.raises(ValueError, match="no handler for a"):
        Dispatcher(table).check()
    other = CallTable("other").call("a", NoArgs, type(None))

    async def handler(_: NoArgs) -> None:
        return None

    dispatcher = Dispatcher(table)
    with pytest.raises(ValueError, match="not in the toy table"):
        dispatcher.bind(other, handler)


def test_an_instance_carries_only_its_kinds_fields() -> None:
    replica = Instance(
        name="r1",
        type=InstanceKind.REPLICA,
        volume="v",
        size=4096,
        state=InstanceState.RUNNING,
        directory="/d",
    )
    wire = converter.unstructure(replica)
    assert wire["type"] == "replica"
    assert wire["state"] == "running"
    assert wire["directory"] == "/d"
    assert not {"replicas", "frontend", "health"} & wire.keys()
    assert structure_result(Instance, wire, "instance_get") == replica


@pytest.mark.parametrize(
    "value",
    [None, {"name": "r1"}, {"name": "r1", "type": "vm", "volume": "v", "size": 1, "state": "x"}],
)
def test_a_malformed_result_is_the_peers_protocol_error(value: object) -> None:
    with pytest.raises(RemoteProtocolError, match="malformed result of call 'instance_get'"):
        structure_result(Instance, value, "instance_get")


async def test_invoke_round_trips_through_a_dispatcher() -> None:
    _, dispatcher = _table()
    table = dispatcher.table

    class Loop:
        peer = "loop"

        async def call(self, request: Call) -> object:
            return await dispatcher(request)

    echo = table.get("echo")
    assert echo is not None
    result = await invoke(Loop(), echo, NameArgs(name="x"))  # type: ignore[arg-type]
    assert result == Echo(name="x", times=2)
    assert len(node_calls.CALLS) == 9
