"""Settings in the store: read them all (defaults for the unset), set one (checked first)
(Longhorn's names: :mod:`lhtrio.models.cluster.setting`). What they mean for scheduling is
:mod:`lhtrio.manager.policy` (pure)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from lhtrio.manager.objects import Objects
from lhtrio.manager.versions import at_version
from lhtrio.models.cluster import ObjectMeta, Setting
from lhtrio.models.cluster.setting import SettingSpec, parse

__all__ = ["read_settings", "set_setting", "setting_values"]


async def read_settings(objects: Objects) -> dict[str, str]:
    """Every setting set in the store, name -> text (unset ones take their defaults)."""
    settings, _ = await objects.list(Setting)
    return setting_values(settings)


def setting_values(settings: Iterable[Setting]) -> dict[str, str]:
    """``settings`` as name -> text (what :func:`read_settings` reads, from any list of them)."""
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
