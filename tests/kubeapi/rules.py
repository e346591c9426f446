"""What a create, an update and a delete do to an object, sans-I/O: the server-owned metadata
(uid, creationTimestamp, generation, resourceVersion checks, deletionTimestamp), the status
subresource's split, finalizers, names, and the checks that answer 400, 409 or 422 *before*
anything is written.

* **create**: ``metadata.name`` or ``generateName`` (five random characters appended); the
  namespace of the URL; uid, creationTimestamp, ``generation: 1``; status dropped when the
  resource has a status subresource (it is the status writer's).
* **update** (PUT, or a patch applied to the current object): a stale ``resourceVersion`` is
  409 Conflict; uid, name, namespace, creationTimestamp and deletionTimestamp stay; with a
  status subresource, the main resource keeps the old status and ``/status`` keeps everything
  but the status; ``generation`` goes up when anything but metadata and status changed.
* **delete**: an object with finalizers gets a ``deletionTimestamp`` and stays; an update that
  empties the finalizers of such an object removes it.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import secrets
import uuid
from typing import Any, Final

from tests.kubeapi.fields import record_update
from tests.kubeapi.patch import PatchMeta
from tests.kubeapi.resources import Resource
from tests.kubeapi.status import Obj, bad_request, conflict, invalid

__all__ = ["Removal", "check_name", "prepare_create", "prepare_delete", "prepare_update", "now"]

_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_GENERATED: Final = "bcdfghjklmnpqrstvwxz2456789"
#: metadata the server owns: a request never changes it.
_SERVER_METADATA: Final = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)


class Removal:
    """An update's verdict that the object goes: its being-deleted object lost its last
    finalizer. ``last`` is the object as the update left it."""

    def __init__(self, last: Obj) -> None:
        self.last = last


def now(clock: dt.datetime | None = None) -> str:
    moment = clock or dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_name(resource: Resource, name: object) -> str:
    """A name the resource accepts (422 otherwise): a DNS label for namespaces, a path
    segment for RBAC objects (``system:...``), a DNS subdomain for everything else."""
    text = name if isinstance(name, str) else ""
    if resource.plural == "namespaces":
        ok, rule = bool(_LABEL.fullmatch(text)) and len(text) <= 63, "a lowercase RFC 1123 label"
    elif resource.group == "rbac.authorization.k8s.io":
        ok = bool(text) and text not in {".", ".."} and not any(c in text for c in "/%")
        rule = "a path segment (no '/' or '%')"
    else:
        ok = bool(_SUBDOMAIN.fullmatch(text)) and len(text) <= 253
        rule = "a lowercase RFC 1123 subdomain"
    if not ok:
        raise invalid(
            resource.kind_group,
            text,
            [("metadata.name", f"Invalid value: {name!r}: a name must be {rule}")],
        )
    return text


def _object(resource: Resource, body: Any) -> Obj:
    if not isinstance(body, dict):
        raise bad_request(f"the body of a {resource.kind} request must be a JSON object")
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version is not None and api_version != resource.api_version:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({resource.api_version})"
        )
    if kind is not None and kind != resource.kind:
        raise bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
        )
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise bad_request("metadata must be an object")
    out = copy.deepcopy(body)
    out["apiVersion"], out["kind"] = resource.api_version, resource.kind
    out["metadata"] = out.get("metadata") or {}
    return out


def _namespace(resource: Resource, obj: Obj, namespace: str | None) -> None:
    given = obj["metadata"].get("namespace")
    if not resource.namespaced:
        obj["metadata"].pop("namespace", None)
        return
    if given not in {None, "", namespace}:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    obj["metadata"]["namespace"] = namespace


def prepare_create(
    resource: Resource,
    body: Any,
    *,
    namespace: str | None,
    manager: str,
    moment: str,
    meta: PatchMeta | None = None,
) -> Obj:
    obj = _object(resource, body)
    metadata = obj["metadata"]
    if metadata.get("resourceVersion"):
        raise bad_request("resourceVersion should not be set on objects to be created")
    if not metadata.get("name"):
        prefix = metadata.get("generateName")
        if not prefix or not isinstance(prefix, str):
            raise invalid(
                resource.kind_group,
                "",
                [("metadata.name", "Required value: name or generateName is required")],
            )
        metadata["name"] = prefix + "".join(secrets.choice(_GENERATED) for _ in range(5))
    check_name(resource, metadata["name"])
    _namespace(resource, obj, namespace)
    for key in (*_SERVER_METADATA, "resourceVersion", "selfLink"):
        metadata.pop(key, None)
    metadata.update(uid=str(uuid.uuid4()), creationTimestamp=moment, generation=1)
    if resource.status:
        obj.pop("status", None)
    if resource.plural == "namespaces":
        obj["status"] = {"phase": "Active"}
    metadata.pop("managedFields", None)
    record_update(
        None,
        obj,
        manager=manager,
        api_version=resource.api_version,
        now=moment,
        status_only=False,
        meta=meta or PatchMeta(None, {}),
    )
    return obj


def _spec_changed(resource: Resource, old: Obj, new: Obj) -> bool:
    skip = {"metadata", "status"} if resource.status else {"metadata"}
    keys = (old.keys() | new.keys()) - skip
    return any(old.get(k) != new.get(k) for k in keys)


def prepare_update(
    resource: Resource,
    current: Obj,
    body: Any,
    *,
    subresource: str | None,
    manager: str,
    moment: str,
    require_version: bool,
    meta: PatchMeta | None = None,
) -> Obj | Removal:
    """The object to store after ``body`` replaced ``current`` (a PUT, or a patch's result)."""
    obj = _object(resource, body)
    metadata, old_meta = obj["metadata"], current["metadata"]
    name = old_meta["name"]
    if metadata.get("name", name) != name:
        raise bad_request(
            f"the name of the object ({metadata['name']}) does not match the name on the URL "
            f"({name})"
        )
    _namespace(resource, obj, old_meta.get("namespace"))
    given = metadata.get("resourceVersion")
    if given in {None, ""} and require_version:
        raise invalid(
            resource.kind_group,
            name,
            [("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")],
        )
    if given not in {None, ""} and str(given) != old_meta["resourceVersion"]:
        raise conflict(
            resource.group_resource,
            name,
            "the object has been modified; please apply your changes to the latest version "
            "and try again",
        )
    if subresource == "status":
        status = obj.get("status")
        obj = copy.deepcopy(current)
        obj["metadata"].pop("managedFields", None)
        if "managedFields" in metadata:
            obj["metadata"]["managedFields"] = metadata["managedFields"]
        if status is None:
            obj.pop("status", None)
        else:
            obj["status"] = status
    elif resource.status:
        if "status" in current:
            obj["status"] = copy.deepcopy(current["status"])
        else:
            obj.pop("status", None)
    metadata = obj["metadata"]
    metadata["name"] = name
    for key in _SERVER_METADATA:
        if key in old_meta:
            metadata[key] = copy.deepcopy(old_meta[key])
        else:
            metadata.pop(key, None)
    metadata["resourceVersion"] = old_meta["resourceVersion"]
    if subresource is None and _spec_changed(resource, current, obj):
        metadata["generation"] = int(old_meta.get("generation", 1)) + 1
    record_update(
        current,
        obj,
        manager=manager,
        api_version=resource.api_version,
        now=moment,
        status_only=subresource == "status",
        meta=meta or PatchMeta(None, {}),
    )
    if old_meta.get("deletionTimestamp") and not metadata.get("finalizers"):
        return Removal(obj)
    return obj


def prepare_delete(
    resource: Resource, current: Obj, preconditions: Any, *, moment: str
) -> Obj | None:
    """The object marked for deletion (it has finalizers), or None: it goes now."""
    name = current["metadata"]["name"]
    if preconditions is not None and not isinstance(preconditions, dict):
        raise bad_request("preconditions must be an object")
    for key in ("uid", "resourceVersion"):
        wanted = (preconditions or {}).get(key)
        if wanted is not None and wanted != current["metadata"].get(key):
            raise conflict(
                resource.group_resource,
                name,
                f"Precondition failed: {key}: {wanted}, {key} in object meta: "
                f"{current['metadata'].get(key)}",
            )
    if not current["metadata"].get("finalizers"):
        return None
    obj = copy.deepcopy(current)
    if not obj["metadata"].get("deletionTimestamp"):
        obj["metadata"]["deletionTimestamp"] = moment
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
    return obj
