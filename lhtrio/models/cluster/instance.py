"""What Engine and Replica objects share: the state asked of an instance and the state seen.

Longhorn's ``InstanceSpec``/``InstanceStatus`` (``longhorn-facts.md`` §6.1): the owning node's
manager starts or stops the instance to reach ``desire_state`` and reports ``current_state``.
``UNKNOWN`` is what the manager writes when the instance's node is down: nobody can see it.
"""

from __future__ import annotations

import enum

__all__ = ["DesireState", "InstanceState"]


class DesireState(enum.Enum):
    """What an instance should be doing (Longhorn's ``desireState``)."""

    RUNNING = "running"
    STOPPED = "stopped"


class InstanceState(enum.Enum):
    """What an instance was last seen doing (Longhorn's ``currentState``)."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"
    UNKNOWN = "unknown"
