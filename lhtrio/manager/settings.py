"""Settings in the store: read them all (defaults for the unset), set one (checked first), and
the scheduler's policy they make (Longhorn's names: :mod:`lhtrio.models.cluster.setting`)."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from lhtrio.manager.objects import Objects
from lhtrio.manager.scheduler import Policy
from lhtrio.manager.versions import at_version
from lhtrio.models.cluster import ObjectMeta, Setting, Volume
from lhtrio.models.cluster.setting import SETTINGS, SettingSpec, parse, parse_bool, parse_int
from lhtrio.models.cluster.volume import AffinityOverride

__all__ = ["read_settings", "scheduling_policy", "set_setting", "volume_policy"]


async def read_settings(objects: Objects) -> dict[str, str]:
    """Every setting set in the store, name -> text (unset ones take their defaults)."""
    settings, _ = await objects.list(Setting)
    return {s.meta.name: s.spec.value for s in settings}


async def set_setting(
    objects: Objects, name: str, text: str, *, version: int | None = None
) -> Setting:
    """Set ``name`` to ``text``: InvalidArgumentError (nothing written) unless ``text`` is a
    value of that setting; the setting as stored. ``version``: only if the setting is at that
    version (0: never set; :mod:`lhtrio.manager.versions`)."""
    parse(name, text)
    return await objects.upsert(
        Setting,
        name,
        at_version(version, lambda s: attrs.evolve(s, spec=SettingSpec(value=text))),
        Setting(meta=ObjectMeta(name=name), spec=SettingSpec(value=text)),
    )


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
