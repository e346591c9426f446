"""The Engine kind: the one process that serves a volume, as the manager asks for it and sees it.

Longhorn's Engine CRD (``longhorn-facts.md`` §6.1): the spec says which volume, on which node,
running or not, and which replicas (name -> ``host:port``) it should link; the status is what the
engine's node reports — its state and address, and its view of each replica's mode, which the
volume's robustness is computed from (:func:`lhtrio.models.cluster.volume.robustness`).
Names are ``<volume>-e-<n>`` (:func:`engine_name`).
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from lhtrio.models.cluster.instance import DesireState, InstanceState
from lhtrio.models.cluster.meta import Condition, ObjectMeta
from lhtrio.models.cluster.volume import Frontend
from lhtrio.models.volume import Mode

__all__ = ["Engine", "EngineSpec", "EngineStatus", "RebuildStatus", "engine_name"]


def engine_name(volume: str, index: int = 0) -> str:
    """``<volume>-e-<index>``, as Longhorn names engines."""
    return f"{volume}-e-{index}"


@attrs.frozen(kw_only=True)
class EngineSpec:
    """``volume_size`` in bytes; ``replica_address_map``: replica name -> ``host:port`` of the
    replicas the engine should link; ``salvage_requested``: start by choosing the best of the
    failed replicas (every one failed)."""

    volume_name: str
    volume_size: int
    node_id: str = ""
    desire_state: DesireState = DesireState.STOPPED
    replica_address_map: dict[str, str] = attrs.field(factory=dict)
    salvage_requested: bool = False
    frontend: Frontend = Frontend.NBD
    disable_frontend: bool = False


@attrs.frozen(kw_only=True)
class RebuildStatus:
    """A replica's rebuild as its engine last reported it (Longhorn's ``RebuildStatus``, plus the
    bytes, so a client can tell a rate): ``progress`` in percent (0-100), ``state`` the engine's
    (``starting``, ``syncing``, ``verifying``, ``done``, ``failed``), ``done_bytes`` of
    ``total_bytes`` gone through so far (sent, compared or known equal)."""

    is_rebuilding: bool = False
    progress: int = 0
    state: str = ""
    error: str = ""
    from_replica_address: str = ""
    done_bytes: int = 0
    total_bytes: int = 0


@attrs.frozen(kw_only=True)
class EngineStatus:
    """``endpoint``: the URI clients attach to (``nbd://...``), empty while not served;
    ``replica_mode_map``: replica name -> its mode in the engine;
    ``current_replica_address_map``: the replicas the engine links now;
    ``rebuild_status``: replica name -> its rebuild, running or the last one (read again every
    second while one runs: ``lhtrio.manager.instance_control``)."""

    owner_id: str = ""
    current_state: InstanceState = InstanceState.STOPPED
    ip: str = ""
    port: int = 0
    started: bool = False
    endpoint: str = ""
    current_size: int = 0
    current_replica_address_map: dict[str, str] = attrs.field(factory=dict)
    replica_mode_map: dict[str, Mode] = attrs.field(factory=dict)
    rebuild_status: dict[str, RebuildStatus] = attrs.field(factory=dict)
    salvage_executed: bool = False
    conditions: tuple[Condition, ...] = ()


@attrs.frozen(kw_only=True)
class Engine:
    KIND: ClassVar[str] = "Engine"

    meta: ObjectMeta
    spec: EngineSpec
    status: EngineStatus = attrs.field(factory=EngineStatus)
