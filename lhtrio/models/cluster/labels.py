"""The labels lhtrio sets itself on replicas, engines and events: what a reader selects them by.

A volume's reconciler reads its own replicas, and a node the replicas placed on it, with a
label selector (``Store.list(kind, labels=...)``: the Kubernetes API server, SQLite and the
memory store filter before decoding) instead of listing every replica of the cluster: at 10,000
volumes that listing was the reconcile. Longhorn labels its replicas the same way
(``longhornvolume``, ``longhornnode``). Events carry the kind and name of the object they are
about: an object's events are read (and bounded) without reading every event.

The labels are derived from the spec (:func:`with_index_labels`, applied to every object written
through :class:`lhtrio.manager.objects.Objects`): nobody sets them by hand, and an object written
with stale ones has them corrected. A label value is at most 63 characters of a narrower alphabet
than names allow (a volume name may end in ``-``; a node name may be longer): such a name is
labelled by a digest of it (:func:`label_value`). Readers still check the spec of what they
selected, so a digest's collision could only widen a selection, never hide an object.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, TypeVar

import attrs

from lhtrio.models.cluster.engine import Engine
from lhtrio.models.cluster.event import Event, ObjectReference
from lhtrio.models.cluster.replica import Replica

__all__ = [
    "INVOLVED_KIND_LABEL",
    "INVOLVED_NAME_LABEL",
    "NODE_LABEL",
    "VOLUME_LABEL",
    "involved_labels",
    "label_value",
    "with_index_labels",
]

#: The volume a replica or an engine belongs to.
VOLUME_LABEL: Final = "lhtrio.io/volume"
#: The node a replica or an engine is placed on (absent while it has none).
NODE_LABEL: Final = "lhtrio.io/node"
#: The kind and the name of the object an event is about.
INVOLVED_KIND_LABEL: Final = "lhtrio.io/involved-kind"
INVOLVED_NAME_LABEL: Final = "lhtrio.io/involved-name"

_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")

T = TypeVar("T")


def label_value(text: str) -> str:
    """``text`` as a label value: itself when it is one, else ``h-`` and a digest of it."""
    if _LABEL_VALUE.fullmatch(text):
        return text
    return "h-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def involved_labels(involved: ObjectReference) -> dict[str, str]:
    """The labels of the events about ``involved``."""
    return {
        INVOLVED_KIND_LABEL: label_value(involved.kind),
        INVOLVED_NAME_LABEL: label_value(involved.name),
    }


def with_index_labels(obj: T) -> T:
    """``obj`` with the labels its kind is selected by set from its spec (itself when they are
    already right, or it is of a kind that has none)."""
    labelled: Replica | Engine | Event = obj  # type: ignore[assignment]
    if isinstance(obj, Replica | Engine):
        keep = {k: v for k, v in obj.meta.labels.items() if k not in (VOLUME_LABEL, NODE_LABEL)}
        labels = {**keep, VOLUME_LABEL: label_value(obj.spec.volume_name)}
        if obj.spec.node_id:
            labels[NODE_LABEL] = label_value(obj.spec.node_id)
    elif isinstance(obj, Event):
        labels = {**obj.meta.labels, **involved_labels(obj.involved_object)}
    else:
        return obj
    if labels == labelled.meta.labels:
        return obj
    evolved = attrs.evolve(labelled, meta=attrs.evolve(labelled.meta, labels=labels))
    return evolved  # type: ignore[return-value]
