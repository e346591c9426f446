"""The admin HTTP API: a quart-trio app served by hypercorn (the web stack lives only here).

* :mod:`.app` — the app under ``/v1`` over :class:`~lhtrio.manager.objects.Objects`, its routes in
  :mod:`.volume_routes`, :mod:`.member_routes`, :mod:`.node_routes`, :mod:`.setting_routes`;
* :mod:`.surface` — every operation, declared once; :mod:`.openapi` — the OpenAPI document
  made from it, served at ``/v1/openapi.json``;
* :mod:`.fields`, :mod:`.bodies`, :mod:`.action_bodies`, :mod:`.node_bodies` — request bodies
  declared once, parsed and checked (sans-I/O); :mod:`.query` — ``If-Match`` and list filters;
* :mod:`.access` — the token check and the access log;
* :mod:`.problems` — errors as ``{"code", "message", "details"}`` with their HTTP status;
* :mod:`.server` — :func:`serve_api` on hypercorn's trio worker;
* :mod:`.token` — the bearer token: a file the operator gives, or ``DATA_DIR/api-token``.

The endpoints, shapes and errors are in ``docs/api.md``.
"""

from __future__ import annotations

from lhtrio.api.server import check_tls, serve_api
from lhtrio.api.token import node_token, read_token

__all__ = ["check_tls", "node_token", "read_token", "serve_api"]
