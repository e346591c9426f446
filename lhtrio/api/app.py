"""The admin API's routes: a quart-trio app over :class:`~lhtrio.manager.objects.Objects`.

Under ``/v1`` (``docs/api.md``): volumes (list, create, get, delete; the attach and detach
actions), nodes (list, get) and settings (list, get, put). Answers are the store documents of the
objects (:func:`~lhtrio.manager.store.codec.to_document`), collections ``{"data": [...]}``;
errors ``{"code", "message", "details"}`` (:mod:`lhtrio.api.problems`).

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
import json
import logging
from collections.abc import Callable
from typing import Final

import attrs
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from lhtrio.api.bodies import (
    parse_attach,
    parse_create_volume,
    parse_detach,
    parse_json,
    parse_put_setting,
)
from lhtrio.api.problems import FieldError, HttpError, Problem, problem_of
from lhtrio.errors import ConflictError, InvalidArgumentError, LhtrioError, NotFoundError
from lhtrio.manager.objects import MAX_ATTEMPTS, Objects
from lhtrio.manager.settings import read_settings, set_setting
from lhtrio.manager.store.codec import to_document
from lhtrio.manager.volume_control import FINALIZER
from lhtrio.models.cluster import Node, ObjectMeta, Setting, Volume
from lhtrio.models.cluster.setting import SETTINGS, SettingSpec, parse_int
from lhtrio.models.cluster.volume import VolumeSpec
from lhtrio.models.names import validate_instance_name, validate_volume_name

__all__ = ["MAX_BODY", "make_app"]

logger = logging.getLogger(__name__)

#: The largest request body read (bytes); a larger one is answered 413.
MAX_BODY: Final = 1 << 20

_READS: Final = frozenset({"GET", "HEAD"})
_ACTIONS: Final = ("attach", "detach")


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _problem(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return _json(problem.body(), problem.status, headers)


def _collection(documents: list[dict[str, object]]) -> Response:
    return _json({"data": documents})


def _checked_name(check: Callable[..., object], name: str, **kw: str) -> str:
    """``name`` from the URL, checked as the objects' names are (a hostile one is 400)."""
    try:
        check(name, **kw)
    except InvalidArgumentError as exc:
        raise FieldError("name", exc.message) from None
    return name


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


async def _body(*, empty_ok: bool = False) -> dict[str, object]:
    return parse_json(
        await request.get_data(cache=True, as_text=False, parse_form_data=False), empty_ok=empty_ok
    )


def make_app(objects: Objects, *, token: str) -> QuartTrio:
    """The app serving ``objects``; mutating calls need ``token``."""
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
        if request.method not in _READS:
            _check_token(token)

    @app.errorhandler(HttpError)
    async def http_error(exc: HttpError) -> Response:
        return _problem(exc.problem, exc.headers)

    @app.errorhandler(LhtrioError)
    async def lhtrio_error(exc: LhtrioError) -> Response:
        problem = problem_of(exc)
        if problem.status >= 500:
            logger.warning("%s %s: %s", request.method, request.path, exc)
        return _problem(problem)

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
        return _problem(
            Problem(status=status, code=code, message=message, details=details), headers
        )

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        logger.error("%s %s failed", request.method, request.path, exc_info=exc)
        return _problem(
            Problem(
                status=500,
                code="Internal",
                message=f"{request.method} {request.path} failed unexpectedly: {exc!r}; "
                "see the node's log",
            )
        )

    _volume_routes(app, objects)
    _node_routes(app, objects)
    _setting_routes(app, objects)
    return app


