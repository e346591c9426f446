"""What a control-plane object may hold: names, references and ranges, checked in one place.

:func:`validate` is called where an object enters (the API, before a store write) and where it is
read back from the store (:mod:`lhtrio.manager.store.codec`), so a name that becomes a directory,
an export or a log field was checked by the same rules as everywhere else
(:mod:`lhtrio.models.names`): a Volume and its VolumeAttachment are named as volumes; Engines,
Replicas, Nodes, NodeLeases, Settings and Events as instances (longer, for the ``-e-0``/
``-r-<hex>`` suffixes), and so are the nodes, disks, tickets and involved objects they refer to.
Every problem is an :class:`~lhtrio.errors.InvalidArgumentError` naming the kind, the object and
the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import ParamSpec

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.cluster.attachment import VolumeAttachment
from lhtrio.models.cluster.engine import Engine
from lhtrio.models.cluster.event import MAX_MESSAGE, REASON, Event
from lhtrio.models.cluster.lease import NodeLease
from lhtrio.models.cluster.meta import ObjectMeta
from lhtrio.models.cluster.node import Node
from lhtrio.models.cluster.replica import Replica
from lhtrio.models.cluster.setting import SETTINGS, Setting, parse
from lhtrio.models.cluster.volume import Volume
from lhtrio.models.names import validate_instance_name, validate_labels, validate_volume_name
from lhtrio.units import parse_volume_size

__all__ = ["ClusterObject", "MAX_REPLICAS", "validate"]

P = ParamSpec("P")

ClusterObject = Volume | Engine | Replica | Node | NodeLease | Setting | VolumeAttachment | Event

#: The most replicas a volume may have (Longhorn's limit).
MAX_REPLICAS = 20

_FINALIZER = re.compile(
    r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(/[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?"
)


def _wrap(
    kind: str, name: str, field: str, check: Callable[P, object], *args: P.args, **kw: P.kwargs
) -> None:
    try:
        check(*args, **kw)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{kind} {name!r}: {field}: {exc.message}") from None


def _refuse(kind: str, name: str, field: str, problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{kind} {name!r}: {field}: {problem}")


def _node(kind: str, name: str, field: str, value: str, *, optional: bool = True) -> None:
    if optional and value == "":
        return
    _wrap(kind, name, field, validate_instance_name, value, what="node")


def _tags(kind: str, name: str, field: str, tags: Iterable[str]) -> None:
    for tag in tags:
        _wrap(kind, name, field, validate_instance_name, tag, what="tag")


def _absolute_path(kind: str, name: str, field: str, path: str) -> None:
    if not path.startswith("/") or "\0" in path or len(path) > 4096:
        raise _refuse(kind, name, field, f"{path!r} is not an absolute path")


def _meta(kind: str, meta: ObjectMeta, what: str) -> None:
    """Check the metadata; the name as a volume's (``what`` = "volume") or an instance's."""
    try:
        if what == "volume":
            validate_volume_name(meta.name)
        else:
            validate_instance_name(meta.name, what=what)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{kind}: {exc.message}") from None
    name = meta.name
    if meta.resource_version < 0:
        raise _refuse(kind, name, "resourceVersion", f"{meta.resource_version} is negative")
    _wrap(kind, name, "labels", validate_labels, meta.labels)
    for finalizer in meta.finalizers:
        if len(finalizer) > 316 or not _FINALIZER.fullmatch(finalizer):
            raise _refuse(kind, name, "finalizers", f"{finalizer!r} is not a qualified name")


def _volume(obj: Volume) -> None:
    kind, name, spec = obj.KIND, obj.meta.name, obj.spec
    _meta(kind, obj.meta, "volume")
    _wrap(kind, name, "size", parse_volume_size, spec.size)
    if not 1 <= spec.number_of_replicas <= MAX_REPLICAS:
        raise _refuse(
            kind,
            name,
            "numberOfReplicas",
            f"{spec.number_of_replicas} is not from 1 to {MAX_REPLICAS}",
        )
    if spec.stale_replica_timeout < 0:
        raise _refuse(kind, name, "staleReplicaTimeout", "it is negative")
    _node(kind, name, "nodeID", spec.node_id)
    _node(kind, name, "ownerID", obj.status.owner_id)
    _node(kind, name, "currentNodeID", obj.status.current_node_id)
    _tags(kind, name, "diskSelector", spec.disk_selector)
    _tags(kind, name, "nodeSelector", spec.node_selector)


def _engine(obj: Engine) -> None:
    kind, name, spec = obj.KIND, obj.meta.name, obj.spec
    _meta(kind, obj.meta, "engine")
    _wrap(kind, name, "volumeName", validate_volume_name, spec.volume_name)
    _wrap(kind, name, "volumeSize", parse_volume_size, spec.volume_size)
    _node(kind, name, "nodeID", spec.node_id)
    _node(kind, name, "ownerID", obj.status.owner_id)
    status = obj.status
    for replica in (*spec.replica_address_map, *status.replica_mode_map, *status.rebuild_status):
        _wrap(kind, name, "replicas", validate_instance_name, replica, what="replica")
    for replica, rebuild in status.rebuild_status.items():
        if not 0 <= rebuild.progress <= 100:
            raise _refuse(kind, name, "rebuildStatus", f"{replica}: progress is not 0 to 100")


def _replica(obj: Replica) -> None:
    kind, name, spec = obj.KIND, obj.meta.name, obj.spec
    _meta(kind, obj.meta, "replica")
    _wrap(kind, name, "volumeName", validate_volume_name, spec.volume_name)
    _wrap(kind, name, "volumeSize", parse_volume_size, spec.volume_size)
    _node(kind, name, "nodeID", spec.node_id)
    _node(kind, name, "hardNodeAffinity", spec.hard_node_affinity)
    _node(kind, name, "ownerID", obj.status.owner_id)
    if spec.engine_name:
        _wrap(
            kind,
            name,
            "engineName",
            validate_instance_name,
            spec.engine_name,
            what="engine",
        )
    if spec.data_directory_name:
        _wrap(
            kind,
            name,
            "dataDirectoryName",
            validate_instance_name,
            spec.data_directory_name,
            what="data directory",
        )
    if spec.disk_path:
        _absolute_path(kind, name, "diskPath", spec.disk_path)
    if spec.rebuild_retry_count < 0:
        raise _refuse(kind, name, "rebuildRetryCount", "it is negative")


def _node_object(obj: Node) -> None:
    kind, name, spec = obj.KIND, obj.meta.name, obj.spec
    _meta(kind, obj.meta, "node")
    _tags(kind, name, "tags", spec.tags)
    for disk_name, disk in spec.disks.items():
        field = f"disks[{disk_name!r}]"
        _wrap(kind, name, field, validate_instance_name, disk_name, what="disk")
        _absolute_path(kind, name, f"{field}.path", disk.path)
        _tags(kind, name, f"{field}.tags", disk.tags)
        if disk.storage_reserved < 0:
            raise _refuse(kind, name, f"{field}.storageReserved", "it is negative")
    for disk_name in obj.status.disk_status:
        field = f"diskStatus[{disk_name!r}]"
        _wrap(kind, name, field, validate_instance_name, disk_name, what="disk")


def _lease(obj: NodeLease) -> None:
    _meta(obj.KIND, obj.meta, "node")
    if obj.spec.lease_duration_seconds <= 0:
        raise _refuse(obj.KIND, obj.meta.name, "leaseDurationSeconds", "it is not positive")


def _setting(obj: Setting) -> None:
    kind, name = obj.KIND, obj.meta.name
    _meta(kind, obj.meta, "setting")
    if name not in SETTINGS:
        raise InvalidArgumentError(
            f"unknown setting {name!r}; the settings are {', '.join(sorted(SETTINGS))}"
        )
    parse(name, obj.spec.value)


def _attachment(obj: VolumeAttachment) -> None:
    kind, name, spec = obj.KIND, obj.meta.name, obj.spec
    _meta(kind, obj.meta, "volume")
    if spec.volume != name:
        raise _refuse(kind, name, "volume", f"{spec.volume!r} is not the object's name")
    for key, ticket in spec.attachment_tickets.items():
        field = f"attachmentTickets[{key!r}]"
        _wrap(kind, name, field, validate_instance_name, key, what="ticket")
        if ticket.id != key:
            raise _refuse(kind, name, f"{field}.id", f"{ticket.id!r} is not its key")
        _node(kind, name, f"{field}.nodeID", ticket.node_id)
    for key, status in obj.status.attachment_ticket_statuses.items():
        field = f"attachmentTicketStatuses[{key!r}]"
        _wrap(kind, name, field, validate_instance_name, key, what="ticket")
        if status.id != key:
            raise _refuse(kind, name, f"{field}.id", f"{status.id!r} is not its key")


def _event(obj: Event) -> None:
    kind, name, involved = obj.KIND, obj.meta.name, obj.involved_object
    _meta(kind, obj.meta, "event")
    if not involved.kind.isidentifier() or not involved.kind[:1].isupper():
        raise _refuse(kind, name, "involvedObject.kind", f"{involved.kind!r} is not a kind")
    _wrap(kind, name, "involvedObject.name", validate_instance_name, involved.name, what="object")
    if not REASON.fullmatch(obj.reason):
        raise _refuse(kind, name, "reason", f"{obj.reason!r} is not a CamelCase word")
    if len(obj.message) > MAX_MESSAGE:
        raise _refuse(kind, name, "message", f"it is longer than {MAX_MESSAGE} characters")
    if obj.count < 1:
        raise _refuse(kind, name, "count", f"{obj.count} is not positive")
    first, last = obj.first_timestamp, obj.last_timestamp
    if first is not None and last is not None and last < first:
        raise _refuse(kind, name, "lastTimestamp", "it is before firstTimestamp")
    _node(kind, name, "reportingNode", obj.reporting_node)


def validate(obj: ClusterObject) -> None:
    """Raise InvalidArgumentError naming the first problem of ``obj``, if it has one."""
    match obj:
        case Volume():
            _volume(obj)
        case Engine():
            _engine(obj)
        case Replica():
            _replica(obj)
        case Node():
            _node_object(obj)
        case NodeLease():
            _lease(obj)
        case Setting():
            _setting(obj)
        case VolumeAttachment():
            _attachment(obj)
        case Event():
            _event(obj)
