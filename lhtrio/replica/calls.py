"""The checks of control-call arguments that need more than a type.

The arguments themselves are the classes of the call table, :mod:`lhtrio.wire.calls.replica`;
the :class:`~lhtrio.wire.control.Dispatcher` structures them strictly (unknown keys, missing keys
and wrong types are ``INVALID_ARGUMENT``). What a type cannot say (a creation time that parses,
an address a task can connect to) is checked here, before a call takes the gate, so that the
service's handlers only act on arguments that can be acted upon.
"""

from __future__ import annotations

from lhtrio.errors import InvalidArgumentError
from lhtrio.net import parse_address
from lhtrio.replica import meta as metalib
from lhtrio.replica.adopt import PlannedDisk
from lhtrio.replica.meta import DiskMeta
from lhtrio.wire.calls.replica import AdoptArgs

__all__ = ["plan", "source_address"]


def plan(args: AdoptArgs) -> dict[str, PlannedDisk]:
    """``adopt``'s disks as the store takes them (creation times parsed)."""
    plan = {}
    for name, disk in args.disks.items():
        try:
            created = metalib.parse_time(disk.created)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"adopt: {name!r}: bad creation time: {exc}") from None
        meta = DiskMeta(
            name=name,
            parent=disk.parent,
            removed=disk.removed,
            user_created=disk.user_created,
            created=created,
            labels=disk.labels,
        )
        plan[name] = PlannedDisk(meta=meta, size=disk.size)
    return plan


def source_address(text: str) -> str:
    """A rebuild source's address, checked before a task tries to connect to it."""
    address = parse_address(text)  # InvalidArgumentError
    if not text.isascii() or not text.isprintable() or any(c.isspace() for c in text):
        problem = "it holds characters other than printable ASCII"
    elif address.is_unix:
        if len(address.path) <= 107:
            return text
        problem = "its socket path is longer than 107 bytes"
    elif len(address.host) <= 253 and all(0 < len(x) <= 63 for x in address.host.split(".")):
        return text
    else:
        problem = "its host is not a valid host name or address"
    raise InvalidArgumentError(f"sync_start: bad source address {text!r}: {problem}")
