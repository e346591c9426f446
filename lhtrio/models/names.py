"""Names and labels: what a volume, an instance, a snapshot or a label may be called.

The rules are checked where a name enters (a command line, a control call, a hello) and again by
the component that turns it into something durable (a file name, a metadata file), always by
these functions, so the two never disagree. Each raises
:class:`~lhtrio.errors.InvalidArgumentError` naming the value and the rule it breaks.

* **Volume and instance names** become export names, directory names and log fields: ASCII
  letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit; a volume at most 63
  characters (a DNS label, as Kubernetes names volumes), an instance at most 128 (room for a
  prefix such as ``engine-``).
* **Snapshot names** become file names (``volume-snap-NAME.img.checksum.tmp`` is the longest):
  1-64 characters, no ``/``, no ``..``, no leading ``-``, no control characters, valid UTF-8,
  and at most :data:`MAX_SNAPSHOT_BYTES` bytes once encoded, so every file name made from it
  stays within the file system's 255 bytes (a limit in bytes, not characters).
* **Labels** follow Kubernetes: at most :data:`MAX_LABELS`; a key is an optional DNS-subdomain
  prefix and ``/``, then a name of at most 63 characters; a value is empty or a name of at most 63
  characters. Bounded this way a snapshot's metadata stays a few KiB.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Final

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.replica import snapshot_disk

__all__ = [
    "MAX_VOLUME_NAME",
    "MAX_INSTANCE_NAME",
    "MAX_SNAPSHOT_NAME",
    "MAX_SNAPSHOT_BYTES",
    "MAX_LABELS",
    "volume_name_problem",
    "validate_volume_name",
    "validate_instance_name",
    "snapshot_name_problem",
    "validate_snapshot_name",
    "validate_labels",
]

MAX_VOLUME_NAME: Final = 63
MAX_INSTANCE_NAME: Final = 128
MAX_SNAPSHOT_NAME: Final = 64
NAME_MAX: Final = 255  # bytes in one file name (Linux)
#: A snapshot's file name + ``.checksum.tmp``: the longest file name a snapshot gets.
MAX_SNAPSHOT_BYTES: Final = NAME_MAX - len(snapshot_disk("") + ".checksum.tmp")
MAX_LABELS: Final = 64

_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _ident_problem(name: object, limit: int) -> str | None:
    if not isinstance(name, str):
        return f"expected a string, got {type(name).__name__}"
    if not name:
        return "it is empty"
    if len(name) > limit:
        return f"it is {len(name)} characters long, the limit is {limit}"
    if not _IDENT.fullmatch(name):
        return "use ASCII letters, digits, '.', '_' and '-', starting with a letter or a digit"
    return None


def volume_name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as a volume name, or None."""
    return _ident_problem(name, MAX_VOLUME_NAME)


def validate_volume_name(name: object) -> str:
    problem = volume_name_problem(name)
    if problem is not None:
        raise InvalidArgumentError(f"invalid volume name {name!r}: {problem}")
    assert isinstance(name, str)
    return name


def validate_instance_name(name: object, *, what: str = "instance") -> str:
    problem = _ident_problem(name, MAX_INSTANCE_NAME)
    if problem is not None:
        raise InvalidArgumentError(f"invalid {what} name {name!r}: {problem}")
    assert isinstance(name, str)
    return name


def snapshot_name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as a snapshot name, or None."""
    if not isinstance(name, str):
        return f"expected a string, got {type(name).__name__}"
    if not name:
        return "it is empty"
    if len(name) > MAX_SNAPSHOT_NAME:
        return f"it is {len(name)} characters long, the limit is {MAX_SNAPSHOT_NAME}"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode text (it holds a lone surrogate)"
    if size > MAX_SNAPSHOT_BYTES:
        return (
            f"it is {size} bytes long in UTF-8, the limit is {MAX_SNAPSHOT_BYTES} "
            f"(file names are limited to {NAME_MAX} bytes)"
        )
    if "/" in name:
        return "it contains '/'"
    if name in (".", ".."):
        return "it is a relative directory name"
    if ".." in name:
        return "it contains '..'"
    if name.startswith("-"):
        return "it starts with '-'"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "it contains a control character"
    return None


def validate_snapshot_name(name: object) -> str:
    problem = snapshot_name_problem(name)
    if problem is not None:
        raise InvalidArgumentError(f"invalid snapshot name {name!r}: {problem}")
    assert isinstance(name, str)
    return name


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str):
        return f"expected a string, got {type(key).__name__}"
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return "its prefix must be a DNS subdomain of at most 253 characters"
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            "its name must be 1-63 ASCII letters, digits, '.', '_' or '-', starting and "
            "ending with a letter or a digit"
        )
    return None


def _value_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if value and (len(value) > 63 or not _LABEL_NAME.fullmatch(value)):
        return (
            "it must be empty or 1-63 ASCII letters, digits, '.', '_' or '-', starting and "
            "ending with a letter or a digit"
        )
    return None


def validate_labels(labels: object) -> dict[str, str]:
    """``labels`` as a dict if every key and value follows the rules; else raise."""
    if not isinstance(labels, Mapping):
        raise InvalidArgumentError(f"labels must map strings to strings, got {labels!r}")
    if len(labels) > MAX_LABELS:
        raise InvalidArgumentError(f"{len(labels)} labels given, the limit is {MAX_LABELS}")
    for key, value in labels.items():
        problem = _key_problem(key)
        if problem is not None:
            raise InvalidArgumentError(f"invalid label key {key!r}: {problem}")
        problem = _value_problem(value)
        if problem is not None:
            raise InvalidArgumentError(f"invalid value {value!r} of label {key!r}: {problem}")
    return dict(labels)