def _volume_routes(app: QuartTrio, objects: Objects) -> None:
    @app.get("/v1/volumes")
    async def list_volumes() -> Response:
        volumes, _ = await objects.list(Volume)
        return _collection([to_document(v) for v in volumes])

    @app.post("/v1/volumes")
    async def create_volume() -> Response:
        asked = parse_create_volume(await _body())
        replicas = asked.replicas
        if replicas is None:
            name = "default-replica-count"
            stored = await read_settings(objects)
            replicas = parse_int(name, stored.get(name, SETTINGS[name].default))
        volume = Volume(
            meta=ObjectMeta(name=asked.name, finalizers=(FINALIZER,)),
            spec=VolumeSpec(size=asked.size, number_of_replicas=replicas),
        )
        created = await objects.create(volume)
        return _json(to_document(created), 201)

    @app.get("/v1/volumes/<path:name>")
    async def get_volume(name: str) -> Response:
        _checked_name(validate_volume_name, name)
        return _json(to_document(await objects.get(Volume, name)))

    @app.delete("/v1/volumes/<path:name>")
    async def delete_volume(name: str) -> Response:
        _checked_name(validate_volume_name, name)
        for _ in range(MAX_ATTEMPTS):
            try:
                await objects.delete(await objects.get(Volume, name))
                break
            except ConflictError:
                continue  # changed between the read and the delete: read it again
        else:
            raise ConflictError(f"volume {name!r} kept changing: it could not be deleted")
        try:
            return _json(to_document(await objects.get(Volume, name)), 202)
        except NotFoundError:
            return _json({}, 202)  # no finalizer held it: gone at once

    @app.post("/v1/volumes/<path:name>")
    async def volume_action(name: str) -> Response:
        _checked_name(validate_volume_name, name)
        action = request.args.get("action")
        if action not in _ACTIONS:
            raise FieldError(
                "action",
                f"POST /v1/volumes/NAME needs ?action= one of {', '.join(_ACTIONS)}"
                + (f", not {action!r}" if action is not None else ""),
            )
        if action == "attach":
            attach = parse_attach(await _body())
            await objects.get(Node, attach.node)  # NotFoundError: 404

            def attached(volume: Volume) -> Volume:
                if volume.meta.deleting:
                    raise ConflictError(f"volume {name!r} is being deleted: it cannot attach")
                if volume.spec.node_id not in ("", attach.node):
                    raise ConflictError(
                        f"volume {name!r} is attached to node {volume.spec.node_id!r}: "
                        f"detach it before attaching it to {attach.node!r}"
                    )
                return attrs.evolve(volume, spec=attrs.evolve(volume.spec, node_id=attach.node))

            changed = await objects.change(Volume, name, attached)
        else:
            detach = parse_detach(await _body(empty_ok=True))

            def detached(volume: Volume) -> Volume:
                if detach.node is not None and volume.spec.node_id not in ("", detach.node):
                    raise ConflictError(
                        f"volume {name!r} is attached to node {volume.spec.node_id!r}, "
                        f"not {detach.node!r}"
                    )
                return attrs.evolve(volume, spec=attrs.evolve(volume.spec, node_id=""))

            changed = await objects.change(Volume, name, detached)
        return _json(to_document(changed))


def _node_routes(app: QuartTrio, objects: Objects) -> None:
    @app.get("/v1/nodes")
    async def list_nodes() -> Response:
        nodes, _ = await objects.list(Node)
        return _collection([to_document(n) for n in nodes])

    @app.get("/v1/nodes/<path:name>")
    async def get_node(name: str) -> Response:
        _checked_name(validate_instance_name, name, what="node")
        return _json(to_document(await objects.get(Node, name)))


def _setting_document(name: str, stored: dict[str, Setting]) -> dict[str, object]:
    """The stored setting, or (never set) one holding its default, not yet stored."""
    setting = stored.get(name) or Setting(
        meta=ObjectMeta(name=name), spec=SettingSpec(value=SETTINGS[name].default)
    )
    return to_document(setting)


def _known_setting(name: str) -> str:
    _checked_name(validate_instance_name, name, what="setting")
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
        return _collection([_setting_document(name, held) for name in sorted(SETTINGS)])

    @app.get("/v1/settings/<path:name>")
    async def get_setting(name: str) -> Response:
        return _json(_setting_document(_known_setting(name), await stored()))

    @app.put("/v1/settings/<path:name>")
    async def put_setting(name: str) -> Response:
        _known_setting(name)
        asked = parse_put_setting(await _body())
        try:
            written = await set_setting(objects, name, asked.value)
        except InvalidArgumentError as exc:
            raise FieldError("value", exc.message) from None
        return _json(to_document(written))
