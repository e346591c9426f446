"""The replica set recorded on a replica: ``lhtrio-members.json``.

The engine records the volume's RW replicas on every replica it writes to, with an *epoch* that
grows with every record, before it acknowledges anything after the set changed (the why is in
:mod:`lhtrio.engine.membership`). The replica keeps the record with the highest epoch it was
given: two records of one engine that cross on the way land in either order and leave the newer.
A record is written like any other metadata (``.tmp``, fsync, rename, fsync of the directory);
an EIO while writing it fails the replica for good, as any commit that may not be durable does.
"""

from __future__ import annotations

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.names import validate_instance_name
from lhtrio.models.replica import MemberRecord
from lhtrio.replica import meta as metalib
from lhtrio.replica.layers import Layers
from lhtrio.replica.names import MEMBERS

__all__ = ["MAX_MEMBERS", "read", "record", "validate"]

#: The most replicas one record names (a volume has a handful; this only bounds bad input).
MAX_MEMBERS = 64
_MAX_ADDRESS = 255


def validate(value: MemberRecord) -> None:
    """InvalidArgumentError unless ``value`` is a record an engine can make."""
    if value.epoch < 1:
        raise InvalidArgumentError(f"epoch {value.epoch} is not positive")
    if len(value.members) > MAX_MEMBERS:
        raise InvalidArgumentError(f"{len(value.members)} members, more than {MAX_MEMBERS}")
    if len(value.instances()) != len(value.members):
        raise InvalidArgumentError("a replica instance is named twice")
    for member in value.members:
        validate_instance_name(member.instance)
        if not member.address or len(member.address) > _MAX_ADDRESS:
            raise InvalidArgumentError(
                f"replica {member.instance}: address {member.address!r} is empty or too long"
            )


def read(layers: Layers) -> MemberRecord:
    """The record in ``layers``' directory; epoch 0 if it has none."""
    try:
        if not layers.exists(MEMBERS):
            return MemberRecord()
    except OSError as exc:
        raise layers.error(exc, f"cannot stat {MEMBERS}") from None
    return metalib.load(layers.dir_fd, MEMBERS, MemberRecord, where=f"{layers.path}/{MEMBERS}")


def record(layers: Layers, value: MemberRecord) -> MemberRecord:
    """Keep ``value`` durably unless the directory holds a record as new or newer; the record
    the directory holds afterwards."""
    validate(value)
    held = read(layers)
    if held.epoch >= value.epoch:
        return held
    try:
        metalib.store(layers.dir_fd, MEMBERS, value)
    except OSError as exc:
        raise layers.error(exc, f"cannot write {MEMBERS}") from None
    return value
