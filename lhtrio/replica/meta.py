"""The replica's on-disk metadata: models, the one JSON converter, strict loads, durable writes.

Formats follow Longhorn (``longhorn-facts.md`` §1.2-1.5) so a replica directory stays inspectable
with the same eyes:

- ``volume.meta`` — :class:`VolumeMeta`, JSON object with Go field names (``Size``, ``Head``,
  ``Dirty``, ``Rebuilding``, ``Error``, ``Parent``, ``SectorSize``, ``BackingFilePath``).
- ``<disk>.img.meta`` — :class:`DiskMeta` (``Name``, ``Parent``, ``Removed``, ``UserCreated``,
  ``Created`` as RFC 3339 UTC with second precision, ``Labels`` as an object or null), plus
  ``Size``, lhtrio's own: the length the disk's file must have (see :mod:`.layout`). It is
  optional on load (directories written before it existed lack it) and omitted when unknown;
  Go's JSON reader ignores a key it does not know, so Longhorn-style readers still parse it.
- ``lhtrio-replica.json`` — :class:`ReplicaIdentity`, lhtrio's own (``volume``, ``instance``):
  which volume and replica instance the directory was created for.
- ``lhtrio-members.json`` — :class:`lhtrio.models.replica.MemberRecord`, lhtrio's own
  (``epoch``, ``members`` as ``[[instance, address]...]``): the volume's RW replicas as its engine
  last recorded them here (:mod:`lhtrio.engine.membership`). A directory without it has
  recorded nothing (epoch 0).
- ``<disk>.img.checksum`` — :class:`lhtrio.models.replica.Checksum`, the record the ``checksum``
  call returns, declared once (snake_case keys, as sparse-tools writes them: ``method``,
  ``checksum``, ``change_time`` — the file's ctime in nanoseconds when it was hashed; a later
  ctime means the file changed —, ``last_hashed_at``, ``silently_corrupted``). This module's
  converter reads and writes it, not the wire's; ``tests/replica/test_replica_meta.py`` pins the
  file's keys and values, so a change of the record that would change the file fails there.
- ``revision.counter`` — 4096 bytes: the counter in ASCII decimal, NUL-padded.

One cattrs converter (:data:`converter`) maps snake_case attributes to the on-disk key names.
Loads are strict on purpose: a missing key, an unexpected key, a duplicate key, a value of the wrong
JSON type (``"5"`` for an integer, ``1`` for a boolean) or anything that does not parse raises
:class:`~lhtrio.errors.CorruptMetadataError` naming the file and the problem. Metadata that is
silently "repaired" on load is how replicas lose data; a human should look instead.

Times are written and read by :mod:`lhtrio.models.times` (four-digit years, UTC, whole seconds):
a time that was accepted can always be read back.

Every write goes through :func:`lhtrio.replica.fs.write_atomic` (``.tmp``, fsync, rename, fsync of
the directory), so a crash leaves either the old or the new content.

The ``Name`` of a disk is written for Longhorn compatibility but re-derived from the file name on
load (as Longhorn does): the snapshot operation briefly hard-links a head's ``.meta``, so the stored
value is not authoritative.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.v import format_exception

from lhtrio.errors import CorruptMetadataError, InvalidArgumentError
from lhtrio.models import times
from lhtrio.models.replica import Checksum, MemberRecord, SetMember
from lhtrio.replica import fs

__all__ = [
    "SECTOR_SIZE",
    "COUNTER_FILE_SIZE",
    "MAX_COUNTER",
    "VolumeMeta",
    "DiskMeta",
    "ReplicaIdentity",
    "converter",
    "format_time",
    "parse_time",
    "utc_now",
    "creation_time",
    "dumps",
    "loads",
    "load",
    "store",
    "encode_counter",
    "decode_counter",
    "load_counter",
    "store_counter",
]

SECTOR_SIZE = 512
COUNTER_FILE_SIZE = 4096
#: The largest revision counter (Longhorn's is a Go int64; msgpack carries at most 64 bits).
MAX_COUNTER = (1 << 63) - 1
_META_LIMIT = 1 << 20  # no metadata file is legitimately this large

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class VolumeMeta:
    """``volume.meta``: the replica as a whole. ``head`` and ``parent`` are disk file names."""

    size: int
    head: str
    dirty: bool
    rebuilding: bool
    error: str = ""
    parent: str = ""
    sector_size: int = SECTOR_SIZE
    backing_file_path: str = ""


@attrs.frozen(kw_only=True)
class DiskMeta:
    """``<disk>.img.meta``: one disk of the chain. ``name`` and ``parent`` are disk file names.

    ``labels`` must not be mutated (frozen values share it). ``size`` is the length in bytes the
    disk's file must have, None where it was not recorded (directories written before lhtrio
    recorded it).
    """

    name: str
    parent: str
    removed: bool = False
    user_created: bool = False
    created: dt.datetime
    labels: dict[str, str] | None = None
    size: int | None = None


@attrs.frozen(kw_only=True)
class ReplicaIdentity:
    """``lhtrio-replica.json``: the volume and the replica instance a directory was created for.

    :meth:`~lhtrio.replica.store.Replica.open` refuses to serve the directory as anything else.
    """

    volume: str
    instance: str


def format_time(value: dt.datetime) -> str:
    """RFC 3339, UTC, second precision, four-digit year: ``2026-11-22T10:00:00Z``.

    InvalidArgumentError for a time without a zone or outside the years 0001-9999 in UTC.
    """
    return times.format_time(value)


def parse_time(text: object) -> dt.datetime:
    """An RFC 3339 timestamp with a time zone, in UTC, whole seconds.

    InvalidArgumentError for anything :func:`format_time` could not write back.
    """
    return times.parse_time(text)


def utc_now() -> dt.datetime:
    return times.utc_now()


def creation_time(created: dt.datetime | str | None) -> dt.datetime:
    """A disk's creation time as it will be stored (UTC, whole seconds); now if None.

    InvalidArgumentError for one that could not be written back (:mod:`lhtrio.models.times`).
    """
    if created is None:
        return times.utc_now()
    if isinstance(created, dt.datetime):
        return times.utc(created)
    try:
        return times.parse_time(created)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"created: {exc.message}") from None


# -- the converter --------------------------------------------------------------------------------


def _go_name(attribute: str) -> str:
    return "".join(part.capitalize() for part in attribute.split("_"))


def _strict(kind: type[T], label: str) -> Callable[[object, object], T]:
    def structure(value: object, _: object) -> T:
        if type(value) is not kind:
            raise TypeError(f"expected {label}, got {json.dumps(value)}")
        return value

    return structure


def _structure_time(value: object, _: object) -> dt.datetime:
    if type(value) is not str:
        raise TypeError(f"expected an RFC 3339 timestamp, got {json.dumps(value)}")
    try:
        return parse_time(value)
    except InvalidArgumentError as exc:
        raise ValueError(exc.message) from None


#: Keys a file may lack (written before lhtrio recorded them); omitted on write when unknown.
_OPTIONAL: dict[type[object], frozenset[str]] = {DiskMeta: frozenset({"Size"})}


def _structure_member(value: object, _: object) -> SetMember:
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is str for v in value)):
        raise TypeError(f"expected [instance, address], got {json.dumps(value)}")
    return SetMember(value[0], value[1])


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(int, _strict(int, "an integer"))
    conv.register_structure_hook(bool, _strict(bool, "true or false"))
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(dt.datetime, _structure_time)
    conv.register_unstructure_hook(dt.datetime, format_time)
    conv.register_structure_hook(SetMember, _structure_member)
    conv.register_unstructure_hook(SetMember, lambda m: [m.instance, m.address])
    for cls in (VolumeMeta, DiskMeta):
        optional = _OPTIONAL.get(cls, frozenset())
        renames: dict[str, Any] = {
            a.name: override(rename=_go_name(a.name), omit_if_default=_go_name(a.name) in optional)
            for a in attrs.fields(cls)
        }
        conv.register_structure_hook(
            cls, make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **renames)
        )
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **renames))
    return conv


converter = _make_converter()
"""The converter of the replica's JSON metadata (Go key names for volume/disk meta)."""


