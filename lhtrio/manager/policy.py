"""What the settings mean, pure: a setting's value (its default when unset), and the scheduler's
policy the settings and a volume's own choices make (no I/O: the volume reconciler's plan,
:mod:`lhtrio.manager.volume_plan`, uses it; :mod:`lhtrio.manager.settings` reads and writes
the settings)."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from lhtrio.manager.scheduler import Policy
from lhtrio.models.cluster import Volume
from lhtrio.models.cluster.setting import SETTINGS, parse_bool, parse_int
from lhtrio.models.cluster.volume import AffinityOverride

__all__ = ["flag", "number", "scheduling_policy", "volume_policy"]


def number(stored: Mapping[str, str], name: str) -> int:
    """The integer setting ``name``: its stored value, or its default."""
    return parse_int(name, stored.get(name, SETTINGS[name].default))


def flag(stored: Mapping[str, str], name: str) -> bool:
    """The boolean setting ``name``: its stored value, or its default."""
    return parse_bool(name, stored.get(name, SETTINGS[name].default))


def scheduling_policy(stored: Mapping[str, str]) -> Policy:
    """The scheduler's :class:`~lhtrio.manager.scheduler.Policy` from the settings."""
    return Policy(
        over_provisioning_percent=number(stored, "storage-over-provisioning-percentage"),
        minimal_available_percent=number(stored, "storage-minimal-available-percentage"),
        replica_soft_anti_affinity=flag(stored, "replica-soft-anti-affinity"),
        zone_soft_anti_affinity=flag(stored, "replica-zone-soft-anti-affinity"),
        disk_soft_anti_affinity=flag(stored, "replica-disk-soft-anti-affinity"),
    )


def _override(value: AffinityOverride, setting: bool) -> bool:
    return setting if value is AffinityOverride.IGNORED else value is AffinityOverride.ENABLED


def volume_policy(volume: Volume, settings: Mapping[str, str]) -> Policy:
    """The settings' scheduling policy, with the volume's own anti-affinity choices."""
    policy = scheduling_policy(settings)
    spec = volume.spec
    return attrs.evolve(
        policy,
        replica_soft_anti_affinity=_override(
            spec.replica_soft_anti_affinity, policy.replica_soft_anti_affinity
        ),
        zone_soft_anti_affinity=_override(
            spec.replica_zone_soft_anti_affinity, policy.zone_soft_anti_affinity
        ),
        disk_soft_anti_affinity=_override(
            spec.replica_disk_soft_anti_affinity, policy.disk_soft_anti_affinity
        ),
    )
