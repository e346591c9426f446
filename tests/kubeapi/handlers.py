"""The verbs on one resource: get, list, create, replace (PUT), patch, delete, over
:class:`~.etcd.EtcdObjects` and the sans-I/O rules. Routing, bodies and watches are
:mod:`.app`'s and :mod:`.watch`'s.

Every write is: read, compute the new object (:mod:`.rules`, :mod:`.patch`, :mod:`.fields`),
default and validate it (:mod:`.schemas`; a CRD also :mod:`.crds`), then one etcd transaction
guarded by the revision read. A PUT that loses that race is 409 Conflict, since its client
named the version it replaces (or, with no version, is tried again); a patch is applied again to
the newer object, as the real server does. ``dryRun=All`` does all of it but the write.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import json
from collections.abc import Callable
from typing import Any, Final

import attrs
import yaml

from tests.kubeapi import crds, fields, rules, schemas
from tests.kubeapi import patch as patches
from tests.kubeapi.etcd import CompactedError, EtcdObjects
from tests.kubeapi.resources import CRD, NAMESPACE, Catalog, Resource
from tests.kubeapi.selectors import field_selector, label_selector
from tests.kubeapi.status import (
    KubeError,
    Obj,
    already_exists,
    bad_request,
    conflict,
    gone,
    invalid,
    not_found,
)
from tests.kubeapi.table import table

__all__ = ["Answer", "Call", "Handlers"]

#: A patch lost this many races to other writers before the double gives up (409).
PATCH_ATTEMPTS: Final = 10
_PATCH_TYPES: Final = (
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


@attrs.frozen(kw_only=True)
class Call:
    """One request on a resource, as the router understood it."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None
    query: dict[str, str]
    content_type: str = ""
    user_agent: str = ""
    as_table: bool = False
    body: bytes = b""

    @property
    def manager(self) -> str:
        given = self.query.get("fieldManager")
        if given:
            return given
        return self.user_agent.partition("/")[0] or "unknown"

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in {"true", "1"}


@attrs.frozen
class Answer:
    status: int
    body: Obj
    warnings: tuple[str, ...] = ()


def parse_body(call: Call) -> Any:
    if not call.body:
        raise bad_request("the request has no body")
    try:
        if "yaml" in call.content_type:
            return yaml.safe_load(call.body)
        return json.loads(call.body)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the request body does not parse: {str(exc)[:200]}") from None


def _as_version(resource: Resource, obj: Obj) -> Obj:
    """A stored object as the version asked for (a CRD's versions share their objects)."""
    if obj.get("apiVersion") == resource.api_version:
        return obj
    return {**obj, "apiVersion": resource.api_version}


