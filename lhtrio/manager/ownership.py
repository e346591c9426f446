"""Who reconciles what: node leases and ownership, as pure rules (longhorn-facts §6.6).

Every node keeps a heartbeat lease in the store (:mod:`lhtrio.manager.lease`): a ``Lease``
document shaped like Kubernetes' ``coordination.k8s.io`` Lease (``spec.holderIdentity``,
``spec.renewTime``, ``spec.leaseDurationSeconds``), named after the node. A node is *available*
while its lease was renewed within its duration.

An object is reconciled by exactly one node's manager, its owner (``status.ownerID``). A manager
is responsible for an object when it is the object's *preferred* owner (a volume's attach node,
an engine's or replica's node), or when the preferred owner is unavailable and either it owns
the object already or its owner is unavailable too (then any available node may take it over;
the store's optimistic concurrency lets one of them win). The candidates then agree on one
taker: the available node that sorts first, so two nodes never fight over an orphan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import attrs

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.times import parse_time

__all__ = ["LeaseView", "available", "lease_of", "responsible"]


@attrs.frozen
class LeaseView:
    """A node's lease as the rules read it."""

    holder: str
    renewed: dt.datetime
    duration: float

    def valid(self, now: dt.datetime) -> bool:
        return (now - self.renewed).total_seconds() < self.duration


def lease_of(document: Mapping[str, object]) -> LeaseView | None:
    """The lease a ``Lease`` document holds; None if it is malformed (it then counts as
    expired: a node that cannot be read is not trusted to be up)."""
    spec = document.get("spec")
    if not isinstance(spec, dict):
        return None
    holder, renewed, duration = (
        spec.get("holderIdentity"),
        spec.get("renewTime"),
        spec.get("leaseDurationSeconds"),
    )
    if not isinstance(holder, str) or not isinstance(duration, int | float):
        return None
    try:
        return LeaseView(holder, parse_time(renewed), float(duration))
    except InvalidArgumentError:
        return None


def available(leases: Iterable[LeaseView], now: dt.datetime) -> frozenset[str]:
    """The nodes whose leases are valid at ``now``."""
    return frozenset(lease.holder for lease in leases if lease.valid(now))


def responsible(me: str, *, owner: str, preferred: str, up: frozenset[str]) -> bool:
    """Whether node ``me`` should reconcile an object owned by ``owner`` (``""``: nobody yet)
    whose preferred owner is ``preferred`` (``""``: none), given the available nodes ``up``."""
    if me not in up:
        return False  # a node that lost its lease stops reconciling
    if preferred and preferred in up:
        return me == preferred
    if owner and owner in up:
        return me == owner
    return me == min(up)  # nobody available owns it: one agreed taker
