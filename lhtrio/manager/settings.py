"""Settings in the store: read them all (defaults for the unset), set one (checked first), and
the scheduler's policy they make (Longhorn's names: :mod:`lhtrio.models.cluster.setting`)."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from lhtrio.manager.objects import Objects
from lhtrio.manager.scheduler import Policy
from lhtrio.manager.versions import at_version
from lhtrio.models.cluster import ObjectMeta, Setting
from lhtrio.models.cluster.setting import SETTINGS, SettingSpec, parse, parse_bool, parse_int

__all__ = ["read_settings", "scheduling_policy", "set_setting"]


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


def scheduling_policy(stored: Mapping[str, str]) -> Policy:
    """The scheduler's :class:`~lhtrio.manager.scheduler.Policy` from the settings."""

    def number(name: str) -> int:
        return parse_int(name, stored.get(name, SETTINGS[name].default))

    def flag(name: str) -> bool:
        return parse_bool(name, stored.get(name, SETTINGS[name].default))

    return Policy(
        over_provisioning_percent=number("storage-over-provisioning-percentage"),
        minimal_available_percent=number("storage-minimal-available-percentage"),
        replica_soft_anti_affinity=flag("replica-soft-anti-affinity"),
        zone_soft_anti_affinity=flag("replica-zone-soft-anti-affinity"),
        disk_soft_anti_affinity=flag("replica-disk-soft-anti-affinity"),
    )
