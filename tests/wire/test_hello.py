"""The hello rules (lhtrio.wire.hello): identities, roles, names (issue 16 items 2, 10, 11)."""

from __future__ import annotations

import pytest

from lhtrio.errors import IdentityMismatchError
from lhtrio.wire import Hello, HelloOk, Identity, Role, answer_hello, check_hello_ok

REPLICA = Identity(volume="vol1", instance="r1", role=Role.REPLICA, unnamed=False)
ENGINE = Identity(volume="vol1", instance="engine-vol1", role=Role.ENGINE)


def test_a_replica_answers_with_its_role_and_only_to_clients_that_name_its_volume() -> None:
    ok = answer_hello(Hello(volume="vol1", client="engine-vol1"), REPLICA)
    assert (ok.volume, ok.instance, ok.role) == ("vol1", "r1", "replica")
    with pytest.raises(IdentityMismatchError, match=r"is a replica.*only clients that name"):
        answer_hello(Hello(volume="", client="engine-"), REPLICA)
    # An engine's control endpoint takes operator tools that do not know the volume yet.
    assert answer_hello(Hello(volume="", client="lhtrio-ctl"), ENGINE).role == "engine"


@pytest.mark.parametrize("volume", ["../x", "a/b", "-v", "x" * 64, "vol\n1", "völ"])
def test_a_malformed_volume_name_is_refused(volume: str) -> None:
    with pytest.raises(IdentityMismatchError, match="malformed hello"):
        answer_hello(Hello(volume=volume), ENGINE)


def test_a_malformed_instance_name_is_refused() -> None:
    with pytest.raises(IdentityMismatchError, match="malformed hello"):
        answer_hello(Hello(volume="vol1", instance="../../etc"), REPLICA)


def test_a_client_refuses_a_server_of_another_role() -> None:
    hello = Hello(volume="vol1")
    engine = answer_hello(hello, ENGINE)
    with pytest.raises(IdentityMismatchError, match=r"is an engine.*not a replica"):
        check_hello_ok(engine, hello, role=Role.REPLICA)
    check_hello_ok(engine, hello, role=Role.ENGINE)
    nameless = HelloOk(version=1, volume="vol1", instance="x")  # a server that names no role
    with pytest.raises(IdentityMismatchError, match="no lhtrio replica"):
        check_hello_ok(nameless, hello, role=Role.REPLICA)


def test_a_client_that_named_a_volume_refuses_a_server_of_none() -> None:
    hello = Hello(volume="vol1")
    node = HelloOk(version=1, volume="", instance="node-n1", role="node")
    with pytest.raises(IdentityMismatchError, match="serves volume ''"):
        check_hello_ok(node, hello)
