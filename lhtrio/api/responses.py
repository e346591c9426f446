"""What every route shares: JSON answers, names checked from the path, the request's body, its
``If-Match`` version and its filters."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping

from quart import Response, request

from lhtrio.api.bodies import parse_json
from lhtrio.api.problems import FieldError, Problem
from lhtrio.api.query import IF_MATCH, Keep, parse_if_match
from lhtrio.errors import InvalidArgumentError
from lhtrio.manager.store.codec import to_document
from lhtrio.models.cluster import ClusterObject

__all__ = [
    "accepted",
    "action_of",
    "checked_name",
    "collection",
    "json_response",
    "listed",
    "problem_response",
    "read_body",
    "version",
]


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


def action_of(known: Mapping[str, object], path: str) -> str:
    """The request's ``?action=``, one of ``known`` (FieldError naming them otherwise)."""
    action = request.args.get("action")
    if action is None or action not in known:
        raise FieldError(
            "action",
            f"POST {path} needs ?action= one of {', '.join(known)}"
            + (f", not {action!r}" if action is not None else ""),
        )
    return action


def version() -> int | None:
    """The ``resourceVersion`` the request's ``If-Match`` asks for (None: no condition)."""
    return parse_if_match(request.headers.get(IF_MATCH))


def listed(objects: Iterable[ClusterObject], keep: Keep | None) -> Response:
    """``{"data": [...]}`` of the ``objects`` that ``keep`` keeps (all for None)."""
    return collection([to_document(o) for o in objects if keep is None or keep(o)])


def accepted(obj: ClusterObject | None) -> Response:
    """202 with the object whose deletion was asked (``{}`` if it went at once)."""
    return json_response({} if obj is None else to_document(obj), 202)
