"""The etcd store's format, sans-I/O: store URLs, the key layout, and documents to and from
etcd's v3 JSON gateway (keys and values base64, 64-bit numbers as decimal strings).

**Layout.** Object ``NAME`` of kind ``KIND`` is the key ``/PREFIX/KIND/NAME`` (``PREFIX`` is
``lhtrio`` unless the URL names another: several clusters can share one etcd); its value is the
document as compact JSON *without* ``metadata.resourceVersion``, which is the key's
``mod_revision`` and is added on every read. A kind is the key range ``[/PREFIX/KIND/,
/PREFIX/KIND0)``: the slash ends the kind, so ``Volume`` never reaches into ``VolumeAttachment``.
Names cannot hold ``/`` (:func:`lhtrio.manager.store.rules.check_key`), so a key has exactly one
object.

**Revisions** are etcd's: a write's revision is the header revision of its transaction's
answer, an object's ``resourceVersion`` its ``mod_revision``, a list's revision the header
revision of its first page (later pages are read at that revision).

**Leases.** A ``NodeLease`` object lives only as long as its holder renews it: each write of one
is attached to an etcd lease whose TTL is the object's ``leaseDurationSeconds``
(:func:`lease_ttl`), so a dead node's lease leaves etcd by itself and watchers see it DELETED.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Final

import attrs

from lhtrio.errors import ConflictError, CorruptMetadataError, InvalidArgumentError
from lhtrio.manager.store.api import Document, EventType, WatchEvent
from lhtrio.manager.store.rules import metadata
from lhtrio.models.cluster.lease import NodeLease, NodeLeaseSpec

__all__ = [
    "DEFAULT_PREFIX",
    "EtcdTarget",
    "Json",
    "compare_created",
    "compare_version",
    "conflict",
    "decode_kv",
    "delete_op",
    "error_message",
    "is_compacted",
    "is_future",
    "key_after",
    "kind_range",
    "lease_ttl",
    "object_key",
    "parse_etcd_url",
    "probe_request",
    "put_op",
    "revision_of",
    "stamp",
    "watch_events",
    "watch_request",
]

#: A JSON object as the gateway reads and writes it.
Json = dict[str, object]

DEFAULT_PREFIX: Final = "lhtrio"
#: A member's host: a name or an IPv4 address, or an IPv6 address in brackets.
_HOST: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_IPV6: Final = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_DEFAULT_LEASE_TTL: Final = NodeLeaseSpec().lease_duration_seconds


@attrs.frozen
class EtcdTarget:
    """Where an ``etcd://`` URL points: the members' base URLs, tried in turn, and the prefix."""

    endpoints: tuple[str, ...]
    prefix: str


def parse_etcd_url(url: str) -> EtcdTarget:
    """``etcd://HOST:PORT[,HOST:PORT...][/PREFIX]``; InvalidArgumentError saying what is wrong."""
    scheme, sep, rest = url.partition("://")
    if scheme != "etcd" or not sep:
        raise InvalidArgumentError(f"not an etcd store URL: {url!r} (etcd://HOST:PORT)")
    members, _, prefix = rest.partition("/")
    prefix = prefix.strip("/") or DEFAULT_PREFIX
    bad = [c for c in prefix if not (c.isascii() and (c.isalnum() or c in "-_."))]
    if bad or prefix in {".", ".."}:
        raise InvalidArgumentError(
            f"bad key prefix {prefix!r} in {url!r}: letters, digits, '-', '_' and '.' only"
        )
    endpoints = []
    for member in members.split(","):
        host, colon, port = member.rpartition(":")
        host_ok = bool(_HOST.fullmatch(host) or _IPV6.fullmatch(host))
        if not (colon and host_ok and port.isdigit() and 0 < int(port) < 65536):
            raise InvalidArgumentError(
                f"bad etcd member {member!r} in {url!r}: give HOST:PORT[,HOST:PORT...]"
            )
        endpoints.append(f"http://{host}:{int(port)}")
    return EtcdTarget(tuple(endpoints), prefix)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise CorruptMetadataError(f"etcd answered no {where}")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise CorruptMetadataError(f"etcd answered a {where} that is not base64") from None


def object_key(prefix: str, kind: str, name: str) -> str:
    """The base64 key of one object (kind and name already checked)."""
    return _b64(f"/{prefix}/{kind}/{name}".encode())


def key_after(key: object) -> str:
    """The base64 key right after the base64 ``key`` (where the next page of a list starts)."""
    return _b64(_unb64(key, "key") + b"\x00")


def kind_range(prefix: str, kind: str) -> tuple[str, str]:
    """The base64 ``key`` and ``range_end`` holding every object of ``kind``."""
    return _b64(f"/{prefix}/{kind}/".encode()), _b64(f"/{prefix}/{kind}0".encode())


def probe_request(prefix: str) -> Json:
    """A read of (at most) one key: its answer's header says etcd's current revision."""
    return {"key": _b64(f"/{prefix}/".encode()), "count_only": True}


def _int(value: object, where: str) -> int:
    """One of the gateway's 64-bit numbers (a decimal string; absent means 0)."""
    if value is None:
        return 0
    try:
        return int(str(value))
    except ValueError:
        raise CorruptMetadataError(f"etcd answered a {where} that is not a number") from None


def revision_of(answer: Json) -> int:
    """The header revision of an answer (or of a watch result)."""
    header = answer.get("header")
    return _int(header.get("revision") if isinstance(header, dict) else None, "revision")


