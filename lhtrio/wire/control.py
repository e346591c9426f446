"""Control calls (``Call``/``Result``): their tables, one converter, one dispatcher.

Each service (replica, engine, node) declares its calls once, in a :class:`CallTable` of
:class:`CallSpec` values (name, argument type, result type) in :mod:`lhtrio.wire.calls`. The
server side binds a handler to every spec of its table in a :class:`Dispatcher`, which refuses
what is not a control call (``UNKNOWN_CALL``), structures the arguments strictly and
unstructures the handler's typed result; the client side (:mod:`lhtrio.clients`) unstructures
typed arguments and structures the result back into the same type. Nobody reads a result by
string key and nobody passes ``**kwargs``: a call's shape is written down in one place.

Every component that serves control calls (replica, engine, later the node) declares the
arguments of each call as a frozen attrs class and structures ``Call.args`` with
:func:`structure_args`: unknown keys, missing required keys and wrongly typed values (no
coercion: ``"5"`` is not an int) become one :class:`~lhtrio.errors.InvalidArgumentError` that names
the call and every problem. Results are unstructured with :data:`converter` (datetimes as RFC 3339
UTC by :func:`lhtrio.models.times.format_time`, four-digit years, so a peer can always parse them
back; enums by value), so they travel as plain msgpack values.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

import attrs
import cattrs

from lhtrio.errors import InvalidArgumentError, RemoteProtocolError, UnknownCallError
from lhtrio.models.times import format_time, parse_time
from lhtrio.wire.messages import Call, Data, Reply, Request, Result

__all__ = [
    "CallSpec",
    "CallTable",
    "Dispatcher",
    "NoArgs",
    "NameArgs",
    "SizeArgs",
    "converter",
    "omit_when_default",
    "strict_hook",
    "structure_args",
    "structure_result",
]

T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")


# Argument shapes that several components' calls share.


@attrs.frozen(kw_only=True)
class NoArgs:
    pass


@attrs.frozen(kw_only=True)
class NameArgs:
    name: str


@attrs.frozen(kw_only=True)
class SizeArgs:
    size: int


def strict_hook(kind: type[T]) -> Callable[[Any, Any], T]:
    """A cattrs structure hook that accepts exactly ``kind`` (no coercion, bool is not int)."""

    def hook(value: Any, _: Any) -> T:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return hook


#: The converter of control-call arguments and results.
converter = cattrs.Converter(forbid_extra_keys=True)
for _kind in (int, str, bool, bytes):
    converter.register_structure_hook(_kind, strict_hook(_kind))


def _number(value: Any, _: Any) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


converter.register_structure_hook(float, _number)


def _nil(value: Any, _: Any) -> None:
    if value is not None:
        raise TypeError(f"expected nil, got {type(value).__name__}")


converter.register_structure_hook(type(None), _nil)


def _is_list(kind: Any) -> bool:
    return getattr(kind, "__origin__", None) is list


def _list_hook(kind: Any) -> Callable[[Any, Any], Any]:
    (item,) = getattr(kind, "__args__", (Any,))

    def hook(value: Any, _: Any) -> list[Any]:
        if type(value) not in (list, tuple):  # a string is not a list of characters
            raise TypeError(f"expected an array, got {type(value).__name__}")
        return [converter.structure(v, item) for v in value]

    return hook


converter.register_structure_hook_factory(_is_list, _list_hook)
converter.register_unstructure_hook(dt.datetime, format_time)
converter.register_structure_hook(dt.datetime, lambda value, _: parse_time(value))
converter.register_unstructure_hook_func(
    lambda t: isinstance(t, type) and issubclass(t, enum.Enum), lambda e: e.value
)


def structure_args(cls: type[T], call: Call) -> T:
    """``call.args`` as a ``cls``; InvalidArgumentError naming every problem otherwise."""
    try:
        return converter.structure(call.args, cls)
    except Exception as exc:
        detail = (
            "; ".join(cattrs.transform_error(exc))
            if isinstance(exc, cattrs.BaseValidationError)
            else str(exc)
        )
        raise InvalidArgumentError(f"bad arguments for call {call.name!r}: {detail}") from None


def structure_result(kind: Any, value: Any, name: str) -> Any:
    """A call's result value as ``kind``; a peer's malformed result is a RemoteProtocolError."""
    try:
        return converter.structure(value, kind)
    except Exception as exc:
        detail = (
            "; ".join(cattrs.transform_error(exc))
            if isinstance(exc, cattrs.BaseValidationError)
            else str(exc)
        )
        raise RemoteProtocolError(f"malformed result of call {name!r}: {detail}") from None


def omit_when_default(cls: type[Any], *fields: str) -> None:
    """Leave ``fields`` of ``cls`` out of its wire map while they hold their default.

    For records whose optional fields exist for one kind only (an instance's ``directory`` is
    a replica's, its ``replicas`` an engine's): the map carries only what applies.
    """
    overrides: dict[str, Any] = {name: cattrs.gen.override(omit_if_default=True) for name in fields}
    converter.register_unstructure_hook(
        cls, cattrs.gen.make_dict_unstructure_fn(cls, converter, **overrides)
    )


# --- call tables and dispatch --------------------------------------------------------------------


@attrs.frozen
class CallSpec(Generic[A, R]):
    """One control call: its name, the type of its arguments and of its result.

    ``result`` is any type the converter structures (a record, ``list[Record]``, ``None``);
    :class:`~lhtrio.wire.Data` for the one call whose reply is raw bytes.
    """

    service: str
    name: str
    args: type[A]
    result: Any


class CallTable:
    """The control calls of one service, in declaration order."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._specs: dict[str, CallSpec[Any, Any]] = {}

    def call(self, name: str, args: type[A], result: type[R]) -> CallSpec[A, R]:
        if name in self._specs:
            raise ValueError(f"{self.service} declares call {name!r} twice")
        spec: CallSpec[A, R] = CallSpec(self.service, name, args, result)
        self._specs[name] = spec
        return spec

    def optional(self, name: str, args: type[A], result: type[R]) -> CallSpec[A, R | None]:
        """A call whose result is a ``result`` or nil."""
        return self.call(name, args, result | None)  # type: ignore[arg-type]

    def get(self, name: str) -> CallSpec[Any, Any] | None:
        return self._specs.get(name)

    def __iter__(self) -> Iterator[CallSpec[Any, Any]]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


