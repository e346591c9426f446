"""The Kubernetes store's format, sans-I/O: which Kubernetes resource keeps each kind, how a store
document and a Kubernetes object turn into one another, and which writes a change takes.

**Resources.** Volume, Engine, Replica, Node, Setting and VolumeAttachment are lhtrio's custom
resources (:mod:`lhtrio.manager.store.crds`), kept as they are: the document *is* the object,
but for the metadata the API server owns. A NodeLease is a ``coordination.k8s.io/v1`` Lease
(the kind already has a Lease's fields: ``holderIdentity``, ``leaseDurationSeconds``,
``acquireTime``, ``renewTime``, ``leaseTransitions``; its times are written as Kubernetes'
MicroTime, read back at the store's second precision) and an Event a ``core/v1`` Event
(``involvedObject`` gains the namespace and ``lhtrio.io/v1``; ``reportingNode`` is
``source.host``, ``source.component`` is ``lhtrio``). Those two built-ins are shared with
everything else in the namespace (the kubelet records Events about lhtrio's own pods there), so
lhtrio's carry the label ``lhtrio.io/kind`` and every list and watch selects by it.

**Metadata.** A document's ``name``, ``labels`` and ``finalizers`` are written; ``uid``,
``creationTimestamp``, ``deletionTimestamp`` and ``resourceVersion`` are read from the server.
Whatever else the server or an operator keeps in an object's metadata (annotations such as
``kubectl``'s last applied configuration, managed fields, owner references) is never read
into a document, so it is never written back either.

**Writes** (:func:`plan_update`). A change is sent as JSON merge patches of only what differs
from the object as read, each carrying that object's ``resourceVersion`` (the API server refuses
a patch whose version is no longer current with 409): the spec and metadata through the main
resource, the status through ``/status`` for the custom resources (whose main resource ignores
status). Fields nobody changed are not in the patch, so the manager never writes an operator's
``kubectl apply``'d field back, nor drops one it does not know. A change that changes nothing
(the store's contract says every update takes a new revision, as a "touch") sets the
annotation ``lhtrio.io/touched`` to the version it replaces: the API server writes nothing for
an empty change.

Values are compared with ``null`` and a missing key as the same (a merge patch cannot tell them
apart: ``null`` removes the key); the codec reads both as the attribute's default.
"""

from __future__ import annotations

import copy
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import attrs

from lhtrio.errors import GoneError, InvalidArgumentError, LhtrioError, StorageError
from lhtrio.manager.store.api import Document, EventType
from lhtrio.manager.store.crds import CUSTOM_KINDS, GROUP, VERSION
from lhtrio.models.times import format_time, parse_time

__all__ = [
    "DEFAULT_NAMESPACE",
    "KIND_LABEL",
    "RESOURCES",
    "TOUCHED",
    "Resource",
    "WatchBrokenError",
    "WatchLines",
    "Writes",
    "from_kube",
    "merge_patch",
    "plan_update",
    "resource_of",
    "to_kube",
    "watch_event",
    "watch_refused",
    "watch_target",
]

#: The namespace lhtrio keeps its objects in unless its configuration names another.
DEFAULT_NAMESPACE: Final = "lhtrio-system"
#: The label that tells lhtrio's Leases and Events from the others of the namespace.
KIND_LABEL: Final = "lhtrio.io/kind"
#: The annotation a change that changes nothing sets (see the module docstring).
TOUCHED: Final = "lhtrio.io/touched"
#: ``source.component`` of lhtrio's Events.
COMPONENT: Final = "lhtrio"

Obj = dict[str, Any]


@attrs.frozen(kw_only=True)
class Resource:
    """Where the objects of one store kind live in Kubernetes."""

    kind: str  # the store's kind
    group: str  # "" for the core group
    version: str
    kube_kind: str
    plural: str
    #: Whether the status is written through a ``/status`` subresource.
    status: bool
    #: Whether lhtrio's objects are told apart by :data:`KIND_LABEL` (built-ins).
    labelled: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str) -> str:
        """The collection's path in ``namespace``: ``/apis/lhtrio.io/v1/namespaces/NS/volumes``."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{root}/namespaces/{namespace}/{self.plural}"

    @property
    def selector(self) -> dict[str, str]:
        """The labels every list and watch of this kind selects by."""
        return {KIND_LABEL: self.kind} if self.labelled else {}


RESOURCES: Final[dict[str, Resource]] = {
    **{
        custom.kind: Resource(
            kind=custom.kind,
            group=GROUP,
            version=VERSION,
            kube_kind=custom.kind,
            plural=custom.plural,
            status=True,
            labelled=False,
        )
        for custom in CUSTOM_KINDS
    },
    "NodeLease": Resource(
        kind="NodeLease",
        group="coordination.k8s.io",
        version="v1",
        kube_kind="Lease",
        plural="leases",
        status=False,
        labelled=True,
    ),
    "Event": Resource(
        kind="Event",
        group="",
        version="v1",
        kube_kind="Event",
        plural="events",
        status=False,
        labelled=True,
    ),
}


def resource_of(kind: str) -> Resource:
    """The resource that keeps ``kind``; InvalidArgumentError naming the kinds there are."""
    try:
        return RESOURCES[kind]
    except KeyError:
        raise InvalidArgumentError(
            f"the Kubernetes store keeps no kind {kind!r}: it keeps {', '.join(RESOURCES)}"
        ) from None


# -- values -----------------------------------------------------------------------------------


def _pruned(value: Any) -> Any:
    """``value`` without the ``null`` values of its maps (lists are values as a whole)."""
    if isinstance(value, Mapping):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    return value


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> Obj:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new`` (both pruned: no
    ``null`` in their maps); empty when they are equal."""
    patch: Obj = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if key in old and before == value:
            continue
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = copy.deepcopy(value)
    return patch


