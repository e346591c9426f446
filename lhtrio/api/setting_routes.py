"""``/v1/settings``: every setting lhtrio knows (unset ones with their default), and setting one.

A setting that was never set has no object in the store: it is shown holding its default, with
an empty ``resourceVersion`` (``If-Match: ""`` sets it only if it is still unset).
``GET /v1/settings`` filters by ``?labelSelector=``.
"""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio

from lhtrio.api.bodies import parse_put_setting
from lhtrio.api.problems import FieldError
from lhtrio.api.query import collection_filter
from lhtrio.api.responses import checked_name, json_response, listed, read_body, version
from lhtrio.errors import InvalidArgumentError, NotFoundError
from lhtrio.manager.objects import Objects
from lhtrio.manager.settings import set_setting
from lhtrio.manager.store.codec import to_document
from lhtrio.models.cluster import ObjectMeta, Setting
from lhtrio.models.cluster.setting import SETTINGS, SettingSpec
from lhtrio.models.names import validate_instance_name

__all__ = ["add_setting_routes"]


def _setting(name: str, stored: dict[str, Setting]) -> Setting:
    """The stored setting, or (never set) one holding its default, not yet stored."""
    return stored.get(name) or Setting(
        meta=ObjectMeta(name=name), spec=SettingSpec(value=SETTINGS[name].default)
    )


def _known_setting(name: str) -> str:
    checked_name(validate_instance_name, name, what="setting")
    if name not in SETTINGS:
        raise NotFoundError(
            f"unknown setting {name!r}; the settings are {', '.join(sorted(SETTINGS))}"
        )
    return name


def add_setting_routes(app: QuartTrio, objects: Objects) -> None:
    async def stored() -> dict[str, Setting]:
        settings, _ = await objects.list(Setting)
        return {s.meta.name: s for s in settings}

    @app.get("/v1/settings")
    async def list_settings() -> Response:
        keep = collection_filter(request.path, request.args)  # bad filters: 400 before reading
        held = await stored()
        return listed((_setting(name, held) for name in sorted(SETTINGS)), keep)

    @app.get("/v1/settings/<path:name>")
    async def get_setting(name: str) -> Response:
        return json_response(to_document(_setting(_known_setting(name), await stored())))

    @app.put("/v1/settings/<path:name>")
    async def put_setting(name: str) -> Response:
        _known_setting(name)
        at = version()
        asked = parse_put_setting(await read_body())
        try:
            written = await set_setting(objects, name, asked.value, version=at)
        except InvalidArgumentError as exc:
            raise FieldError("value", exc.message) from None
        return json_response(to_document(written))