def encode_continue(revision: int, start: str) -> str:
    raw = json.dumps({"rv": revision, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(value["rv"]), str(value["start"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_request(f"continue key is not valid: {token[:60]!r}") from None


def positive_int(query: dict[str, str], name: str) -> int:
    text = query.get(name, "") or "0"
    if not text.isdigit():
        raise bad_request(f"{name} must be a non-negative integer, not {text!r}")
    return int(text)


class Handlers:
    """The verbs (see the module docstring); ``clock`` is the server's time."""

    def __init__(
        self, objects: EtcdObjects, clock: Callable[[], dt.datetime] | None = None
    ) -> None:
        self.objects = objects
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    async def catalog(self) -> Catalog:
        page = await self.objects.page(CRD, None)
        return Catalog.of(page.objects)

    async def _current(self, call: Call) -> Obj:
        assert call.name is not None
        found = await self.objects.get(call.resource, call.namespace, call.name)
        if found is None:
            raise not_found(call.resource.group_resource, call.name)
        return found

    # --- reads -----------------------------------------------------------------------------

    async def get(self, call: Call) -> Answer:
        obj = _as_version(call.resource, await self._current(call))
        if call.as_table:
            version = obj["metadata"]["resourceVersion"]
            return Answer(
                200,
                table(
                    call.resource,
                    [obj],
                    revision=version,
                    moment=self.clock(),
                    include_object=call.query.get("includeObject", "Metadata"),
                ),
            )
        return Answer(200, obj)

    def selector(self, call: Call) -> Callable[[Obj], bool]:
        labels = label_selector(call.query.get("labelSelector"))
        supported = ("metadata.name", "metadata.namespace", *call.resource.field_labels)
        fields_ = field_selector(call.query.get("fieldSelector"), supported)
        return lambda obj: labels(obj) and fields_(obj)

    async def list(self, call: Call) -> Answer:
        matches = self.selector(call)
        limit = positive_int(call.query, "limit")
        revision: int | None = None
        start: str | None = None
        if token := call.query.get("continue"):
            revision, start = _decode_continue(token)
        elif call.query.get("resourceVersionMatch") == "Exact":
            revision = positive_int(call.query, "resourceVersion") or None
        try:
            page = await self.objects.page(
                call.resource, call.namespace, limit=limit, start=start, revision=revision
            )
        except CompactedError as exc:
            raise gone(
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter."
                if token
                else f"too old resource version: {exc.asked}"
            ) from None
        items = [_as_version(call.resource, o) for o in page.objects if matches(o)]
        token = encode_continue(page.revision, page.next_key) if page.next_key else ""
        if call.as_table:
            return Answer(
                200,
                table(
                    call.resource,
                    items,
                    revision=str(page.revision),
                    moment=self.clock(),
                    continue_token=token,
                    include_object=call.query.get("includeObject", "Metadata"),
                ),
            )
        metadata: Obj = {"resourceVersion": str(page.revision)}
        if token:
            metadata["continue"] = token
        return Answer(
            200,
            {
                "kind": call.resource.list_kind,
                "apiVersion": call.resource.api_version,
                "metadata": metadata,
                "items": items,
            },
        )

    # --- writes ----------------------------------------------------------------------------

    def checked(self, call: Call, obj: Obj, previous: Obj | None) -> tuple[Obj, tuple[str, ...]]:
        """``obj`` defaulted, validated and pruned; the warnings to send."""
        resource = call.resource
        directive = call.query.get("fieldValidation", "Warn")
        if directive not in {"Strict", "Warn", "Ignore"}:
            raise bad_request(f'fieldValidation must be Strict, Warn or Ignore, not "{directive}"')
        obj = copy.deepcopy(obj)
        schemas.fill_defaults(obj, resource.schema)
        if resource == CRD:
            obj["status"] = {}  # the server's: computed below
        findings = schemas.check(resource, obj)
        name = obj["metadata"].get("name", "")
        unknown = findings.unknown_text()
        if unknown and directive == "Strict":
            listed = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise bad_request(f"strict decoding error: {listed}")
        if findings.invalid:
            raise invalid(resource.kind_group, name, findings.invalid)
        findings.prune(obj)
        if resource == CRD:
            crds.check_crd(obj)
            obj["status"] = crds.crd_status(obj, rules.now(self.clock()), previous)
        warnings = tuple(f'unknown field "{u}"' for u in unknown) if directive == "Warn" else ()
        return obj, warnings

    async def _namespace_exists(self, call: Call) -> None:
        if not call.resource.namespaced or call.namespace is None:
            return
        if await self.objects.get(NAMESPACE, None, call.namespace) is None:
            raise not_found("namespaces", call.namespace)

    async def create(self, call: Call) -> Answer:
        if call.subresource is not None or call.name is not None:
            raise KubeError(405, "MethodNotAllowed", "POST is for a collection")
        moment = rules.now(self.clock())
        obj = rules.prepare_create(
            call.resource,
            parse_body(call),
            namespace=call.namespace,
            manager=call.manager,
            moment=moment,
            meta=self._patch_meta(call),
        )
        return await self._insert(call, obj)

    async def _insert(self, call: Call, obj: Obj) -> Answer:
        await self._namespace_exists(call)
        obj, warnings = self.checked(call, obj, None)
        name = obj["metadata"]["name"]
        if call.dry_run:
            if await self.objects.get(call.resource, call.namespace, name) is not None:
                raise _exists(call.resource, name)
            return Answer(201, obj, warnings)
        revision = await self.objects.create(call.resource, call.namespace, name, obj)
        if revision is None:
            raise _exists(call.resource, name)
        obj["metadata"]["resourceVersion"] = str(revision)
        return Answer(201, _as_version(call.resource, obj), warnings)

    async def _store(self, call: Call, current: Obj, result: Obj | rules.Removal) -> Answer | None:
        """Write ``result`` over ``current``; None if ``current`` is no longer current."""
        version = int(current["metadata"]["resourceVersion"])
        assert call.name is not None
        if isinstance(result, rules.Removal):
            last, warnings = self.checked(call, result.last, current)
            if not call.dry_run:
                revision = await self.objects.remove(
                    call.resource, call.namespace, call.name, version
                )
                if revision is None:
                    return None
            return Answer(200, _as_version(call.resource, last), warnings)
        obj, warnings = self.checked(call, result, current)
        if obj == current:
            return Answer(200, _as_version(call.resource, current), warnings)  # nothing to write
        obj["metadata"].pop("resourceVersion", None)
        if not call.dry_run:
            revision = await self.objects.replace(
                call.resource, call.namespace, call.name, obj, version
            )
            if revision is None:
                return None
            version = revision
        obj["metadata"]["resourceVersion"] = str(version)
        return Answer(200, _as_version(call.resource, obj), warnings)

    async def replace(self, call: Call) -> Answer:
        body = parse_body(call)
        unconditional = not ((body.get("metadata") or {}) if isinstance(body, dict) else {}).get(
            "resourceVersion"
        )
        for _ in range(PATCH_ATTEMPTS):
            current = await self._current(call)
            result = rules.prepare_update(
                call.resource,
                current,
                body,
                subresource=call.subresource,
                manager=call.manager,
                moment=rules.now(self.clock()),
                require_version=not call.resource.builtin,
                meta=self._patch_meta(call),
            )
            answer = await self._store(call, current, result)
            if answer is not None:
                return answer
            if not unconditional:
                break
        raise _stale(call)

    async def patch(self, call: Call) -> Answer:
        kind = call.content_type.partition(";")[0].strip()
        if kind not in _PATCH_TYPES:
            raise KubeError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media "
                f"types include: {', '.join(_PATCH_TYPES)}",
            )
        if kind == "application/strategic-merge-patch+json" and not call.resource.builtin:
            raise KubeError(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not supported for custom resources: "
                "use a merge patch (--type=merge) or a JSON patch",
            )
        body = parse_body(call)
        moment = rules.now(self.clock())
        for _ in range(PATCH_ATTEMPTS):
            assert call.name is not None
            current = await self.objects.get(call.resource, call.namespace, call.name)
            if kind == "application/apply-patch+yaml":
                if current is None and call.subresource is not None:
                    raise not_found(call.resource.group_resource, call.name)
                applied = self._applied(call, current, body, moment)
                if current is None:
                    return await self._insert(call, applied)
                candidate: Any = applied
            elif current is None:
                raise not_found(call.resource.group_resource, call.name)
            elif kind == "application/merge-patch+json":
                candidate = patches.merge_patch(current, body)
            elif kind == "application/json-patch+json":
                candidate = patches.json_patch(current, body)
            else:
                candidate = patches.strategic_merge_patch(current, body, self._patch_meta(call))
            result = rules.prepare_update(
                call.resource,
                current,
                candidate,
                subresource=call.subresource,
                manager=call.manager,
                moment=moment,
                require_version=False,
                meta=self._patch_meta(call),
            )
            answer = await self._store(call, current, result)
            if answer is not None:
                return answer
        raise _stale(call)

    def _patch_meta(self, call: Call) -> patches.PatchMeta:
        """Where the resource's schema says how lists merge (built-in or custom)."""
        resource = call.resource
        if not resource.builtin:
            return patches.PatchMeta(resource.schema, {})
        name = schemas.definition_of(resource)
        defs = schemas.builtin_definitions(strict=False)
        return patches.PatchMeta(defs.get(name) if name else None, defs)

    def _applied(self, call: Call, current: Obj | None, body: Any, moment: str) -> Obj:
        """The object server-side apply makes of ``body`` (:mod:`.fields`)."""
        if not call.query.get("fieldManager"):
            raise bad_request("PATCH requests of type apply must have a fieldManager")
        if not isinstance(body, dict):
            raise bad_request("an applied configuration is an object")
        metadata = body.get("metadata") or {}
        assert call.name is not None
        if metadata.get("name") != call.name:
            raise bad_request(
                f"the name of the applied object ({metadata.get('name')}) does not "
                f"match the name on the URL ({call.name})"
            )
        if metadata.get("managedFields") is not None:
            raise bad_request("metadata.managedFields must be nil in an applied configuration")
        for key in ("apiVersion", "kind"):
            if not body.get(key):
                raise bad_request(f"an applied configuration must have {key}")
        with_status = call.subresource == "status" or not call.resource.status
        merged = fields.apply(
            current,
            body,
            manager=call.manager,
            force=call.flag("force"),
            api_version=call.resource.api_version,
            now=moment,
            with_status=with_status,
            meta=self._patch_meta(call),
        )
        if current is not None:
            return merged
        entries = merged["metadata"].pop("managedFields")
        obj = rules.prepare_create(
            call.resource, merged, namespace=call.namespace, manager=call.manager, moment=moment
        )
        obj["metadata"]["managedFields"] = entries
        return obj

    async def delete(self, call: Call) -> Answer:
        options = parse_body(call) if call.body else {}
        if not isinstance(options, dict):
            raise bad_request("DeleteOptions must be an object")
        for _ in range(PATCH_ATTEMPTS):
            current = await self._current(call)
            marked = rules.prepare_delete(
                call.resource, current, options.get("preconditions"), moment=rules.now(self.clock())
            )
            if call.dry_run:
                return Answer(200, _as_version(call.resource, marked or current))
            assert call.name is not None
            version = int(current["metadata"]["resourceVersion"])
            if marked is not None:
                if marked == current:
                    return Answer(200, _as_version(call.resource, current))
                answer = await self._store(call, current, marked)
                if answer is not None:
                    return answer
                continue
            await self._remove_contents(call, current)
            if await self.objects.remove(call.resource, call.namespace, call.name, version):
                return Answer(200, _as_version(call.resource, current))
        raise _stale(call)

    async def _remove_contents(self, call: Call, current: Obj) -> None:
        """A namespace takes its objects with it; a CRD its custom resources."""
        if call.resource == NAMESPACE:
            for resource in (await self.catalog()).resources:
                if resource.namespaced:
                    await self.objects.remove_all(resource, current["metadata"]["name"])
        elif call.resource == CRD:
            for resource in Catalog.of([current]).resources:
                if not resource.builtin:
                    await self.objects.remove_all(resource)


def _exists(resource: Resource, name: str) -> KubeError:
    return already_exists(resource.group_resource, name)


def _stale(call: Call) -> KubeError:
    return conflict(
        call.resource.group_resource,
        call.name or "",
        "the object has been modified; please apply your changes to the latest version and "
        "try again",
    )
