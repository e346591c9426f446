"""Where lhtrio connects and listens: the host's sockets, or a network the caller supplies.

Every TCP or Unix connection the product opens goes through :func:`lhtrio.net.client._connect`
and every listener through :func:`lhtrio.net.listeners.open_listeners`. Both ask
:data:`NETWORK` first: unset (production, always), they use trio's sockets; set, they use the
:class:`Network` it holds. That is the one seam the deterministic simulator
(:mod:`lhtrio.sim`) needs to run engines, replicas, instance managers and managers in one trio
run over in-memory streams it can delay, stall and cut. A context variable rather than a
parameter: the engine's links, a rebuild's calls to its source, the manager's calls to its node
all connect from deep inside, and trio tasks inherit the context of the task that started them,
so setting it once at the root of a simulated run covers everything below it and nothing else.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

import trio

from lhtrio.net.address import Address

__all__ = ["NETWORK", "Listener", "Network"]

Listener = trio.abc.Listener[trio.abc.Stream]


class Network(Protocol):
    async def connect(self, address: Address) -> trio.abc.Stream:
        """A stream connected to ``address``; OSError if nobody listens there."""

    async def listen(self, address: Address) -> tuple[list[Listener], Address]:
        """Listeners on ``address`` and the bound address (port 0 picks one);
        :class:`~lhtrio.errors.ConflictError` if it is taken."""


#: The network of the current task and the tasks it starts; ``None``: the host's sockets.
NETWORK: ContextVar[Network | None] = ContextVar("lhtrio_network", default=None)