#: lhtrio's own files: their keys are the attribute names (not Go's).
_OWN_KEYS: tuple[type[Any], ...] = (Checksum, ReplicaIdentity, MemberRecord)


def _keys(cls: type[Any]) -> list[str]:
    if cls in _OWN_KEYS:
        return [a.name for a in attrs.fields(cls)]
    return [_go_name(a.name) for a in attrs.fields(cls)]


Metadata = VolumeMeta | DiskMeta | Checksum | ReplicaIdentity | MemberRecord


def dumps(value: Metadata) -> bytes:
    """Compact JSON, the way Go's encoding/json writes it."""
    return json.dumps(converter.unstructure(value), separators=(",", ":")).encode()


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes, cls: type[T], *, where: str) -> T:
    """Parse one metadata file strictly; ``where`` names the file in errors."""
    try:
        text = data.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        problem = "it is empty" if not data.strip() else f"it is not valid JSON ({exc})"
        raise CorruptMetadataError(f"{where}: {problem}") from None
    if not isinstance(obj, dict):
        raise CorruptMetadataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    expected = _keys(cls)
    optional = _OPTIONAL.get(cls, frozenset())
    missing = [k for k in expected if k not in obj and k not in optional]
    if missing:
        raise CorruptMetadataError(f"{where}: missing field(s) {', '.join(missing)}")
    extra = sorted(k for k in obj if k not in expected)
    if extra:
        raise CorruptMetadataError(f"{where}: unexpected field(s) {', '.join(extra)}")
    try:
        return converter.structure(obj, cls)
    except Exception as exc:
        problems = "; ".join(
            _describe(line, cls) for line in cattrs.transform_error(exc, "$", _say)
        )
        raise CorruptMetadataError(f"{where}: {problems}") from None


