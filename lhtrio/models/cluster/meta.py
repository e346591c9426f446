"""What every object of the control plane carries: its metadata and its conditions.

:class:`ObjectMeta` is Kubernetes' metadata cut to what lhtrio uses: the name, the store revision of
the object's last change (``resource_version``, the optimistic-concurrency token: 0 until the
store holds it), a uid, labels, finalizers, and the times it was created and asked to be deleted
(Kubernetes' ``deletionTimestamp``: an object with finalizers stays until they are removed).

A :class:`Condition` is one observed fact about an object (``Ready``, ``Schedulable``,
``Scheduled``...) with the reason and message a human reads; :func:`set_condition` replaces one by
type and keeps its ``last_transition`` while its status does not change, as Kubernetes does.
"""

from __future__ import annotations

import datetime as dt

import attrs

__all__ = ["Condition", "ObjectMeta", "get_condition", "set_condition"]


@attrs.frozen(kw_only=True)
class ObjectMeta:
    """An object's name and store bookkeeping. ``labels`` must not be mutated (frozen values
    share it): build a new dict and :func:`attrs.evolve`."""

    name: str
    resource_version: int = 0
    uid: str = ""
    labels: dict[str, str] = attrs.field(factory=dict)
    finalizers: tuple[str, ...] = ()
    created: dt.datetime | None = None
    deletion_requested: dt.datetime | None = None

    @property
    def deleting(self) -> bool:
        return self.deletion_requested is not None


@attrs.frozen(kw_only=True)
class Condition:
    """``type`` is true or false since ``last_transition``, for ``reason`` (a CamelCase word a
    program may test) explained by ``message`` (for a human)."""

    type: str
    status: bool
    reason: str = ""
    message: str = ""
    last_transition: dt.datetime | None = None


def get_condition(conditions: tuple[Condition, ...], type: str) -> Condition | None:
    """The condition of ``type``, if there is one."""
    for condition in conditions:
        if condition.type == type:
            return condition
    return None


def set_condition(
    conditions: tuple[Condition, ...],
    type: str,
    status: bool,
    *,
    reason: str = "",
    message: str = "",
    now: dt.datetime,
) -> tuple[Condition, ...]:
    """``conditions`` with the one of ``type`` set (in its place, or appended).

    ``last_transition`` becomes ``now`` when the status changes (or the condition is new), and
    stays otherwise; when nothing changes, ``conditions`` itself is returned, so a caller can tell
    by identity that there is nothing to write.
    """
    old = get_condition(conditions, type)
    if old is None:
        new = Condition(
            type=type, status=status, reason=reason, message=message, last_transition=now
        )
        return (*conditions, new)
    changed = old.status != status
    new = attrs.evolve(
        old,
        status=status,
        reason=reason,
        message=message,
        last_transition=now if changed else old.last_transition,
    )
    if new == old:
        return conditions
    return tuple(new if c.type == type else c for c in conditions)
