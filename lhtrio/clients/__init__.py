"""Typed clients of the control endpoints, on top of :class:`lhtrio.net.RpcClient`.

One class per service (:class:`~lhtrio.clients.node.NodeClient`, ...), one method per call of
its table (:mod:`lhtrio.wire.calls`): typed arguments in, the declared result type out. They
own no connection: wrap an open ``RpcClient`` (``NodeClient(rpc)``), so that the caller keeps
the connection's lifetime and can batch data requests on the same one.
"""

from __future__ import annotations

from lhtrio.clients.base import invoke

__all__ = ["invoke"]
