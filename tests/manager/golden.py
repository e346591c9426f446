"""One realistic object of each kind, whose document is checked in under ``documents/``.

The documents are the store format written down: a change of the converter or of a model that
changes what is stored fails ``test_golden_documents``. After a deliberate change, rewrite them
with ``python -m tests.manager.golden`` and review the diff.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from lhtrio.manager.store.codec import to_document
from lhtrio.models.cluster import ClusterObject
from lhtrio.models.cluster.attachment import (
    AttachmentTicket,
    AttachmentTicketStatus,
    TicketParameters,
    TicketType,
    VolumeAttachment,
    VolumeAttachmentSpec,
    VolumeAttachmentStatus,
)
from lhtrio.models.cluster.engine import Engine, EngineSpec, EngineStatus, RebuildStatus
from lhtrio.models.cluster.event import Event, EventType, ObjectReference
from lhtrio.models.cluster.instance import DesireState, InstanceState
from lhtrio.models.cluster.lease import NodeLease, NodeLeaseSpec
from lhtrio.models.cluster.meta import Condition, ObjectMeta
from lhtrio.models.cluster.node import DiskSpec, DiskStatus, Node, NodeSpec, NodeStatus
from lhtrio.models.cluster.replica import Replica, ReplicaSpec, ReplicaStatus
from lhtrio.models.cluster.setting import Setting, SettingSpec, SettingStatus
from lhtrio.models.cluster.volume import (
    DataLocality,
    Robustness,
    Volume,
    VolumeSpec,
    VolumeState,
    VolumeStatus,
)
from lhtrio.models.volume import Mode

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 1, 2, 3, 5, 0, tzinfo=dt.UTC)
GiB = 1 << 30


def _meta(name: str, version: int, **labels: str) -> ObjectMeta:
    return ObjectMeta(
        name=name, resource_version=version, uid=f"uid-{name}", labels=labels, created=T0
    )


GOLDEN: dict[str, ClusterObject] = {
    "volume": Volume(
        meta=ObjectMeta(
            name="db-1",
            resource_version=42,
            uid="9b2f0c7e-volume",
            labels={"app": "db"},
            finalizers=("lhtrio.io",),
            created=T0,
        ),
        spec=VolumeSpec(
            size=GiB,
            number_of_replicas=3,
            node_id="n1",
            data_locality=DataLocality.BEST_EFFORT,
            disk_selector=("ssd",),
        ),
        status=VolumeStatus(
            owner_id="n1",
            state=VolumeState.ATTACHED,
            robustness=Robustness.DEGRADED,
            current_node_id="n1",
            conditions=(
                Condition(
                    type="Scheduled",
                    status=False,
                    reason="ReplicaSchedulingFailure",
                    message="no node of another zone has a disk that fits 1Gi",
                    last_transition=T1,
                ),
            ),
            last_degraded_at=T1,
            actual_size=52428800,
        ),
    ),
    "engine": Engine(
        meta=_meta("db-1-e-0", 43, volume="db-1"),
        spec=EngineSpec(
            volume_name="db-1",
            volume_size=GiB,
            node_id="n1",
            desire_state=DesireState.RUNNING,
            replica_address_map={
                "db-1-r-0a1b2c3d": "127.0.0.11:10001",
                "db-1-r-4e5f6071": "127.0.0.12:10001",
            },
        ),
        status=EngineStatus(
            owner_id="n1",
            current_state=InstanceState.RUNNING,
            ip="127.0.0.11",
            port=10010,
            started=True,
            endpoint="nbd://127.0.0.11:10809/db-1",
            current_size=GiB,
            current_replica_address_map={
                "db-1-r-0a1b2c3d": "127.0.0.11:10001",
                "db-1-r-4e5f6071": "127.0.0.12:10001",
            },
            replica_mode_map={"db-1-r-0a1b2c3d": Mode.RW, "db-1-r-4e5f6071": Mode.WO},
            rebuild_status={
                "db-1-r-4e5f6071": RebuildStatus(
                    is_rebuilding=True,
                    progress=37,
                    state="syncing",
                    from_replica_address="tcp://127.0.0.11:10001",
                    done_bytes=397284474,
                    total_bytes=1073741824,
                )
            },
        ),
    ),
    "replica": Replica(
        meta=_meta("db-1-r-0a1b2c3d", 44, volume="db-1"),
        spec=ReplicaSpec(
            volume_name="db-1",
            volume_size=GiB,
            node_id="n1",
            engine_name="db-1-e-0",
            disk_id="6c1f0d7a-disk",
            disk_path="/var/lib/lhtrio/n1",
            data_directory_name="db-1-0a1b2c3d",
            desire_state=DesireState.RUNNING,
            healthy_at=T0,
            last_healthy_at=T1,
            last_failed_at=T0,
            rebuild_retry_count=1,
        ),
        status=ReplicaStatus(
            owner_id="n1",
            current_state=InstanceState.RUNNING,
            ip="127.0.0.11",
            port=10001,
            started=True,
        ),
    ),
    "node": Node(
        meta=_meta("n1", 12),
        spec=NodeSpec(
            disks={
                "default": DiskSpec(
                    path="/var/lib/lhtrio/n1", storage_reserved=10 * GiB, tags=("ssd",)
                )
            },
            tags=("fast",),
            zone="zone-a",
            region="eu",
        ),
        status=NodeStatus(
            conditions=(
                Condition(type="Ready", status=True, reason="", message="", last_transition=T0),
                Condition(type="Schedulable", status=True, last_transition=T0),
            ),
            disk_status={
                "default": DiskStatus(
                    storage_available=80 * GiB,
                    storage_maximum=100 * GiB,
                    storage_scheduled=GiB,
                    scheduled_replica={"db-1-r-0a1b2c3d": GiB},
                    disk_uuid="6c1f0d7a-disk",
                    conditions=(Condition(type="Ready", status=True, last_transition=T0),),
                )
            },
            region="eu",
            zone="zone-a",
        ),
    ),
    "nodelease": NodeLease(
        meta=_meta("n1", 99),
        spec=NodeLeaseSpec(
            holder_identity="n1/4f1c",
            lease_duration_seconds=15,
            acquire_time=T0,
            renew_time=T1,
            lease_transitions=2,
        ),
    ),
    "setting": Setting(
        meta=_meta("default-replica-count", 3),
        spec=SettingSpec(value="2"),
        status=SettingStatus(applied=True),
    ),
    "volumeattachment": VolumeAttachment(
        meta=_meta("db-1", 45),
        spec=VolumeAttachmentSpec(
            volume="db-1",
            attachment_tickets={
                "csi-4f2a": AttachmentTicket(
                    id="csi-4f2a", type=TicketType.CSI_ATTACHER, node_id="n1", generation=1
                ),
                "snapshot-controller-db-1": AttachmentTicket(
                    id="snapshot-controller-db-1",
                    type=TicketType.SNAPSHOT,
                    node_id="n1",
                    parameters=TicketParameters(disable_frontend=False),
                ),
            },
        ),
        status=VolumeAttachmentStatus(
            attachment_ticket_statuses={
                "csi-4f2a": AttachmentTicketStatus(
                    id="csi-4f2a",
                    satisfied=True,
                    generation=1,
                    conditions=(Condition(type="Satisfied", status=True, last_transition=T1),),
                ),
            }
        ),
    ),
    "event": Event(
        meta=_meta("db-1.5f3c9a0e1b2d4c6f", 46),
        involved_object=ObjectReference(kind="Volume", name="db-1", uid="9b2f0c7e-volume"),
        reason="Degraded",
        message="volume db-1 is degraded: 2 of 3 replicas are healthy",
        type=EventType.WARNING,
        count=2,
        first_timestamp=T0,
        last_timestamp=T1,
        reporting_node="n1",
    ),
}


def write(directory: Path = Path(__file__).parent / "documents") -> None:
    directory.mkdir(exist_ok=True)
    for name, obj in GOLDEN.items():
        (directory / f"{name}.json").write_text(json.dumps(to_document(obj), indent=2) + "\n")


if __name__ == "__main__":
    write()
