"""Which objects a node's reconcilers act on, judged from raw documents: replicas and engines
on the node; volumes (and their tickets) it is responsible for, as the nodes up change."""

from __future__ import annotations

from lhtrio.manager.lease import Availability
from lhtrio.manager.scope import Borrowed, OnNode, Responsible
from lhtrio.manager.store.codec import to_document
from lhtrio.manager.store.rules import metadata
from lhtrio.models.cluster import ObjectMeta, Replica, Volume
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.models.cluster.volume import VolumeSpec, VolumeStatus

MiB = 1 << 20


def volume(owner: str, attached: str, version: int = 1) -> Volume:
    return Volume(
        meta=ObjectMeta(name="v", resource_version=version),
        spec=VolumeSpec(size=4 * MiB, node_id=attached),
        status=VolumeStatus(owner_id=owner),
    )


def test_replicas_and_engines_on_the_node_and_what_is_unknown_or_unreadable() -> None:
    scope = OnNode("n1")
    for node, name in (("n1", "mine"), ("n2", "theirs")):
        replica = Replica(
            meta=ObjectMeta(name=name),
            spec=ReplicaSpec(volume_name="v", volume_size=4 * MiB, node_id=node),
        )
        scope.see(name, to_document(replica))
    scope.see("odd", {"kind": "Replica", "metadata": {"name": "odd"}, "spec": {"nodeID": 7}})
    assert [scope.covers(n) for n in ("mine", "theirs", "odd", "unknown")] == [
        True,
        False,
        True,  # its reconcile says what is wrong with it
        True,
    ]
    scope.forget("theirs")
    assert scope.covers("theirs")  # nothing known of it any more


def test_a_volume_is_its_attach_nodes_else_its_owners_else_the_first_node_up() -> None:
    availability = Availability(up=frozenset({"n1", "n2", "n3"}))
    scopes = {n: Responsible(n, availability) for n in ("n1", "n2", "n3")}

    def who(v: Volume) -> list[str]:
        for scope in scopes.values():
            scope.see("v", to_document(v))
        return [n for n, scope in scopes.items() if scope.covers("v")]

    assert who(volume(owner="n1", attached="n2")) == ["n2"]
    assert who(volume(owner="n3", attached="")) == ["n3"]
    assert who(volume(owner="", attached="")) == ["n1"]
    availability.up = frozenset({"n1", "n2"})  # n3 down: its volume is taken over at once
    assert [n for n, scope in scopes.items() if scope.covers("v")] == ["n1"]


def test_an_older_version_seen_late_does_not_replace_a_newer_one() -> None:
    scope = Responsible("n1", Availability(up=frozenset({"n1", "n2"})))
    newer, older = volume("n1", "n1", version=7), volume("n2", "n2", version=6)
    scope.see("v", to_document(newer))
    scope.see("v", to_document(older))
    assert scope.covers("v")
    tickets = Borrowed(scope)
    tickets.see("v", {"metadata": metadata(to_document(older)), "spec": {}})  # (ignored)
    assert tickets.covers("v")
    scope.see("v", to_document(volume("n2", "n2", version=8)))
    assert not tickets.covers("v")
