"""Test-build mutations: switches that break one of the engine's guarantees on purpose.

They exist to prove the no-acknowledged-write-lost checker is not blind (docs/reliability.md,
"Mutation check"): ``LHTRIO_MUTATION=no-flush-fanout`` (the engine makes nothing durable on its
replicas before it answers: it sends no flush — a client's, a sweep's or the one after a replica
failed — and answers it at once, and records no replica set, :mod:`lhtrio.engine.membership`)
or ``LHTRIO_MUTATION=no-stale-check`` (the start decision accepts a replica whose persisted
revision counter is behind the others'). This module is the only place that reads the variable,
once, at import; unset (always, outside the chaos tests) nothing changes. An unknown name is
refused when the engine starts (:func:`check`).
"""

from __future__ import annotations

import os

from lhtrio.errors import InvalidArgumentError

__all__ = ["NO_FLUSH_FANOUT", "NO_STALE_CHECK", "active", "check"]

NO_FLUSH_FANOUT = "no-flush-fanout"
NO_STALE_CHECK = "no-stale-check"
KNOWN = frozenset({NO_FLUSH_FANOUT, NO_STALE_CHECK})

_ACTIVE = frozenset(
    n.strip() for n in os.environ.get("LHTRIO_MUTATION", "").split(",") if n.strip()
)


def active(name: str) -> bool:
    """Whether the mutation ``name`` is switched on in this process."""
    return name in _ACTIVE


def check() -> frozenset[str]:
    """The mutations switched on; an unknown name is an :class:`InvalidArgumentError`."""
    unknown = _ACTIVE - KNOWN
    if unknown:
        raise InvalidArgumentError(
            f"LHTRIO_MUTATION names unknown mutations {', '.join(sorted(unknown))}: "
            f"the known ones are {', '.join(sorted(KNOWN))} (test builds only)"
        )
    return _ACTIVE
