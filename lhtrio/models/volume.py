"""The states of a volume that its callers read: replica modes, health, frontend, long operation.

Enums only (no trio, no I/O). The engine sets them (:mod:`lhtrio.engine`); ``ctl``, the node and,
later, the manager and the API read them. Each value is the string the engine's control calls
answer with, so these values are part of the wire format: never change one.
"""

from __future__ import annotations

import enum

__all__ = ["FrontendState", "Health", "Mode", "VolumeOperation"]


class Mode(enum.Enum):
    """A replica's mode in a volume (Longhorn's): ``RW`` takes writes and serves reads, ``WO``
    (being rebuilt) takes writes only, ``ERR`` takes nothing and never comes back in this
    engine's life."""

    RW = "RW"
    WO = "WO"
    ERR = "ERR"


class Health(enum.Enum):
    """``healthy``: as many RW replicas as the volume should have; ``degraded``: fewer, but at
    least one; ``faulted``: none."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAULTED = "faulted"


class FrontendState(enum.Enum):
    """Whether the volume's frontend (NBD) serves clients."""

    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class VolumeOperation(enum.Enum):
    """The long operation a volume runs; they exclude each other (one at a time per volume).

    ``NONE``: none runs. Snapshots (and marking one removed) are not among them: they are short,
    run with I/O paused, and may happen while a replica is rebuilt. A rebuild is one operation
    from ``replica add`` until the replica is RW (or failed); the purge of system snapshots that
    follows it is another.
    """

    NONE = ""
    REBUILD = "rebuild"
    PURGE = "purge"
    EXPANSION = "expansion"
    REVERT = "revert"
    SALVAGE = "salvage"
