"""Hypothesis strategies for valid control-plane objects (every one passes ``validate``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

from lhtrio.models.cluster.attachment import (
    AttachmentTicket,
    AttachmentTicketStatus,
    TicketParameters,
    TicketType,
    VolumeAttachment,
    VolumeAttachmentSpec,
    VolumeAttachmentStatus,
)
from lhtrio.models.cluster.engine import Engine, EngineSpec, EngineStatus, RebuildStatus
from lhtrio.models.cluster.event import Event, EventType, ObjectReference
from lhtrio.models.cluster.instance import DesireState, InstanceState
from lhtrio.models.cluster.lease import NodeLease, NodeLeaseSpec
from lhtrio.models.cluster.meta import Condition, ObjectMeta
from lhtrio.models.cluster.node import DiskSpec, DiskStatus, Node, NodeSpec, NodeStatus
from lhtrio.models.cluster.replica import Replica, ReplicaSpec, ReplicaStatus
from lhtrio.models.cluster.setting import SETTINGS, Setting, SettingSpec, SettingStatus
from lhtrio.models.cluster.volume import (
    AffinityOverride,
    DataLocality,
    Frontend,
    Robustness,
    Volume,
    VolumeSpec,
    VolumeState,
    VolumeStatus,
)
from lhtrio.models.volume import Mode
from lhtrio.units import BLOCK, MAX_VOLUME_SIZE

names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,30}", fullmatch=True)
nodes = st.one_of(st.just(""), names)
texts = st.text(max_size=40)
counts = st.integers(0, 2**63 - 1)
sizes = st.integers(1, MAX_VOLUME_SIZE // BLOCK).map(lambda n: n * BLOCK)
times = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
).map(lambda t: t.replace(microsecond=0))
maybe_times = st.none() | times
tags = st.lists(names, max_size=3, unique=True).map(tuple)
label_keys = st.from_regex(
    r"([a-z0-9]{1,8}\.io/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?", fullmatch=True
)
label_values = st.one_of(
    st.just(""), st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?", fullmatch=True)
)

conditions = st.lists(
    st.builds(
        Condition,
        type=names,
        status=st.booleans(),
        reason=texts,
        message=texts,
        last_transition=maybe_times,
    ),
    max_size=3,
).map(tuple)


def metas(name: st.SearchStrategy[str] = names) -> st.SearchStrategy[ObjectMeta]:
    return st.builds(
        ObjectMeta,
        name=name,
        resource_version=counts,
        uid=texts,
        labels=st.dictionaries(label_keys, label_values, max_size=3),
        finalizers=st.lists(
            st.from_regex(r"[a-z]{1,8}\.io(/[a-z]{1,8})?", fullmatch=True), max_size=2
        ).map(tuple),
        created=maybe_times,
        deletion_requested=maybe_times,
    )


def _maps(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(names, values, max_size=3)


volumes = st.builds(
    Volume,
    meta=metas(),
    spec=st.builds(
        VolumeSpec,
        size=sizes,
        number_of_replicas=st.integers(1, 20),
        frontend=st.sampled_from(Frontend),
        disable_frontend=st.booleans(),
        node_id=nodes,
        data_locality=st.sampled_from(DataLocality),
        replica_soft_anti_affinity=st.sampled_from(AffinityOverride),
        replica_zone_soft_anti_affinity=st.sampled_from(AffinityOverride),
        replica_disk_soft_anti_affinity=st.sampled_from(AffinityOverride),
        disk_selector=tags,
        node_selector=tags,
        stale_replica_timeout=counts,
    ),
    status=st.builds(
        VolumeStatus,
        owner_id=nodes,
        state=st.sampled_from(VolumeState),
        robustness=st.sampled_from(Robustness),
        current_node_id=nodes,
        frontend_disabled=st.booleans(),
        conditions=conditions,
        last_degraded_at=maybe_times,
        last_auto_salvaged_at=maybe_times,
        actual_size=counts,
        expansion_required=st.booleans(),
    ),
)

engines = st.builds(
    Engine,
    meta=metas(),
    spec=st.builds(
        EngineSpec,
        volume_name=names,
        volume_size=sizes,
        node_id=nodes,
        desire_state=st.sampled_from(DesireState),
        replica_address_map=_maps(texts),
        salvage_requested=st.booleans(),
        frontend=st.sampled_from(Frontend),
        disable_frontend=st.booleans(),
    ),
    status=st.builds(
        EngineStatus,
        owner_id=nodes,
        current_state=st.sampled_from(InstanceState),
        ip=texts,
        port=st.integers(0, 65535),
        started=st.booleans(),
        endpoint=texts,
        current_size=counts,
        current_replica_address_map=_maps(texts),
        replica_mode_map=_maps(st.sampled_from(Mode)),
        rebuild_status=_maps(
            st.builds(
                RebuildStatus,
                is_rebuilding=st.booleans(),
                progress=st.integers(0, 100),
                state=texts,
                error=texts,
                from_replica_address=texts,
                done_bytes=counts,
                total_bytes=counts,
            )
        ),
        salvage_executed=st.booleans(),
        conditions=conditions,
    ),
)

replicas = st.builds(
    Replica,
    meta=metas(),
    spec=st.builds(
        ReplicaSpec,
        volume_name=names,
        volume_size=sizes,
        node_id=nodes,
        engine_name=st.one_of(st.just(""), names),
        disk_id=texts,
        disk_path=st.one_of(st.just(""), names.map(lambda n: f"/var/lib/{n}")),
        data_directory_name=st.one_of(st.just(""), names),
        desire_state=st.sampled_from(DesireState),
        healthy_at=maybe_times,
        last_healthy_at=maybe_times,
        failed_at=maybe_times,
        last_failed_at=maybe_times,
        rebuild_retry_count=counts,
        eviction_requested=st.booleans(),
        hard_node_affinity=nodes,
        salvage_requested=st.booleans(),
    ),
    status=st.builds(
        ReplicaStatus,
        owner_id=nodes,
        current_state=st.sampled_from(InstanceState),
        ip=texts,
        port=st.integers(0, 65535),
        started=st.booleans(),
        conditions=conditions,
    ),
)

node_objects = st.builds(
    Node,
    meta=metas(),
    spec=st.builds(
        NodeSpec,
        disks=_maps(
            st.builds(
                DiskSpec,
                path=names.map(lambda n: f"/mnt/{n}"),
                allow_scheduling=st.booleans(),
                eviction_requested=st.booleans(),
                storage_reserved=counts,
                tags=tags,
            )
        ),
        allow_scheduling=st.booleans(),
        eviction_requested=st.booleans(),
        tags=tags,
        zone=texts,
        region=texts,
    ),
    status=st.builds(
        NodeStatus,
        conditions=conditions,
        disk_status=_maps(
            st.builds(
                DiskStatus,
                storage_available=counts,
                storage_maximum=counts,
                storage_scheduled=counts,
                scheduled_replica=_maps(counts),
                disk_uuid=texts,
                conditions=conditions,
            )
        ),
        region=texts,
        zone=texts,
    ),
)

leases = st.builds(
    NodeLease,
    meta=metas(),
    spec=st.builds(
        NodeLeaseSpec,
        holder_identity=texts,
        lease_duration_seconds=st.integers(1, 2**31),
        acquire_time=maybe_times,
        renew_time=maybe_times,
        lease_transitions=counts,
    ),
)


@st.composite
def settings(draw: st.DrawFn) -> Setting:
    definition = draw(st.sampled_from(list(SETTINGS.values())))
    if definition.choices:
        value = draw(st.sampled_from(definition.choices))
    elif definition.type.value == "bool":
        value = draw(st.sampled_from(["true", "false"]))
    else:
        value = str(draw(st.integers(definition.minimum or 0, definition.maximum or 10**6)))
    return Setting(
        meta=draw(metas(st.just(definition.name))),
        spec=SettingSpec(value=value),
        status=SettingStatus(applied=draw(st.booleans())),
    )


tickets = st.builds(
    AttachmentTicket,
    id=names,
    type=st.sampled_from(TicketType),
    node_id=nodes,
    parameters=st.builds(TicketParameters, disable_frontend=st.booleans()),
    generation=counts,
)
ticket_statuses = st.builds(
    AttachmentTicketStatus,
    id=names,
    satisfied=st.booleans(),
    generation=counts,
    conditions=conditions,
)


@st.composite
def attachments(draw: st.DrawFn) -> VolumeAttachment:
    meta = draw(metas())
    spec_tickets = draw(st.lists(tickets, max_size=4, unique_by=lambda t: t.id))
    statuses = draw(st.lists(ticket_statuses, max_size=4, unique_by=lambda t: t.id))
    return VolumeAttachment(
        meta=meta,
        spec=VolumeAttachmentSpec(
            volume=meta.name, attachment_tickets={t.id: t for t in spec_tickets}
        ),
        status=VolumeAttachmentStatus(attachment_ticket_statuses={s.id: s for s in statuses}),
    )


@st.composite
def events(draw: st.DrawFn) -> Event:
    first = draw(maybe_times)
    last = None if first is None else draw(st.none() | times.filter(lambda t: t >= first))
    return Event(
        meta=draw(metas()),
        involved_object=ObjectReference(
            kind=draw(st.sampled_from(["Volume", "Replica", "Engine", "Node"])),
            name=draw(names),
            uid=draw(texts),
        ),
        reason=draw(st.from_regex(r"[A-Z][A-Za-z0-9]{0,20}", fullmatch=True)),
        message=draw(texts),
        type=draw(st.sampled_from(EventType)),
        count=draw(st.integers(1, 2**31)),
        first_timestamp=first,
        last_timestamp=last,
        reporting_node=draw(nodes),
    )


#: A strategy of valid objects for each kind.
BY_KIND: dict[str, st.SearchStrategy[Any]] = {
    "Volume": volumes,
    "Engine": engines,
    "Replica": replicas,
    "Node": node_objects,
    "NodeLease": leases,
    "Setting": settings(),
    "VolumeAttachment": attachments(),
    "Event": events(),
}
