"""Who reconciles what: node leases and ownership, as pure rules (longhorn-facts §6.6).

Every node keeps a heartbeat lease in the store (:mod:`lhtrio.manager.lease`): a ``NodeLease``
(:mod:`lhtrio.models.cluster.lease`, Kubernetes' Lease fields), named after the node. A node is
*available* while its lease was renewed within its duration.

An object is reconciled by exactly one node's manager, its owner (``status.ownerID``). A manager
is responsible for an object when it is the object's *preferred* owner (a volume's attach node,
an engine's or replica's node), or when the preferred owner is unavailable and either it owns
the object already or its owner is unavailable too (then any available node may take it over;
the store's optimistic concurrency lets one of them win). The candidates then agree on one
taker: the available node that sorts first, so two nodes never fight over an orphan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from lhtrio.models.cluster.lease import NodeLease, lease_expired

__all__ = ["available", "responsible"]


def available(leases: Iterable[NodeLease], now: dt.datetime) -> frozenset[str]:
    """The nodes whose leases have not expired at ``now``."""
    return frozenset(lease.meta.name for lease in leases if not lease_expired(lease.spec, now))


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
