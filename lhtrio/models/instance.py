"""What a node's instance manager reports: instances, disks, the node itself.

The records callers read (``lhtrio im``, the manager, the API): frozen values, no trio, no I/O.
The node's supervisor (:mod:`lhtrio.instances.supervisor`) builds them;
:mod:`lhtrio.wire.calls.node` says which call returns which.
"""

from __future__ import annotations

import enum

import attrs

from lhtrio.models.volume import Mode

__all__ = [
    "DiskStatus",
    "Instance",
    "InstanceKind",
    "InstanceState",
    "InstanceWatch",
    "LogLines",
    "NodeInfo",
]


class InstanceKind(enum.Enum):
    ENGINE = "engine"
    REPLICA = "replica"


class InstanceState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


@attrs.frozen(kw_only=True)
class Instance:
    """An engine or replica instance as its node sees it.

    ``replicas``, ``frontend``, ``health``, ``replica_modes`` and ``current_size`` are an
    engine's (None or 0 for a replica); ``directory`` is a replica's (None for an engine).
    ``started`` is epoch seconds (0 until it runs); ``health`` is the engine's view of its
    replicas (``healthy``, ``degraded``, ``faulted``; empty while its volume is not open), and
    ``replica_modes`` each replica's mode by address, as the engine links it (``tcp://HOST:PORT``;
    None while its volume is not open). ``current_size`` is the open volume's size in bytes (it
    grows when the volume is expanded; 0 while not open). ``salvage``: the engine was started
    with salvage (it serves from the best replica even if none qualified). The node's instance
    watch changes whenever an engine's replica modes do.
    """

    name: str
    type: InstanceKind
    volume: str
    size: int
    state: InstanceState
    error: str = ""
    port: int = 0
    address: str = ""
    started: float = 0.0
    replicas: list[str] | None = None
    frontend: str | None = None
    health: str | None = None
    directory: str | None = None
    replica_modes: dict[str, Mode] | None = None
    current_size: int = 0
    salvage: bool = False

    @property
    def state_text(self) -> str:
        """``running``, or for an engine ``running (degraded)`` when its volume is not healthy."""
        if self.health and self.health != "healthy" and self.state is InstanceState.RUNNING:
            return f"{self.state.value} ({self.health})"
        return self.state.value


@attrs.frozen(kw_only=True)
class DiskStatus:
    """A disk of a node: its space, and the replicas scheduled on it (name -> directory)."""

    uuid: str
    path: str
    capacity: int
    available: int
    scheduled: int
    replicas: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class NodeInfo:
    name: str
    address: str
    nbd: str
    port_range: str
    ports_in_use: list[int]
    instances: int
    disks: list[DiskStatus]


@attrs.frozen(kw_only=True)
class InstanceWatch:
    """The instance list at ``version`` (which changes whenever an instance does).

    ``complete``: ``instances`` is every instance; else (the caller named an earlier answer the
    node still remembers, ``since``) only those that differ from that answer, and ``removed``
    the names that were in it and are gone. ``answer`` names this answer for the next call.
    """

    version: int
    instances: list[Instance]
    complete: bool = True
    removed: list[str] = attrs.field(factory=list)
    answer: int = 0


@attrs.frozen(kw_only=True)
class LogLines:
    """Log lines of an instance, each with its sequence number (ask again after the last)."""

    lines: list[tuple[int, str]]
