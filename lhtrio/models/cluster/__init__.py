"""The control plane's desired state: the kinds the manager stores, watches and reconciles.

Frozen attrs values (no trio, no I/O, no serialization: the store's one converter is
:mod:`lhtrio.manager.store.codec`), each with ``meta`` (:class:`ObjectMeta`), ``spec`` (what is
asked) and ``status`` (what is seen), shaped after Longhorn's CRDs (``longhorn-facts.md`` §6):
:class:`Volume`, :class:`Engine`, :class:`Replica`, :class:`Node`, :class:`NodeLease` (a node's
heartbeat), :class:`Setting` and :class:`VolumeAttachment`; and :class:`Event`, something that
happened to one of them, told to the operator (Kubernetes' flat shape: no spec or status). One
module per kind, with the pure rules that belong to it (robustness, ticket selection, setting
values, lease expiry); :func:`validate` checks names, references and ranges of any of them.
"""

from __future__ import annotations

from lhtrio.models.cluster.attachment import VolumeAttachment
from lhtrio.models.cluster.engine import Engine
from lhtrio.models.cluster.event import Event
from lhtrio.models.cluster.lease import NodeLease
from lhtrio.models.cluster.meta import Condition, ObjectMeta
from lhtrio.models.cluster.node import Node
from lhtrio.models.cluster.replica import Replica
from lhtrio.models.cluster.setting import Setting
from lhtrio.models.cluster.validate import ClusterObject, validate
from lhtrio.models.cluster.volume import Volume

__all__ = [
    "ClusterObject",
    "Condition",
    "Engine",
    "Event",
    "Node",
    "NodeLease",
    "ObjectMeta",
    "Replica",
    "Setting",
    "Volume",
    "VolumeAttachment",
    "validate",
]
