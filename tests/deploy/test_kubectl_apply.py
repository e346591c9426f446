"""deploy/ installed with the real kubectl (validation on) into the Kubernetes API double: ``kubectl
apply -k deploy/`` creates everything and, applied again (an upgrade with nothing new), changes
nothing; the examples apply; the Kubernetes store then works on what was installed, and
``kubectl get volumes.lhtrio.io`` shows the printer columns of what it wrote (short names and the
``lhtrio`` category too); a custom resource the CRD refuses is refused and changes nothing; and
``kubectl delete -k deploy/`` removes it all."""

from __future__ import annotations

import attrs

from lhtrio.manager.objects import Objects
from lhtrio.manager.store.kubernetes import open_kubernetes_store
from lhtrio.models.cluster import Volume
from lhtrio.models.cluster.volume import Robustness, VolumeState
from tests.deploy.manifests import DEPLOY, EXAMPLES
from tests.manager.kube import KubeCluster, kubectl

NS = ["-n", "lhtrio-system"]


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def lines(done: object) -> list[str]:
    stdout = getattr(done, "stdout", b"")
    assert isinstance(stdout, bytes)
    return stdout.decode().strip().splitlines()


async def test_kubectl_apply_k_deploy_installs_everything_and_again_changes_nothing(
    bare_cluster: KubeCluster,
) -> None:
    first = lines(await kubectl(bare_cluster, "apply", "-k", str(DEPLOY)))
    assert first == [
        "namespace/lhtrio-system created",
        "customresourcedefinition.apiextensions.k8s.io/engines.lhtrio.io created",
        "customresourcedefinition.apiextensions.k8s.io/nodes.lhtrio.io created",
        "customresourcedefinition.apiextensions.k8s.io/replicas.lhtrio.io created",
        "customresourcedefinition.apiextensions.k8s.io/settings.lhtrio.io created",
        "customresourcedefinition.apiextensions.k8s.io/volumeattachments.lhtrio.io created",
        "customresourcedefinition.apiextensions.k8s.io/volumes.lhtrio.io created",
        "serviceaccount/lhtrio created",
        "role.rbac.authorization.k8s.io/lhtrio-node created",
        "rolebinding.rbac.authorization.k8s.io/lhtrio-node created",
        "service/lhtrio-api created",
        "daemonset.apps/lhtrio-node created",
    ]
    again = lines(await kubectl(bare_cluster, "apply", "-k", str(DEPLOY)))
    assert again == [line.replace(" created", " unchanged") for line in first]
    image = await kubectl(
        bare_cluster, *NS, "get", "daemonset", "lhtrio-node", "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )  # fmt: skip
    assert image.stdout.decode() == "lhtrio:0.1.0"  # the kustomization's image

    applied = lines(await kubectl(bare_cluster, "apply", "-f", str(EXAMPLES)))
    assert applied == [
        "setting.lhtrio.io/default-replica-count created",
        "volume.lhtrio.io/db-1 created",
    ]

    async with open_kubernetes_store(str(bare_cluster.kubeconfig)) as store:
        objects = Objects(store)

        def attached(volume: Volume) -> Volume:
            status = attrs.evolve(
                volume.status,
                owner_id="n1",
                state=VolumeState.ATTACHED,
                robustness=Robustness.HEALTHY,
                current_node_id="n1",
            )
            return attrs.evolve(volume, status=status)

        await objects.change(Volume, "db-1", attached)

    rows = table((await kubectl(bare_cluster, *NS, "get", "volumes.lhtrio.io")).stdout.decode())
    assert rows[0] == ["NAME", "STATE", "ROBUSTNESS", "SIZE", "NODE", "AGE"]
    assert rows[1][:5] == ["db-1", "attached", "healthy", "1073741824", "n1"]
    short = table((await kubectl(bare_cluster, *NS, "get", "lhv")).stdout.decode())
    # the same rows, AGE aside (CI once crossed a second between the two reads: 0s, then 1s)
    assert [row[:5] for row in short] == [row[:5] for row in rows[: len(short)]]
    assert len(short) == len(rows)
    everything = (await kubectl(bare_cluster, *NS, "get", "lhtrio")).stdout.decode()
    assert "volume.lhtrio.io/db-1" in everything
    assert "setting.lhtrio.io/default-replica-count" in everything


async def test_a_custom_resource_the_crd_refuses_is_refused_and_changes_nothing(
    bare_cluster: KubeCluster,
) -> None:
    await kubectl(bare_cluster, "apply", "-k", str(DEPLOY))
    bad = (EXAMPLES / "volume.yaml").read_text().replace('size: "1073741824"', "size: 1073741824")
    refused = await kubectl(bare_cluster, "apply", "-f", "-", ok=False, stdin=bad.encode())
    assert refused.returncode != 0
    assert b"spec.size" in refused.stderr
    listed = await kubectl(bare_cluster, *NS, "get", "volumes.lhtrio.io", "-o", "name")
    assert listed.stdout == b""


async def test_kubectl_delete_k_deploy_removes_it_all(bare_cluster: KubeCluster) -> None:
    await kubectl(bare_cluster, "apply", "-k", str(DEPLOY))
    await kubectl(bare_cluster, "delete", "-k", str(DEPLOY), "--ignore-not-found")
    crds = await kubectl(bare_cluster, "get", "crd", "-o", "name")
    assert b"lhtrio.io" not in crds.stdout
    namespaces = await kubectl(bare_cluster, "get", "namespaces", "-o", "name")
    assert b"lhtrio-system" not in namespaces.stdout
