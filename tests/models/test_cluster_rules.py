"""The small rules of the control-plane models: robustness, leases, conditions, settings."""

from __future__ import annotations

import datetime as dt

import pytest

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.cluster.instance import InstanceState
from lhtrio.models.cluster.lease import NodeLeaseSpec, lease_expired
from lhtrio.models.cluster.meta import Condition, get_condition, set_condition
from lhtrio.models.cluster.setting import (
    SETTINGS,
    parse,
    parse_bool,
    parse_int,
    parse_str,
    value_of,
)
from lhtrio.models.cluster.volume import Robustness, robustness
from lhtrio.models.volume import Mode

RW, WO, ERR = Mode.RW, Mode.WO, Mode.ERR
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("modes", "replicas", "state", "expected"),
    [
        ([RW, RW, RW], 3, InstanceState.RUNNING, Robustness.HEALTHY),
        ([RW, RW, RW, RW], 3, InstanceState.RUNNING, Robustness.HEALTHY),
        ([RW, RW, WO], 3, InstanceState.RUNNING, Robustness.DEGRADED),
        ([RW, ERR, ERR], 3, InstanceState.RUNNING, Robustness.DEGRADED),
        ([RW], 3, InstanceState.RUNNING, Robustness.DEGRADED),
        ([RW], 1, InstanceState.RUNNING, Robustness.HEALTHY),
        ([WO, ERR], 2, InstanceState.RUNNING, Robustness.FAULTED),
        ([], 3, InstanceState.RUNNING, Robustness.FAULTED),
        ([RW, RW, RW], 3, InstanceState.UNKNOWN, Robustness.UNKNOWN),
        ([], 3, InstanceState.STARTING, Robustness.UNKNOWN),
        ([RW], 1, InstanceState.STOPPED, Robustness.UNKNOWN),
    ],
)
def test_robustness(
    modes: list[Mode], replicas: int, state: InstanceState, expected: Robustness
) -> None:
    modes_by_name = {f"r{i}": mode for i, mode in enumerate(modes)}
    assert robustness(modes_by_name, replicas, engine_state=state) is expected


def test_a_lease_expires_after_its_duration() -> None:
    lease = NodeLeaseSpec(holder_identity="n1", lease_duration_seconds=15, renew_time=T0)
    assert not lease_expired(lease, T0)
    assert not lease_expired(lease, T0 + dt.timedelta(seconds=14))
    assert lease_expired(lease, T0 + dt.timedelta(seconds=15))
    assert lease_expired(NodeLeaseSpec(holder_identity="n1"), T0)


def test_set_condition_keeps_the_transition_time_while_the_status_holds() -> None:
    later = T0 + dt.timedelta(minutes=5)
    first = set_condition((), "Ready", True, reason="", now=T0)
    assert first == (Condition(type="Ready", status=True, last_transition=T0),)
    same = set_condition(first, "Ready", True, now=later)
    assert same is first
    reworded = set_condition(first, "Ready", True, message="fine", now=later)
    assert reworded == (Condition(type="Ready", status=True, message="fine", last_transition=T0),)
    flipped = set_condition(reworded, "Ready", False, reason="LeaseExpired", now=later)
    assert flipped == (
        Condition(type="Ready", status=False, reason="LeaseExpired", last_transition=later),
    )


def test_set_condition_replaces_in_place_and_appends_new_types() -> None:
    conditions = set_condition((), "Ready", True, now=T0)
    conditions = set_condition(conditions, "Schedulable", False, reason="Disabled", now=T0)
    conditions = set_condition(conditions, "Ready", False, now=T0)
    assert [c.type for c in conditions] == ["Ready", "Schedulable"]
    ready = get_condition(conditions, "Ready")
    assert ready is not None
    assert not ready.status
    assert get_condition(conditions, "Scheduled") is None


def test_the_settings_have_longhorns_names_and_defaults() -> None:
    defaults = {name: d.default for name, d in SETTINGS.items()}
    assert defaults == {
        "default-replica-count": "3",
        "replica-soft-anti-affinity": "false",
        "replica-zone-soft-anti-affinity": "true",
        "replica-disk-soft-anti-affinity": "true",
        "storage-over-provisioning-percentage": "100",
        "storage-minimal-available-percentage": "25",
        "replica-replenishment-wait-interval": "600",
        "auto-salvage": "true",
        "engine-replica-timeout": "8",
        "concurrent-replica-rebuild-per-node-limit": "5",
        "default-data-locality": "disabled",
    }
    for name, definition in SETTINGS.items():
        parse(name, definition.default)


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("default-replica-count", "1", 1),
        ("default-replica-count", "20", 20),
        ("engine-replica-timeout", "30", 30),
        ("storage-over-provisioning-percentage", "500", 500),
        ("storage-minimal-available-percentage", "0", 0),
        ("auto-salvage", "false", False),
        ("replica-soft-anti-affinity", "true", True),
        ("default-data-locality", "strict-local", "strict-local"),
    ],
)
def test_a_valid_value_parses(name: str, text: str, value: object) -> None:
    assert parse(name, text) == value
    assert type(parse(name, text)) is type(value)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("default-replica-count", "0", "it must be an integer from 1 to 20"),
        ("default-replica-count", "21", "it must be an integer from 1 to 20"),
        ("default-replica-count", "3.0", "invalid value '3.0' for setting default-replica-count"),
        ("default-replica-count", " 3", "an integer from 1 to 20"),
        ("default-replica-count", "", "an integer from 1 to 20"),
        ("default-replica-count", "9" * 40, "an integer from 1 to 20"),
        ("engine-replica-timeout", "7", "an integer from 8 to 30"),
        ("replica-replenishment-wait-interval", "-1", "an integer of at least 0"),
        ("storage-minimal-available-percentage", "101", "an integer from 0 to 100"),
        ("auto-salvage", "True", "it must be true or false"),
        ("auto-salvage", "1", "it must be true or false"),
        ("default-data-locality", "local", "one of disabled, best-effort, strict-local"),
        ("default-replica-count", 3, "invalid value 3"),
        ("no-such-setting", "1", "unknown setting 'no-such-setting'; the settings are"),
    ],
)
def test_an_invalid_value_is_refused_clearly(name: str, text: object, expected: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse(name, text)
    assert expected in info.value.message


def test_typed_parsers_and_defaults() -> None:
    assert parse_int("default-replica-count", "2") == 2
    assert parse_bool("auto-salvage", "false") is False
    assert parse_str("default-data-locality", "best-effort") == "best-effort"
    with pytest.raises(TypeError):
        parse_int("auto-salvage", "true")
    with pytest.raises(TypeError):
        parse_bool("default-replica-count", "3")
    assert value_of("default-replica-count", {}) == 3
    assert value_of("default-replica-count", {"default-replica-count": "5"}) == 5
    with pytest.raises(InvalidArgumentError):
        value_of("default-replica-count", {"default-replica-count": "50"})
