"""Settings in the store: defaults, checked writes, and the scheduling policy they make."""

from __future__ import annotations

import pytest

from lhtrio.errors import InvalidArgumentError
from lhtrio.manager.objects import Objects
from lhtrio.manager.policy import scheduling_policy
from lhtrio.manager.scheduler import Policy
from lhtrio.manager.settings import read_settings, set_setting
from lhtrio.manager.store.memory import MemoryStore


async def test_unset_settings_take_longhorns_defaults() -> None:
    objects = Objects(MemoryStore())
    assert await read_settings(objects) == {}
    assert scheduling_policy({}) == Policy(
        over_provisioning_percent=100,
        minimal_available_percent=25,
        replica_soft_anti_affinity=False,
        zone_soft_anti_affinity=True,
        disk_soft_anti_affinity=True,
    )


async def test_a_setting_is_set_and_changes_the_policy() -> None:
    objects = Objects(MemoryStore())
    await set_setting(objects, "storage-over-provisioning-percentage", "200")
    await set_setting(objects, "replica-soft-anti-affinity", "true")
    stored = await set_setting(objects, "storage-over-provisioning-percentage", "300")
    assert stored.spec.value == "300"
    settings = await read_settings(objects)
    assert settings == {
        "storage-over-provisioning-percentage": "300",
        "replica-soft-anti-affinity": "true",
    }
    policy = scheduling_policy(settings)
    assert policy.over_provisioning_percent == 300
    assert policy.replica_soft_anti_affinity


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("default-replica-count", "0"),
        ("default-replica-count", "21"),
        ("default-replica-count", "three"),
        ("replica-soft-anti-affinity", "maybe"),
        ("no-such-setting", "1"),
        ("../x", "1"),
    ],
)
async def test_a_bad_value_or_name_is_refused_and_nothing_is_written(name: str, text: str) -> None:
    objects = Objects(MemoryStore())
    with pytest.raises(InvalidArgumentError):
        await set_setting(objects, name, text)
    assert await read_settings(objects) == {}


async def test_two_writers_of_a_new_setting_both_succeed_and_one_value_stays() -> None:
    import trio

    objects = Objects(MemoryStore())
    async with trio.open_nursery() as nursery:
        for value in ("150", "250"):
            nursery.start_soon(set_setting, objects, "storage-over-provisioning-percentage", value)
    settings = await read_settings(objects)
    assert settings["storage-over-provisioning-percentage"] in ("150", "250")