def stamp(document: Document, revision: int) -> Document:
    """A copy of ``document`` whose ``resourceVersion`` is ``revision``."""
    out = copy.deepcopy(document)
    metadata(out)["resourceVersion"] = str(revision)
    return out


def _encode(document: Document) -> str:
    stored = copy.deepcopy(document)
    metadata(stored).pop("resourceVersion", None)  # it is the key's mod_revision
    return _b64(json.dumps(stored, separators=(",", ":"), sort_keys=True).encode())


def decode_kv(kv: object, *, revision: int | None = None) -> Document:
    """The document of one key-value (``resourceVersion``: ``revision``, or its mod_revision)."""
    if not isinstance(kv, dict):
        raise CorruptMetadataError("etcd answered a key-value that is not an object")
    key = _unb64(kv.get("key"), "key").decode(errors="replace")
    try:
        value = json.loads(_unb64(kv.get("value", ""), f"value of {key}"))
    except ValueError as exc:
        raise CorruptMetadataError(f"store: {key} is not JSON: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("metadata"), dict):
        raise CorruptMetadataError(f"store: {key} is not a document")
    version = revision if revision is not None else _int(kv.get("mod_revision"), "mod_revision")
    metadata(value)["resourceVersion"] = str(version)
    return value


def lease_ttl(document: Document) -> int | None:
    """The TTL (seconds) of the etcd lease a write of ``document`` is attached to; None: the
    object stays until deleted. A NodeLease lasts its ``leaseDurationSeconds``."""
    if document.get("kind") != NodeLease.KIND:
        return None
    spec = document.get("spec")
    ttl = spec.get("leaseDurationSeconds") if isinstance(spec, dict) else None
    return ttl if isinstance(ttl, int) and ttl > 0 else _DEFAULT_LEASE_TTL


def compare_created(key: str) -> Json:
    """A transaction's condition: the key does not exist."""
    return {"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}


def compare_version(key: str, mod_revision: int) -> Json:
    """A transaction's condition: the key was last changed at ``mod_revision``."""
    return {"key": key, "result": "EQUAL", "target": "MOD", "mod_revision": str(mod_revision)}


def put_op(key: str, document: Document, lease: int | None) -> Json:
    put: Json = {"key": key, "value": _encode(document)}
    if lease is not None:
        put["lease"] = str(lease)
    return {"request_put": put}


def delete_op(key: str) -> Json:
    return {"request_delete_range": {"key": key}}


def conflict(kind: str, name: str, given: object) -> ConflictError:
    """What a lost compare-and-swap says (the rules' words: the caller reads again)."""
    return ConflictError(
        f"{kind} {name!r} was changed since it was read (version {given!r}, changed again "
        "meanwhile): read it again and retry"
    )


def error_message(answer: Json) -> str:
    """etcd's words for a failed call."""
    for field in ("message", "error"):
        text = answer.get(field)
        if isinstance(text, str) and text:
            return text
        if isinstance(text, dict):  # a watch stream's error: {"error": {"message": ...}}
            return error_message(text)
    return json.dumps(answer)[:200]


def is_compacted(answer: Json) -> bool:
    return "required revision has been compacted" in error_message(answer)


def is_future(answer: Json) -> bool:
    return "required revision is a future revision" in error_message(answer)


def watch_request(prefix: str, kind: str, after: int) -> Json:
    """The request of a watch of ``kind`` from the revision after ``after``: the previous value
    comes with every event (a DELETED event carries the object as it was last), and etcd tells
    an idle watch how far it is (progress notifications)."""
    key, end = kind_range(prefix, kind)
    return {
        "create_request": {
            "key": key,
            "range_end": end,
            "start_revision": str(after + 1),
            "prev_kv": True,
            "progress_notify": True,
        }
    }


def watch_events(result: Json) -> list[WatchEvent]:
    """The events of one watch result: a PUT of a new key is ADDED, of an existing one
    MODIFIED; a DELETE (by the store, or a lease that ran out) is DELETED with the object as it
    was last, at the deletion's revision."""
    events = []
    raw_events = result.get("events") or []
    if not isinstance(raw_events, list):
        raise CorruptMetadataError("etcd answered watch events that are not a list")
    for raw in raw_events:
        if not isinstance(raw, dict):
            raise CorruptMetadataError("etcd answered a watch event that is not an object")
        kv = raw.get("kv")
        if not isinstance(kv, dict):
            raise CorruptMetadataError("etcd answered a watch event without its key")
        revision = _int(kv.get("mod_revision"), "mod_revision")
        if raw.get("type", "PUT") == "DELETE":
            prev = raw.get("prev_kv")
            document = decode_kv(prev, revision=revision) if prev else _bare(kv, revision)
            events.append(WatchEvent(EventType.DELETED, document, revision))
        else:
            kind = (
                EventType.ADDED if _int(kv.get("version"), "version") == 1 else EventType.MODIFIED
            )
            events.append(WatchEvent(kind, decode_kv(kv), revision))
    return events


def _bare(kv: Json, revision: int) -> Document:
    """A deleted object whose last value etcd no longer has (compacted): its kind and name."""
    key = _unb64(kv.get("key"), "key").decode(errors="replace")
    parts = key.rsplit("/", 2)
    if len(parts) != 3:
        raise CorruptMetadataError(f"etcd answered a deletion of {key!r}, not an object's key")
    _, kind, name = parts
    return {"kind": kind, "metadata": {"name": name, "resourceVersion": str(revision)}}
