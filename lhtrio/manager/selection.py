"""A volume's replicas, or a node's, read by label instead of by listing every replica.

The labels are :mod:`lhtrio.models.cluster.labels`' (set on every replica written through
:class:`~lhtrio.manager.objects.Objects`); the spec of each replica selected is checked again, so
a label that names a digest (a name no label value can hold) never adds another's replica.
"""

from __future__ import annotations

from lhtrio.manager.objects import Objects
from lhtrio.models.cluster import Replica
from lhtrio.models.cluster.labels import NODE_LABEL, VOLUME_LABEL, label_value

__all__ = ["replicas_of", "replicas_on"]


async def replicas_of(objects: Objects, volume: str) -> list[Replica]:
    """The replicas of ``volume``, by name."""
    selected, _ = await objects.list(Replica, labels={VOLUME_LABEL: label_value(volume)})
    return [r for r in selected if r.spec.volume_name == volume]


async def replicas_on(objects: Objects, node: str) -> list[Replica]:
    """The replicas placed on ``node``, by name."""
    selected, _ = await objects.list(Replica, labels={NODE_LABEL: label_value(node)})
    return [r for r in selected if r.spec.node_id == node]
