"""The hello exchange of protocol v1, as pure functions.

The client opens every connection with :class:`~lhtrio.wire.messages.Hello`, naming the volume
(and optionally the instance) it expects to reach. Only an operator's tool that does not know the
volume yet sends an empty volume (it reads the server's identity from the answer), and only to
a server that allows it (an engine's control endpoint, a node); engines always name the volume,
and a replica refuses a hello that does not. The server answers with
:class:`~lhtrio.wire.messages.HelloOk` carrying the chosen version, its own identity and its
*role* (``replica``, ``engine``, ``node``), or with an error reply (``VERSION_MISMATCH`` or
``IDENTITY_MISMATCH``) and closes. The client checks the answer too: the volume and instance it
asked for and, when it asked for one, the role. So a reused port can never let an engine write
into another volume's replica, nor take an engine's control endpoint (which answers to the same
volume name) for a replica, nor an operator's tool read an engine's answers from a replica.

Names in a hello are checked by :mod:`lhtrio.models.names`: a malformed volume or instance name
is an identity mismatch, refused before anything else happens.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from lhtrio.errors import IdentityMismatchError, InvalidArgumentError, VersionMismatchError
from lhtrio.models.names import validate_instance_name, validate_volume_name
from lhtrio.wire.messages import SUPPORTED_VERSIONS, Hello, HelloOk

__all__ = ["Identity", "LOCAL", "Role", "answer_hello", "check_hello_ok"]

#: The feature a client announces to learn the server's same-host address (``HelloOk.local``).
LOCAL: Final = "local"


class Role(enum.Enum):
    """What a server is, as its hello answer says (``HelloOk.role``)."""

    REPLICA = "replica"
    ENGINE = "engine"
    NODE = "node"


@attrs.frozen(kw_only=True)
class Identity:
    """Who a server is: the volume it serves ("" for node-level services), its instance name and
    its role.

    ``unnamed``: whether a client may leave the volume out of its hello (operator tools talking
    to an engine's control endpoint or a node do; a replica takes only clients that name it).
    ``local``: the address where the same server also answers clients on its host (see
    :class:`~lhtrio.wire.messages.HelloOk`); set by the server that listens there.
    """

    volume: str = ""
    instance: str = ""
    role: Role | None = None
    unnamed: bool = True
    features: tuple[str, ...] = ()
    local: str = ""


def answer_hello(hello: Hello, me: Identity) -> HelloOk:
    """The server's answer to ``hello``; raises a :class:`~lhtrio.errors.HandshakeError`."""
    common = set(hello.versions) & set(SUPPORTED_VERSIONS)
    if not common:
        raise VersionMismatchError(
            f"client {hello.client or '(unnamed)'} speaks protocol versions "
            f"{list(hello.versions)}, this server speaks {list(SUPPORTED_VERSIONS)}"
        )
    _check_names(hello.volume, hello.instance)
    if not hello.volume and me.volume and not me.unnamed:
        kind = me.role.value if me.role is not None else "endpoint"
        raise IdentityMismatchError(
            f"this endpoint is {_article(kind)} {kind} of volume {me.volume!r} (instance "
            f"{me.instance!r}); it takes only clients that name the volume in their hello "
            "(an engine does): check the address"
        )
    _check_identity(hello.volume, hello.instance, me.volume, me.instance, me.role)
    supported = (*me.features, LOCAL) if me.local else me.features
    features = tuple(f for f in hello.features if f in supported)
    return HelloOk(
        version=max(common),
        volume=me.volume,
        instance=me.instance,
        features=features,
        local=me.local if LOCAL in features else "",
        role=me.role.value if me.role is not None else "",
    )


def check_hello_ok(ok: HelloOk, hello: Hello, *, role: Role | None = None) -> None:
    """The client's check of the server's answer to its ``hello`` (and, given, of its role)."""
    if ok.version not in hello.versions:
        raise VersionMismatchError(
            f"server chose protocol version {ok.version}, we offered {list(hello.versions)}"
        )
    if role is not None and ok.role != role.value:
        what = f"{_article(ok.role)} {ok.role}" if ok.role else "no lhtrio " + role.value
        raise IdentityMismatchError(
            f"this endpoint is {what} (volume {ok.volume!r}, instance {ok.instance!r}), "
            f"not {_article(role.value)} {role.value}: check the address"
        )
    if hello.volume and ok.volume != hello.volume:
        raise IdentityMismatchError(
            f"this endpoint serves volume {ok.volume!r} (instance {ok.instance!r}), "
            f"not volume {hello.volume!r}: check the address"
        )
    _check_identity(hello.volume, hello.instance, ok.volume, ok.instance, None)


def _check_names(volume: str, instance: str) -> None:
    try:
        if volume:
            validate_volume_name(volume)
        if instance:
            validate_instance_name(instance)
    except InvalidArgumentError as exc:
        raise IdentityMismatchError(f"malformed hello: {exc}") from None


def _check_identity(
    want_volume: str, want_instance: str, volume: str, instance: str, role: Role | None
) -> None:
    if volume and want_volume and want_volume != volume:
        raise IdentityMismatchError(
            f"this endpoint serves volume {volume!r} ({_who(role, instance)}), not volume "
            f"{want_volume!r}: check the address"
        )
    if want_instance and want_instance != instance:
        raise IdentityMismatchError(
            f"this endpoint is instance {instance!r} of volume {volume!r}, not instance "
            f"{want_instance!r}: check the address"
        )


def _who(role: Role | None, instance: str) -> str:
    kind = f"{role.value} " if role is not None else ""
    return f"{kind}instance {instance!r}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
