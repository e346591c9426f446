"""lightkube's AsyncClient, natively under trio, against the double: what lhtrio's Kubernetes
store will do with it (list, get, create, merge and server-side-apply patches, the status
subresource, 409 on a stale update, watch from a list's revision, 410 after compaction, and
leases), so the store can be tested against the double with the client it ships with.

lightkube's gotchas (``docs/testing-kubernetes.md``): a kubeconfig for a URL is
``KubeConfig.from_one(cluster=Cluster(server=URL), user=User(), ...)``; a watch is an async
generator to close with ``aclosing``; its errors are ``ApiError`` (an ``httpx2`` status error),
and an ``on_error`` that asks to sleep calls ``asyncio.sleep``, so back off in trio yourself.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
import trio
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from tests.kubeapi.conftest import Kube

Volume = create_namespaced_resource("lhtrio.io", "v1", "Volume", "volumes")
#: The longest a test waits for one watch event (seconds).
EVENT_DEADLINE = 10.0


@pytest.fixture
async def client(kube: Kube) -> AsyncIterator[AsyncClient]:
    config = KubeConfig.from_one(cluster=Cluster(server=kube.url), user=User(), namespace="default")
    light = AsyncClient(config, trust_env=False)
    try:
        yield light
    finally:
        await light.close()


def meta(obj: Any) -> ObjectMeta:
    """An object's metadata (lightkube types it as optional)."""
    metadata = obj.metadata
    assert isinstance(metadata, ObjectMeta)
    return metadata


def name_of(obj: Any) -> str:
    name = meta(obj).name
    assert name is not None
    return name


def version_of(obj: Any) -> str:
    version = meta(obj).resourceVersion
    assert version is not None
    return version


def _volume(name: str, size: int) -> Any:
    return Volume(metadata=ObjectMeta(name=name), spec={"size": size})


async def test_list_get_create_patch_and_the_status_subresource(
    kube: Kube, client: AsyncClient
) -> None:
    await kube.create_crd()
    created = await client.create(_volume("a", 5))
    assert meta(created).uid
    assert created.spec == {"size": 5, "replicas": 3, "frontend": "nbd"}
    got = await client.get(Volume, "a")
    assert meta(got).resourceVersion == meta(created).resourceVersion

    patched = await client.patch(Volume, "a", {"spec": {"size": 6}}, patch_type=PatchType.MERGE)
    assert (patched.spec["size"], meta(patched).generation) == (6, 2)
    status = await client.patch(
        Volume.Status, "a", {"status": {"state": "attached"}}, patch_type=PatchType.MERGE
    )
    assert status.status == {"state": "attached"}
    assert meta(status).generation == 2

    applied = await client.apply(_volume("b", 7), field_manager="lhtrio")
    assert applied.spec["size"] == 7
    assert [f.manager for f in meta(applied).managedFields or ()] == ["lhtrio"]

    listing = client.list(Volume)
    names = sorted([name_of(v) async for v in listing])
    assert names == ["a", "b"]
    assert int(listing.resourceVersion) == await kube.revision()

    stale = created
    stale.spec = {"size": 1}
    with pytest.raises(ApiError) as refused:
        await client.replace(stale)
    assert (refused.value.status.code, refused.value.status.reason) == (409, "Conflict")
    with pytest.raises(ApiError) as missing:
        await client.get(Volume, "nope")
    assert missing.value.status.code == 404


# lightkube's watch is an async generator over httpx2's line generators that it never closes:
# leaving a watch early (a break, a cancellation, or the ApiError of an ERROR event) leaves them
# to the garbage collector, which trio reports as an unraisable ResourceWarning. That is
# lightkube's, not the double's (the real server answers the same); a store that stops watches
# must expect the warning or read watches itself (as lhtrio's etcd client does, with h11).
LEAKS_ITS_GENERATORS = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@LEAKS_ITS_GENERATORS
async def test_watch_from_the_revision_of_a_list(kube: Kube, client: AsyncClient) -> None:
    await kube.create_crd()
    await client.create(_volume("a", 1))
    listing = client.list(Volume)
    assert [name_of(v) async for v in listing] == ["a"]
    since = listing.resourceVersion
    seen: list[tuple[str, str, str]] = []
    changed = trio.Event()

    async def watch() -> None:
        events = client.watch(Volume, namespace="default", resource_version=since)
        async with aclosing(events) as stream:  # type: ignore[type-var]
            async for kind, obj in stream:
                seen.append((kind, name_of(obj), version_of(obj)))
                if len(seen) == 3:
                    changed.set()
                    return

    with trio.fail_after(EVENT_DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            b = await client.create(_volume("b", 2))
            a = await client.patch(Volume, "a", {"spec": {"size": 3}}, patch_type=PatchType.MERGE)
            await client.delete(Volume, "b")
            await changed.wait()
    assert seen[:2] == [
        ("ADDED", "b", version_of(b)),
        ("MODIFIED", "a", version_of(a)),
    ]
    assert seen[2][:2] == ("DELETED", "b")
    gc.collect()  # the generators lightkube left go now, in this test


@LEAKS_ITS_GENERATORS
async def test_a_compacted_revision_is_an_api_error_410(kube: Kube, client: AsyncClient) -> None:
    await kube.create_crd()
    created = await client.create(_volume("a", 1))
    await client.patch(Volume, "a", {"spec": {"size": 2}}, patch_type=PatchType.MERGE)
    await kube.compact()
    with trio.fail_after(EVENT_DEADLINE):
        gone = await _first_error(client, version_of(created))
    assert (gone.status.code, gone.status.reason) == (410, "Expired")
    gc.collect()  # the generators lightkube left go now, in this test


async def _first_error(client: AsyncClient, since: str) -> ApiError:
    events = client.watch(Volume, namespace="default", resource_version=since)
    try:
        async with aclosing(events) as stream:  # type: ignore[type-var]
            async for _ in stream:
                pass
    except ApiError as exc:
        return exc
    raise AssertionError("the watch ended without an error")


async def test_leases(client: AsyncClient) -> None:
    spec = LeaseSpec(holderIdentity="n1", leaseDurationSeconds=15)
    lease = Lease(
        metadata=ObjectMeta(name="lhtrio-node-n1", namespace="kube-node-lease"), spec=spec
    )
    created = await client.create(lease)
    assert created.spec is not None
    assert created.spec.holderIdentity == "n1"
    renewed = await client.patch(
        Lease, "lhtrio-node-n1", {"spec": {"renewTime": "2026-12-05T10:00:00.000000Z"}},
        namespace="kube-node-lease", patch_type=PatchType.MERGE,
    )  # fmt: skip
    assert renewed.spec is not None
    assert renewed.spec.renewTime is not None
    assert int(version_of(renewed)) > int(version_of(created))