Handler = Callable[[Any], Awaitable[Any]]


class Dispatcher:
    """A service's handler for :func:`lhtrio.net.serve_rpc`: one bound handler per call.

    ``bind`` each spec of ``table`` to an ``async def handler(args) -> result``; :meth:`check`
    (called once the service has bound its calls) refuses a table with a call left unbound.
    A request is refused before its handler runs if it is not a control call or names no call
    of the table (``UNKNOWN_CALL``), or if its arguments do not structure (``INVALID_ARGUMENT``).
    """

    def __init__(self, table: CallTable, *, what: str = "") -> None:
        self.table = table
        self.what = what or table.service
        self._handlers: dict[str, tuple[CallSpec[Any, Any], Handler]] = {}

    def bind(self, spec: CallSpec[A, R], handler: Callable[[A], Awaitable[R]]) -> None:
        if self.table.get(spec.name) is not spec:
            raise ValueError(f"call {spec.name!r} is not in the {self.table.service} table")
        self._handlers[spec.name] = (spec, handler)

    def check(self) -> None:
        unbound = [spec.name for spec in self.table if spec.name not in self._handlers]
        if unbound:
            raise ValueError(f"{self.table.service}: no handler for {', '.join(unbound)}")

    def __call__(self, request: Request) -> Awaitable[Reply]:
        if not isinstance(request, Call):
            raise UnknownCallError(
                f"the {self.what} control endpoint takes control calls, "
                f"not {type(request).__name__}"
            )
        found = self._handlers.get(request.name)
        if found is None:
            raise UnknownCallError(f"the {self.what} has no control call {request.name!r}")
        return self._run(*found, request)

    async def _run(self, spec: CallSpec[Any, Any], handler: Handler, call: Call) -> Reply:
        result = await handler(structure_args(spec.args, call))
        if spec.result is Data:
            assert isinstance(result, Data)
            return result
        return Result(converter.unstructure(result, spec.result))
