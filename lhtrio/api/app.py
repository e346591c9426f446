"""The admin API's routes: a quart-trio app over :class:`~lhtrio.manager.objects.Objects`.

Under ``/v1`` (``docs/api.md``): volumes (list, create, get, delete; the attach and detach
actions), nodes (list, get) and settings (list, get, put); watch streams
(:mod:`lhtrio.api.watch`), events, health probes and metrics (:mod:`lhtrio.api.observe`).
Answers are the store documents of the objects (:func:`~lhtrio.manager.store.codec.to_document`),
collections ``{"data": [...]}``; errors ``{"code", "message", "details"}``
(:mod:`lhtrio.api.problems`).

Every write goes through ``Objects`` (validated before it is stored) after the request was
checked here (:mod:`lhtrio.api.bodies`), so bad input changes nothing. Changes to an existing
volume are read-modify-write (:meth:`Objects.change`): a reconciler writing the volume's status
at the same moment never loses its change, nor the API its own.

Mutating calls (anything but GET and HEAD) need ``Authorization: Bearer TOKEN``, compared in
constant time; reads are open (issue 19 adds the option to close them). Bodies are capped at
:data:`MAX_BODY` bytes (413 beyond).
"""

from __future__ import annotations

import hmac
import logging
from typing import Final

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from lhtrio.api.bodies import parse_put_setting
from lhtrio.api.observe import OPEN_PATHS, NodeFacts, add_observe_routes
from lhtrio.api.problems import FieldError, HttpError, Problem, problem_of
from lhtrio.api.responses import (
    checked_name,
    collection,
    json_response,
    problem_response,
    read_body,
)
from lhtrio.api.volume_routes import add_volume_routes
from lhtrio.api.watch import WatchHub, add_watch_routes
from lhtrio.errors import InvalidArgumentError, LhtrioError, NotFoundError
from lhtrio.manager.objects import Objects
from lhtrio.manager.settings import set_setting
from lhtrio.manager.store.codec import to_document
from lhtrio.models.cluster import Engine, Node, ObjectMeta, Replica, Setting, VolumeAttachment
from lhtrio.models.cluster.setting import SETTINGS, SettingSpec
from lhtrio.models.names import validate_instance_name, validate_volume_name

__all__ = ["MAX_BODY", "make_app"]

logger = logging.getLogger(__name__)

#: The largest request body read (bytes); a larger one is answered 413.
MAX_BODY: Final = 1 << 20

_READS: Final = frozenset({"GET", "HEAD"})


def _check_token(token: str) -> None:
    """The bearer token of a mutating request: HttpError 401 unless it is ``token``."""
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


def make_app(
    objects: Objects,
    *,
    token: str,
    watches: WatchHub | None = None,
    node: NodeFacts | None = None,
) -> QuartTrio:
    """The app serving ``objects``; mutating calls need ``token``. ``watches`` feeds the watch
    streams (None: they are refused); ``node``: the node this API runs in (readiness, its
    engines' metrics)."""
    if not token:
        raise InvalidArgumentError("the API token is empty: an empty token would let anyone in")
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

    @app.before_request
    async def receive_then_authenticate() -> None:
        # The whole body is received before any answer (413 beyond MAX_BODY): hypercorn does not
        # carry on a keep-alive connection whose last request was answered before its body
        # arrived (the next request there is never answered), and a refusal must not depend
        # on how fast the body came. Reads have no body: this returns at once.
        await request.get_data(cache=True, as_text=False, parse_form_data=False)
        if request.path in OPEN_PATHS:
            return  # probes need no token
        if request.method not in _READS:
            _check_token(token)

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

    add_watch_routes(app, objects, watches)  # first: ?watch=true answers before the lists
    add_observe_routes(app, objects, node)
    add_volume_routes(app, objects)
    _member_routes(app, objects)
    _node_routes(app, objects)
    _setting_routes(app, objects)
    return app


def _member_routes(app: QuartTrio, objects: Objects) -> None:
    """Replicas, engines and volume attachments: read-only; ``?volume=NAME`` keeps one
    volume's."""

    def volume_filter() -> str | None:
        volume = request.args.get("volume")
        if volume is not None:
            checked_name(validate_volume_name, volume)
        return volume

    @app.get("/v1/replicas")
    async def list_replicas() -> Response:
        volume = volume_filter()
        replicas, _ = await objects.list(Replica)
        return collection(
            [to_document(r) for r in replicas if volume in (None, r.spec.volume_name)]
        )

    @app.get("/v1/replicas/<path:name>")
    async def get_replica(name: str) -> Response:
        checked_name(validate_instance_name, name, what="replica")
        return json_response(to_document(await objects.get(Replica, name)))

    @app.get("/v1/engines")
    async def list_engines() -> Response:
        volume = volume_filter()
        engines, _ = await objects.list(Engine)
        return collection([to_document(e) for e in engines if volume in (None, e.spec.volume_name)])

    @app.get("/v1/engines/<path:name>")
    async def get_engine(name: str) -> Response:
        checked_name(validate_instance_name, name, what="engine")
        return json_response(to_document(await objects.get(Engine, name)))

    @app.get("/v1/volumeattachments/<path:name>")
    async def get_attachment(name: str) -> Response:
        checked_name(validate_volume_name, name)
        return json_response(to_document(await objects.get(VolumeAttachment, name)))


def _node_routes(app: QuartTrio, objects: Objects) -> None:
    @app.get("/v1/nodes")
    async def list_nodes() -> Response:
        nodes, _ = await objects.list(Node)
        return collection([to_document(n) for n in nodes])

    @app.get("/v1/nodes/<path:name>")
    async def get_node(name: str) -> Response:
        checked_name(validate_instance_name, name, what="node")
        return json_response(to_document(await objects.get(Node, name)))


def _setting_document(name: str, stored: dict[str, Setting]) -> dict[str, object]:
    """The stored setting, or (never set) one holding its default, not yet stored."""
    setting = stored.get(name) or Setting(
        meta=ObjectMeta(name=name), spec=SettingSpec(value=SETTINGS[name].default)
    )
    return to_document(setting)


def _known_setting(name: str) -> str:
    checked_name(validate_instance_name, name, what="setting")
    if name not in SETTINGS:
        raise NotFoundError(
            f"unknown setting {name!r}; the settings are {', '.join(sorted(SETTINGS))}"
        )
    return name


def _setting_routes(app: QuartTrio, objects: Objects) -> None:
    async def stored() -> dict[str, Setting]:
        settings, _ = await objects.list(Setting)
        return {s.meta.name: s for s in settings}

    @app.get("/v1/settings")
    async def list_settings() -> Response:
        held = await stored()
        return collection([_setting_document(name, held) for name in sorted(SETTINGS)])

    @app.get("/v1/settings/<path:name>")
    async def get_setting(name: str) -> Response:
        return json_response(_setting_document(_known_setting(name), await stored()))

    @app.put("/v1/settings/<path:name>")
    async def put_setting(name: str) -> Response:
        _known_setting(name)
        asked = parse_put_setting(await read_body())
        try:
            written = await set_setting(objects, name, asked.value)
        except InvalidArgumentError as exc:
            raise FieldError("value", exc.message) from None
        return json_response(to_document(written))
