"""What every route shares: JSON answers, names checked from the path, the request's body."""

from __future__ import annotations

import json
from collections.abc import Callable

from quart import Response, request

from lhtrio.api.bodies import parse_json
from lhtrio.api.problems import FieldError, Problem
from lhtrio.errors import InvalidArgumentError

__all__ = ["checked_name", "collection", "json_response", "problem_response", "read_body"]


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return json_response(problem.body(), problem.status, headers)


def collection(documents: list[dict[str, object]]) -> Response:
    """``{"data": [...]}``."""
    return json_response({"data": documents})


def checked_name(check: Callable[..., object], name: str, **kw: str) -> str:
    """``name`` from the URL, checked as the objects' names are (a hostile one is 400)."""
    try:
        check(name, **kw)
    except InvalidArgumentError as exc:
        raise FieldError("name", exc.message) from None
    return name


async def read_body(*, empty_ok: bool = False) -> dict[str, object]:
    """The request's body: one JSON object (``{}`` for none when ``empty_ok``)."""
    return parse_json(
        await request.get_data(cache=True, as_text=False, parse_form_data=False), empty_ok=empty_ok
    )
