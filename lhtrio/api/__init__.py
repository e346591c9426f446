"""The admin HTTP API: a quart-trio app served by hypercorn (the web stack lives only here).

* :mod:`.app` — the routes under ``/v1`` over :class:`~lhtrio.manager.objects.Objects`;
* :mod:`.bodies` — request bodies parsed and checked (sans-I/O);
* :mod:`.problems` — errors as ``{"code", "message", "details"}`` with their HTTP status;
* :mod:`.server` — :func:`serve_api` on hypercorn's trio worker;
* :mod:`.token` — the bearer token: a file the operator gives, or ``DATA_DIR/api-token``.

The endpoints, shapes and errors are in ``docs/api.md``.
"""

from __future__ import annotations

from lhtrio.api.server import serve_api
from lhtrio.api.token import node_token, read_token

__all__ = ["node_token", "read_token", "serve_api"]