def _say(exc: BaseException, _: type | None) -> str:
    if isinstance(exc, (TypeError, ValueError)) and str(exc):
        return str(exc)
    return format_exception(exc, None)


def _describe(line: str, cls: type[object]) -> str:
    """``"problem @ $.size"`` → ``"field Size: problem"`` (on-disk key names)."""
    problem, _, path = line.rpartition(" @ $")
    if not problem:
        return line
    key, sep, rest = path.lstrip(".").partition("[")
    if cls not in _OWN_KEYS:
        key = _go_name(key)
    return f"field {key}{sep}{rest}: {problem}"


def load(dir_fd: int, name: str, cls: type[T], *, where: str) -> T:
    """Read and parse ``name``; a missing or unreadable file is a CorruptMetadataError too."""
    try:
        data = fs.read_small(dir_fd, name, _META_LIMIT)
    except FileNotFoundError:
        raise CorruptMetadataError(f"{where}: the file is missing") from None
    except ValueError as exc:
        raise CorruptMetadataError(f"{where}: {exc}") from None
    except OSError as exc:
        raise fs.os_error(exc, f"cannot read {where}") from None
    return loads(data, cls, where=where)


def store(dir_fd: int, name: str, value: Metadata) -> None:
    """Write a metadata file atomically and durably (raises OSError)."""
    fs.write_atomic(dir_fd, name, dumps(value))


# -- revision counter -----------------------------------------------------------------------------


def encode_counter(value: int) -> bytes:
    if not 0 <= value <= MAX_COUNTER:
        raise ValueError(f"revision counter must be between 0 and {MAX_COUNTER}, got {value}")
    return str(value).encode("ascii").ljust(COUNTER_FILE_SIZE, b"\0")


def decode_counter(data: bytes, *, where: str) -> int:
    if len(data) != COUNTER_FILE_SIZE:
        raise CorruptMetadataError(
            f"{where}: it is {len(data)} bytes long, expected {COUNTER_FILE_SIZE}"
        )
    digits = data.rstrip(b"\0")
    if not digits or not digits.isdigit() or not digits.isascii():
        shown = digits[:32].decode("ascii", "backslashreplace")
        raise CorruptMetadataError(
            f"{where}: expected ASCII decimal digits padded with NUL bytes, got {shown!r}"
        )
    if len(digits) > len(str(MAX_COUNTER)) or int(digits) > MAX_COUNTER:
        raise CorruptMetadataError(f"{where}: the counter is larger than {MAX_COUNTER}")
    return int(digits)


def load_counter(dir_fd: int, name: str, *, where: str) -> int:
    try:
        data = fs.read_small(dir_fd, name, COUNTER_FILE_SIZE * 2)
    except FileNotFoundError:
        raise CorruptMetadataError(f"{where}: the file is missing") from None
    except ValueError as exc:
        raise CorruptMetadataError(f"{where}: {exc}") from None
    except OSError as exc:
        raise fs.os_error(exc, f"cannot read {where}") from None
    return decode_counter(data, where=where)


def store_counter(dir_fd: int, name: str, value: int) -> None:
    """Persist the counter atomically and durably (raises OSError)."""
    fs.write_atomic(dir_fd, name, encode_counter(value))
