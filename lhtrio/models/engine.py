"""What an engine reports: the volume, its replicas as it links them, snapshots, rebuilds.

Frozen records with no trio and no I/O, read by ``lhtrio ctl``, the node, the manager and the
API; :mod:`lhtrio.wire.calls.engine` says which call returns which.
"""

from __future__ import annotations

import datetime as dt
import enum

import attrs

from lhtrio.models.replica import TransferCounters
from lhtrio.models.volume import FrontendState, Health, Mode

__all__ = [
    "FrontendInfo",
    "RebuildProgress",
    "RebuildState",
    "ReplicaLink",
    "ResyncState",
    "ResyncStatus",
    "SalvageResult",
    "Snapshot",
    "VolumeInfo",
]


@attrs.frozen(kw_only=True)
class FrontendInfo:
    state: FrontendState
    address: str


class RebuildState(enum.Enum):
    STARTING = "starting"
    SYNCING = "syncing"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"


@attrs.frozen(kw_only=True)
class RebuildProgress(TransferCounters):
    """One rebuild of replica ``address`` from ``source``. ``delta``: only ranges the away log
    named were compared in the file the target had; ``seconds`` so far (or in all, once ended)."""

    address: str
    source: str = ""
    state: RebuildState = RebuildState.STARTING
    seconds: float = 0.0
    delta: bool = False
    error: str = ""

    @property
    def running(self) -> bool:
        return self.state not in (RebuildState.DONE, RebuildState.FAILED)


@attrs.frozen(kw_only=True)
class ReplicaLink:
    """A replica as its engine links it: ``link`` is ``unix`` or ``tcp``; ``rebuild`` while it
    is the target of one."""

    address: str
    mode: Mode
    error: str = ""
    link: str = ""
    rebuild: RebuildProgress | None = None


class ResyncState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@attrs.frozen(kw_only=True)
class ResyncStatus:
    """What the engine's start-up resync of write-intent regions did."""

    state: ResyncState = ResyncState.IDLE
    source: str = ""
    total_bytes: int = 0
    done_bytes: int = 0
    differing_blocks: int = 0
    error: str = ""


@attrs.frozen(kw_only=True)
class VolumeInfo:
    """A volume as its engine serves it (``state`` is its health)."""

    volume: str
    size: int
    state: Health
    frontend: FrontendInfo
    replicas: list[ReplicaLink]
    resync: ResyncStatus | None = None


@attrs.frozen(kw_only=True)
class Snapshot:
    """A snapshot of a volume (names are snapshot names); ``size`` is its allocated bytes;
    ``in_chain`` is false once it was removed from the live chain and awaits a purge."""

    name: str
    parent: str
    children: list[str]
    created: dt.datetime
    user_created: bool
    removed: bool
    size: int
    labels: dict[str, str]
    in_chain: bool


@attrs.frozen(kw_only=True)
class SalvageResult:
    """The replica salvage chose, why, and the volume after."""

    address: str
    reason: str
    info: VolumeInfo
