"""Who may call the API, and the access log of what was called.

**The token** (:func:`check_token`): ``Authorization: Bearer TOKEN`` (the scheme in any case),
compared in constant time. Every call needs it — reads too unless the node runs with
``--api-read-anonymous`` — but for the few public paths (:data:`PUBLIC`: the OpenAPI document, so
a client can learn the API before it has a token, and the health probes, as Kubernetes' probes
carry no token). They are the operations the surface declares ``public``
(:data:`lhtrio.api.surface.OPERATIONS`): one list, for the document's ``security: []`` and for
this check.

**The access log** (:class:`AccessLog`, ASGI middleware around the app): one line per request on
the logger ``lhtrio.api.access`` at INFO — the client's address, the method, the path, the query
with the values of parameters the API does not define hidden (a token put in a URL by mistake
never reaches a log), the status and the time taken::

    127.0.0.1:51234 "POST /v1/volumes/db-1?action=attach" 200 4.1 ms

Headers are never logged, nor bodies: the token appears nowhere. A request cancelled before it
was answered (the client went away, the server stopped) logs status ``-``.
"""

from __future__ import annotations

import hmac
import logging
import time
import urllib.parse
from typing import Final

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from quart import request

from lhtrio.api.problems import HttpError, Problem
from lhtrio.api.surface import OPERATIONS, parameters

__all__ = ["PUBLIC", "QUERY_PARAMETERS", "AccessLog", "check_token"]

access_logger = logging.getLogger("lhtrio.api.access")

#: Paths anyone may read, token or not: the public operations'.
PUBLIC: Final = frozenset(o.path for o in OPERATIONS if o.public)

#: The query parameters the API defines: their values are logged; any other's is hidden.
QUERY_PARAMETERS: Final = frozenset(
    {"action"} | {p.name for o in OPERATIONS for p in parameters(o) if p.where == "query"}
)


def check_token(token: str) -> None:
    """The request's bearer token: HttpError 401 unless it is ``token``."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # compare_digest takes as long for any wrong token of a given length: no timing oracle.
    matches = hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8")
    )
    if scheme.lower() != "bearer" or not matches:
        raise HttpError(
            Problem(
                status=401,
                code="Unauthorized",
                message=(
                    "the bearer token is not the API token"
                    if header and scheme.lower() == "bearer"
                    else f"{request.method} {request.path} needs 'Authorization: Bearer TOKEN' "
                    "with the node's API token (DATA_DIR/api-token, or --api-token-file)"
                ),
            ),
            headers={"WWW-Authenticate": 'Bearer realm="lhtrio"'},
        )


def _query(raw: bytes) -> str:
    pairs = urllib.parse.parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    shown = [(k, v if k in QUERY_PARAMETERS else "(hidden)") for k, v in pairs]
    return urllib.parse.urlencode(shown, safe="(),=!")


class AccessLog:
    """``app`` (an ASGI app), logging one line per HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: list[int] = []

        async def sending(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            where = f"{client[0]}:{client[1]}" if client else "-"
            query = _query(scope.get("query_string", b""))
            target = scope["path"] + (f"?{query}" if query else "")
            access_logger.info(
                '%s "%s %s" %s %.1f ms',
                where,
                scope["method"],
                target,
                status[0] if status else "-",
                (time.perf_counter() - start) * 1000,
            )
