"""The scale run's convergence check, kept from watches (:mod:`lhtrio.sim.convergence`): the same
answers the listing of every volume and replica gave, and never ahead of the store."""

from __future__ import annotations

import trio
import trio.testing

from lhtrio.manager.store.api import Document
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.sim.convergence import VolumeView, follow_view, healthy, lost


def volume(name: str, *, state: str, robustness: str, owner: str, node: str) -> Document:
    return {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Volume",
        "metadata": {"name": name},
        "spec": {"nodeID": node},
        "status": {"state": state, "robustness": robustness, "ownerID": owner},
    }


def replica(name: str, volume_name: str, node: str) -> Document:
    return {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Replica",
        "metadata": {"name": name},
        "spec": {"volumeName": volume_name, "nodeID": node},
    }


async def test_the_view_judges_each_change_as_a_listing_would(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    view = VolumeView(store)
    await store.create(volume("v1", state="attached", robustness="healthy", owner="a", node="a"))
    async with trio.open_nursery() as nursery:
        await nursery.start(follow_view, store, view)
        view.aim(healthy)
        assert not view.pending
        created = await store.create(
            volume("v2", state="attaching", robustness="unknown", owner="b", node="b")
        )
        await view.catch_up()  # (the watch has not run yet: without this, v2 is not known)
        assert view.pending == {"v2"}
        created["status"] = {"state": "attached", "robustness": "healthy", "ownerID": "b"}
        await store.update(created)
        await view.catch_up()
        assert not view.pending

        for name in ("v1", "v2"):
            for i, node in enumerate(("a", "b", "c")):
                await store.create(replica(f"{name}-r-{i}", name, node))
        view.aim(lost("b"))  # v2's owner is b; v1 is attached to a with a replica on b
        await view.catch_up()
        assert view.pending == {"v1", "v2"}
        await store.delete("Replica", "v1-r-1")
        await view.catch_up()
        assert view.pending == {"v2"}  # no replica on b: v1 need not be degraded
        v2 = await store.get("Volume", "v2")
        v2["status"] = {"state": "attached", "robustness": "degraded", "ownerID": "c"}
        await store.update(v2)
        await view.catch_up()
        assert not view.pending
        nursery.cancel_scope.cancel()