def _micro(text: object) -> object:
    """A store time as Kubernetes' MicroTime (``...:05.000000Z``); anything else as it is."""
    if not isinstance(text, str):
        return text
    moment = parse_time(text)
    return f"{format_time(moment)[:-1]}.{moment.microsecond:06d}Z"


def _seconds(text: object) -> object:
    """A Kubernetes time at the store's precision (``...:05Z``); anything else as it is."""
    if not isinstance(text, str):
        return text
    try:
        return format_time(parse_time(text))
    except InvalidArgumentError:
        return text  # the codec says what is wrong with it


def _map(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


# -- documents to objects -----------------------------------------------------------------------

_LEASE_TIMES: Final = ("acquireTime", "renewTime")
_LEASE_KEYS: Final = (
    "holderIdentity",
    "leaseDurationSeconds",
    "acquireTime",
    "renewTime",
    "leaseTransitions",
)
_EVENT_KEYS: Final = ("reason", "message", "type", "count", "firstTimestamp", "lastTimestamp")


def _kube_metadata(resource: Resource, document: Document, namespace: str) -> Obj:
    meta = _map(document.get("metadata"))
    out: Obj = {"name": meta.get("name"), "namespace": namespace}
    labels = {**_map(meta.get("labels")), **resource.selector}
    if labels:
        out["labels"] = labels
    if meta.get("finalizers"):
        out["finalizers"] = copy.deepcopy(meta["finalizers"])
    return out


def to_kube(resource: Resource, document: Document, namespace: str) -> Obj:
    """The Kubernetes object that keeps ``document`` (server-owned metadata left out)."""
    obj: Obj = {
        "apiVersion": resource.api_version,
        "kind": resource.kube_kind,
        "metadata": _kube_metadata(resource, document, namespace),
    }
    if resource.kind == "NodeLease":
        spec = _map(document.get("spec"))
        lease = {k: spec[k] for k in _LEASE_KEYS if spec.get(k) is not None}
        for key in _LEASE_TIMES:
            if key in lease:
                lease[key] = _micro(lease[key])
        obj["spec"] = lease
    elif resource.kind == "Event":
        obj.update({k: copy.deepcopy(document[k]) for k in _EVENT_KEYS if k in document})
        involved = _map(document.get("involvedObject"))
        obj["involvedObject"] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "namespace": namespace,
            **{k: involved[k] for k in ("kind", "name", "uid") if involved.get(k)},
        }
        obj["source"] = {"component": COMPONENT}
        if document.get("reportingNode"):
            obj["source"]["host"] = document["reportingNode"]
    else:
        for part in ("spec", "status"):
            if part in document:
                obj[part] = copy.deepcopy(document[part])
    return _pruned(obj)  # type: ignore[no-any-return]


# -- objects to documents -----------------------------------------------------------------------

_READ_METADATA: Final = ("name", "resourceVersion", "uid", "creationTimestamp", "deletionTimestamp")


def _document_metadata(resource: Resource, obj: Obj) -> Obj:
    meta = _map(obj.get("metadata"))
    out: Obj = {k: meta[k] for k in _READ_METADATA if meta.get(k) is not None}
    labels = {k: v for k, v in _map(meta.get("labels")).items() if k not in resource.selector}
    if labels:
        out["labels"] = labels
    if meta.get("finalizers"):
        out["finalizers"] = list(meta["finalizers"])
    return out


def from_kube(resource: Resource, obj: Obj) -> Document:
    """The store document a Kubernetes object keeps."""
    document: Document = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": resource.kind,
        "metadata": _document_metadata(resource, obj),
    }
    if resource.kind == "NodeLease":
        spec = _map(obj.get("spec"))
        lease = {k: spec[k] for k in _LEASE_KEYS if k in spec}
        for key in _LEASE_TIMES:
            if key in lease:
                lease[key] = _seconds(lease[key])
        document["spec"] = lease
        document["status"] = {}
    elif resource.kind == "Event":
        involved = _map(obj.get("involvedObject"))
        document["involvedObject"] = {
            k: involved[k] for k in ("kind", "name", "uid") if k in involved
        }
        document.update({k: copy.deepcopy(obj[k]) for k in _EVENT_KEYS if k in obj})
        host = _map(obj.get("source")).get("host")
        if host:
            document["reportingNode"] = host
    else:
        for part in ("spec", "status"):
            if part in obj:
                document[part] = copy.deepcopy(obj[part])
    return document


