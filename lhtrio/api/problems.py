"""What an API error looks like on the wire, and which status each error of lhtrio gets.

Every error answer is ``{"code", "message", "details"}`` (JSON) with its HTTP status: ``code``
is a CamelCase word a program may test (``InvalidArgument``, ``NotFound``, ``Conflict``...),
``message`` says what happened to what and what to do, ``details`` is an object (the field a
bad body got wrong, the body limit, ...; ``{}`` when there is nothing to add).

Errors are raised as lhtrio's own errors (:mod:`lhtrio.errors`) by the parts the API calls and
converted here, once, at the edge (:func:`problem_of`): bad input 400, unknown objects 404,
conflicts 409 (a stale ``If-Match`` says the object's current ``resourceVersion`` in
``details``), a request the object itself rules out 422, a failing store 503. Sans-I/O: no
quart, no trio.
"""

from __future__ import annotations

from typing import Final

import attrs

from lhtrio.errors import (
    AlreadyExistsError,
    ConflictError,
    FailedPreconditionError,
    InvalidArgumentError,
    LhtrioError,
    NotFoundError,
    RpcError,
    ShuttingDownError,
    StaleVersionError,
    StorageError,
    UnavailableError,
)

__all__ = ["FieldError", "HttpError", "Problem", "problem_of"]

#: (error class, HTTP status, code), most specific first.
_STATUSES: Final[tuple[tuple[type[LhtrioError], int, str], ...]] = (
    (InvalidArgumentError, 400, "InvalidArgument"),
    (NotFoundError, 404, "NotFound"),
    (AlreadyExistsError, 409, "AlreadyExists"),
    (ConflictError, 409, "Conflict"),
    (FailedPreconditionError, 422, "FailedPrecondition"),
    (StorageError, 503, "StoreUnavailable"),
    (ShuttingDownError, 503, "ShuttingDown"),
    (UnavailableError, 503, "Unavailable"),
    (RpcError, 503, "Unavailable"),
)


@attrs.frozen(kw_only=True)
class Problem:
    """One error answer: its HTTP status and its JSON body."""

    status: int
    code: str
    message: str
    details: dict[str, object] = attrs.field(factory=dict)

    def body(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "details": self.details}


class FieldError(InvalidArgumentError):
    """A request body whose ``field`` is wrong (the field is named in the answer's details)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class HttpError(Exception):
    """An answer decided by the API itself (401, 413...), not by the parts underneath."""

    def __init__(self, problem: Problem, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(problem.message)
        self.problem = problem
        self.headers = headers or {}


def problem_of(exc: LhtrioError) -> Problem:
    """The answer for an lhtrio error raised while serving a request (500 for the unexpected)."""
    details: dict[str, object] = {}
    if isinstance(exc, FieldError):
        details["field"] = exc.field
    if isinstance(exc, StaleVersionError):
        details["resourceVersion"] = exc.current
    for cls, status, code in _STATUSES:
        if isinstance(exc, cls):
            return Problem(status=status, code=code, message=exc.message, details=details)
    return Problem(status=500, code="Internal", message=exc.message, details=details)
