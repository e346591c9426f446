"""The admin API's routes: a quart-trio app over :class:`~lhtrio.manager.objects.Objects`.

Under ``/v1`` (``docs/api.md``, and the OpenAPI document the app serves at
``/v1/openapi.json``, :mod:`lhtrio.api.openapi`): volumes and their actions
(:mod:`.volume_routes`), replicas, engines and attachment tickets (:mod:`.member_routes`), nodes
and their disks (:mod:`.node_routes`), settings (:mod:`.setting_routes`); watch streams on every
collection (:mod:`lhtrio.api.watch`); events, and beside ``/v1`` the health probes and metrics
(:mod:`lhtrio.api.observe`). Answers are the store documents of the objects
(:func:`~lhtrio.manager.store.codec.to_document`), collections ``{"data": [...]}``; errors
``{"code", "message", "details"}`` (:mod:`lhtrio.api.problems`).

Every write goes through ``Objects`` (validated before it is stored) after the request was
checked here (:mod:`lhtrio.api.bodies`), so bad input changes nothing. Changes to an existing
object are read-modify-write (:meth:`Objects.change`): a reconciler writing the volume's status
at the same moment never loses its change, nor the API its own; with ``If-Match`` they are made
on condition of the version the caller read (:mod:`lhtrio.manager.versions`).

Every call needs ``Authorization: Bearer TOKEN`` (:mod:`lhtrio.api.access`), compared in
constant time; with ``read_anonymous`` reads (GET, HEAD) need none. The OpenAPI document and
the health probes are public (:data:`lhtrio.api.access.PUBLIC`). Bodies are capped at
:data:`MAX_BODY` bytes (413 beyond).
"""

from __future__ import annotations

import logging
from typing import Final

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from lhtrio.api.access import PUBLIC, check_token
from lhtrio.api.listing import Rendered
from lhtrio.api.member_routes import add_member_routes
from lhtrio.api.node_routes import add_node_routes
from lhtrio.api.observe import NodeFacts, add_observe_routes
from lhtrio.api.openapi import add_openapi_route
from lhtrio.api.problems import HttpError, Problem, problem_of
from lhtrio.api.responses import problem_response
from lhtrio.api.setting_routes import add_setting_routes
from lhtrio.api.volume_routes import add_volume_routes
from lhtrio.api.watch import WatchHub, add_watch_routes
from lhtrio.errors import InvalidArgumentError, LhtrioError
from lhtrio.manager.objects import Objects

__all__ = ["MAX_BODY", "make_app"]

logger = logging.getLogger(__name__)

#: The largest request body read (bytes); a larger one is answered 413.
MAX_BODY: Final = 1 << 20

_READS: Final = frozenset({"GET", "HEAD"})


def make_app(
    objects: Objects,
    *,
    token: str,
    read_anonymous: bool = False,
    watches: WatchHub | None = None,
    node: NodeFacts | None = None,
) -> QuartTrio:
    """The app serving ``objects``; calls need ``token`` (reads too, unless ``read_anonymous``).
    ``watches`` feeds the watch streams (None: they are refused); ``node``: the node this API
    runs in (readiness, its engines' metrics)."""
    if not token:
        raise InvalidArgumentError("the API token is empty: an empty token would let anyone in")
    app = QuartTrio(__name__, static_folder=None)  # every route is in the OpenAPI document
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

    @app.before_request
    async def receive_then_authenticate() -> None:
        # The whole body is received before any answer (413 beyond MAX_BODY): hypercorn does not
        # carry on a keep-alive connection whose last request was answered before its body
        # arrived (the next request there is never answered), and a refusal must not depend
        # on how fast the body came. Reads have no body: this returns at once.
        await request.get_data(cache=True, as_text=False, parse_form_data=False)
        public = request.path in PUBLIC or (read_anonymous and request.method in _READS)
        if not public:
            check_token(token)

    @app.errorhandler(HttpError)
    async def http_error(exc: HttpError) -> Response:
        return problem_response(exc.problem, exc.headers)

    @app.errorhandler(LhtrioError)
    async def lhtrio_error(exc: LhtrioError) -> Response:
        problem = problem_of(exc)
        if problem.status >= 500:
            logger.warning("%s %s: %s", request.method, request.path, exc)
        return problem_response(problem)

    @app.errorhandler(HTTPException)
    async def http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        details: dict[str, object] = {"limit": MAX_BODY} if status == 413 else {}
        code = "".join(w.capitalize() for w in (exc.name or "Error").split())
        message = {
            404: f"no such resource: {request.method} {request.path}",
            405: f"{request.path} does not answer {request.method}",
            413: f"the request body is larger than {MAX_BODY} bytes",
        }.get(status, exc.description or exc.name or "error")
        headers: dict[str, str] | None = None
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers = {"Allow": ", ".join(exc.valid_methods)}
        elif isinstance(exc, RequestEntityTooLarge):
            # The rest of the body was never read: this connection cannot carry another request.
            headers = {"Connection": "close"}
        return problem_response(
            Problem(status=status, code=code, message=message, details=details), headers
        )

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        logger.error("%s %s failed", request.method, request.path, exc_info=exc)
        return problem_response(
            Problem(
                status=500,
                code="Internal",
                message=f"{request.method} {request.path} failed unexpectedly: {exc!r}; "
                "see the node's log",
            )
        )

    rendered = Rendered(objects)  # documents read and rendered once per version, for lists
    add_watch_routes(app, objects, watches)  # first: ?watch=true answers before the lists
    add_observe_routes(app, objects, node)
    add_volume_routes(app, objects, rendered)
    add_member_routes(app, objects, rendered)
    add_node_routes(app, objects, rendered)
    add_setting_routes(app, objects)
    add_openapi_route(app)
    return app