# -- changes ------------------------------------------------------------------------------------


@attrs.frozen
class Writes:
    """The merge patches a change takes, each with the version it expects added by the store:
    ``main`` for the main resource, ``status`` for ``/status`` (None: nothing to send)."""

    main: Obj | None
    status: Obj | None


def _main_part(obj: Obj, resource: Resource) -> Obj:
    meta = obj["metadata"]
    part = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    if resource.status:
        part.pop("status", None)
    part["metadata"] = {k: meta[k] for k in ("labels", "finalizers") if k in meta}
    return part


def plan_update(resource: Resource, current: Obj, wanted: Document, namespace: str) -> Writes:
    """The writes that turn ``current`` (as the server answered it) into ``wanted`` (a document
    the store's rules accepted); a touch when nothing differs (see the module docstring)."""
    before = to_kube(resource, from_kube(resource, current), namespace)
    after = to_kube(resource, wanted, namespace)
    main = merge_patch(_main_part(before, resource), _main_part(after, resource))
    status: Obj | None = None
    if resource.status:
        old, new = before.get("status", {}), after.get("status", {})
        if old != new:
            status = {"status": merge_patch(_map(old), _map(new)) if new else None}
    if not main and status is None:
        version = str(_map(current.get("metadata")).get("resourceVersion", ""))
        main = {"metadata": {"annotations": {TOUCHED: version}}}
    return Writes(main or None, status)


# -- watch streams ------------------------------------------------------------------------------

#: The longest line of a watch stream kept (bytes): an object is at most 1.5 MiB in etcd.
MAX_LINE: Final = 16 << 20


class WatchBrokenError(StorageError):
    """A watch stream said something it should not (an error event other than 410 Gone, a line
    that is not an event): the watch connects again."""


class WatchLines:
    """A watch stream's body cut into lines (one JSON event each), whatever the chunks."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The complete lines ``data`` ends; WatchBrokenError past :data:`MAX_LINE`."""
        self._buffer += data
        *lines, rest = self._buffer.split(b"\n")
        if len(rest) > MAX_LINE:
            raise WatchBrokenError(f"a watch event of more than {MAX_LINE} bytes")
        self._buffer = bytearray(rest)
        return [bytes(line) for line in lines if line.strip()]


def _status_text(status: Mapping[str, Any]) -> str:
    return str(status.get("message") or status.get("reason") or "no message")


def watch_target(resource: Resource, namespace: str, after: int, timeout: int) -> str:
    """The path and query of a watch of ``resource`` after revision ``after`` that asks for
    bookmarks and ends after ``timeout`` seconds."""
    query = {
        "watch": "true",
        "resourceVersion": str(after),
        "allowWatchBookmarks": "true",
        "timeoutSeconds": str(timeout),
    }
    if resource.selector:
        query["labelSelector"] = ",".join(f"{k}={v}" for k, v in resource.selector.items())
    return f"{resource.path(namespace)}?{urllib.parse.urlencode(query)}"


def watch_event(line: bytes) -> tuple[EventType | str, Obj]:
    """One event of a watch stream: ``(EventType, object)``, or ``("BOOKMARK", object)``;
    GoneError for a 410 ERROR event, WatchBrokenError for anything else."""
    try:
        event = json.loads(line)
    except ValueError:
        raise WatchBrokenError(
            f"a watch stream sent a line that is not JSON: {line[:80]!r}"
        ) from None
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise WatchBrokenError(f"a watch stream sent something that is not an event: {line[:80]!r}")
    change, obj = event.get("type"), event["object"]
    if change == "ERROR":
        if obj.get("code") == 410:
            raise GoneError(_status_text(obj))
        raise WatchBrokenError(f"the watch ended with an error: {_status_text(obj)}")
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    if not isinstance(version, str) or not version.isdigit():
        raise WatchBrokenError(f"a watch event without a resourceVersion: {line[:80]!r}")
    if change == "BOOKMARK":
        return "BOOKMARK", obj
    try:
        return EventType(change), obj
    except ValueError:
        raise WatchBrokenError(f"a watch event of unknown type {change!r}") from None


def watch_refused(code: int, body: bytes) -> LhtrioError:
    """What a watch answered with ``code`` (an error) and ``body`` (a Status, usually) means:
    GoneError (410), WatchBrokenError (429, 5xx: try again), StorageError (refused)."""
    try:
        status = json.loads(body)
    except ValueError:
        status = {}
    text = _status_text(status if isinstance(status, dict) else {})
    if code == 410:
        return GoneError(text)
    if code == 429 or code >= 500:
        return WatchBrokenError(f"the API server answered {code}: {text}")
    return StorageError(f"the API server refused the watch ({code}): {text}")
