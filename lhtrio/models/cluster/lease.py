"""The NodeLease kind: a node's heartbeat, one small object per node, named as the node.

A kind of its own (Kubernetes' ``coordination.k8s.io`` Lease, whose field names it keeps) rather
than a field of the Node's status, for the reasons Kubernetes moved heartbeats out of Node objects:
renewing every few seconds would rewrite the Node (disks, conditions) each time, wake every
watcher of Nodes (the scheduler), and race, with an optimistic-concurrency conflict, every other
writer of the Node (an operator disabling a disk). A lease is written only by its node, read by
everyone, and tiny.

A node is down once its lease has expired (:func:`lease_expired`): the owner of its objects can
then be taken over (``longhorn-facts.md`` §6.6). Times are whole seconds (the store's time format,
:mod:`lhtrio.models.times`), so an expiry is judged to within a second: durations are tens of
seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import attrs

from lhtrio.models.cluster.meta import ObjectMeta

__all__ = ["NodeLease", "NodeLeaseSpec", "NodeLeaseStatus", "lease_expired"]


@attrs.frozen(kw_only=True)
class NodeLeaseSpec:
    """``holder_identity``: the node process holding the lease (its name, and which start of it);
    ``lease_transitions``: how many times the holder changed."""

    holder_identity: str = ""
    lease_duration_seconds: int = 15
    acquire_time: dt.datetime | None = None
    renew_time: dt.datetime | None = None
    lease_transitions: int = 0


@attrs.frozen(kw_only=True)
class NodeLeaseStatus:
    """Nothing: a lease is all spec (as in Kubernetes); here so every kind has the same shape."""


@attrs.frozen(kw_only=True)
class NodeLease:
    KIND: ClassVar[str] = "NodeLease"

    meta: ObjectMeta
    spec: NodeLeaseSpec = attrs.field(factory=NodeLeaseSpec)
    status: NodeLeaseStatus = attrs.field(factory=NodeLeaseStatus)


def lease_expired(lease: NodeLeaseSpec, now: dt.datetime) -> bool:
    """Whether ``lease`` was not renewed within its duration before ``now`` (never renewed:
    expired)."""
    if lease.renew_time is None:
        return True
    return now >= lease.renew_time + dt.timedelta(seconds=lease.lease_duration_seconds)
