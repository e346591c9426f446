"""The Event kind: something that happened to an object, for the operator (Kubernetes' Event).

Kubernetes' ``core/v1`` Event cut to what lhtrio records, with its field names and its flat shape
(no ``spec``/``status``: an event is a record, not desired state): the object it is about
(``involvedObject``: kind, name and uid), a ``reason`` a program may test (a CamelCase word:
``Degraded``, ``Rebuilt``), a ``message`` for a human, its ``type`` (``Normal`` or ``Warning``),
how often it happened (``count``) between ``firstTimestamp`` and ``lastTimestamp``, and the node
that recorded it (``reportingNode``).

An :class:`Occurrence` is what a decision says happened (the volume plan's transitions, an
operation's outcome), before the recorder (:mod:`lhtrio.manager.events`) makes an Event of it or
counts it again on the Event it already has.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import ClassVar, Final

import attrs

from lhtrio.models.cluster.meta import ObjectMeta

__all__ = [
    "MAX_MESSAGE",
    "Event",
    "EventType",
    "ObjectReference",
    "Occurrence",
    "REASON",
]

#: The longest message kept (characters; Kubernetes keeps 1 KiB): longer ones are cut.
MAX_MESSAGE: Final = 1024
#: What a reason looks like: a CamelCase word of at most 128 characters.
REASON: Final = re.compile(r"[A-Z][A-Za-z0-9]{0,127}")


class EventType(enum.Enum):
    """Kubernetes' two event types: ``Normal`` (things went as they should), ``Warning`` (the
    operator may have to act: a replica failed, the volume is degraded)."""

    NORMAL = "Normal"
    WARNING = "Warning"


@attrs.frozen(kw_only=True)
class ObjectReference:
    """The object an event is about (``uid`` tells two objects of one name apart)."""

    kind: str
    name: str
    uid: str = ""


@attrs.frozen(kw_only=True)
class Occurrence:
    """Something that happened, before it is recorded as an :class:`Event`."""

    reason: str
    message: str
    type: EventType = EventType.NORMAL


@attrs.frozen(kw_only=True)
class Event:
    KIND: ClassVar[str] = "Event"

    meta: ObjectMeta
    involved_object: ObjectReference
    reason: str
    message: str = ""
    type: EventType = EventType.NORMAL
    count: int = 1
    first_timestamp: dt.datetime | None = None
    last_timestamp: dt.datetime | None = None
    reporting_node: str = ""
