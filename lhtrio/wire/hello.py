"""The hello exchange of protocol v1, as pure functions.

The client opens every connection with :class:`~lhtrio.wire.messages.Hello`, naming the volume
(and optionally the instance) it expects to reach. Only an operator's tool that does not know the
volume yet sends an empty volume (it reads the server's identity from the answer); engines and
replicas always name it. The server answers with
:class:`~lhtrio.wire.messages.HelloOk` carrying the chosen version and its own identity, or with an
error reply (``VERSION_MISMATCH`` or ``IDENTITY_MISMATCH``) and closes. The client checks the
answer too, so a reused port can never let an engine write into another volume's replica.
"""

from __future__ import annotations

from typing import Final

import attrs

from lhtrio.errors import IdentityMismatchError, VersionMismatchError
from lhtrio.wire.messages import SUPPORTED_VERSIONS, Hello, HelloOk

__all__ = ["Identity", "LOCAL", "answer_hello", "check_hello_ok"]

#: The feature a client announces to learn the server's same-host address (``HelloOk.local``).
LOCAL: Final = "local"


@attrs.frozen(kw_only=True)
class Identity:
    """Who a server is: the volume it serves ("" for node-level services) and its instance name.

    ``local``: the address where the same server also answers clients on its host (see
    :class:`~lhtrio.wire.messages.HelloOk`); set by the server that listens there.
    """

    volume: str = ""
    instance: str = ""
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
    _check_identity(hello.volume, hello.instance, me.volume, me.instance)
    supported = (*me.features, LOCAL) if me.local else me.features
    features = tuple(f for f in hello.features if f in supported)
    return HelloOk(
        version=max(common),
        volume=me.volume,
        instance=me.instance,
        features=features,
        local=me.local if LOCAL in features else "",
    )


def check_hello_ok(ok: HelloOk, hello: Hello) -> None:
    """The client's check of the server's answer to its ``hello``."""
    if ok.version not in hello.versions:
        raise VersionMismatchError(
            f"server chose protocol version {ok.version}, we offered {list(hello.versions)}"
        )
    _check_identity(hello.volume, hello.instance, ok.volume, ok.instance)


def _check_identity(want_volume: str, want_instance: str, volume: str, instance: str) -> None:
    if volume and want_volume and want_volume != volume:
        raise IdentityMismatchError(
            f"this endpoint serves volume {volume!r} (instance {instance!r}), "
            f"not volume {want_volume!r}: check the address"
        )
    if want_instance and want_instance != instance:
        raise IdentityMismatchError(
            f"this endpoint is instance {instance!r} of volume {volume!r}, "
            f"not instance {want_instance!r}: check the address"
        )
