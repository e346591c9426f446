"""The double proven by the real ``kubectl`` (the machine's, with validation on): a CRD and
custom resources applied from a directory twice, server-side apply with its conflicts, the
printer columns, ``-o json``, patches of the spec and of the status subresource, deletion with
finalizers, ``get -w``, ``explain``, and a manifest set of built-in kinds as ``deploy/`` will
have them. What kubectl did is checked through the API as well, not only in its output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import trio
import yaml

from tests.kubeapi.conftest import SAMPLES, Kube, Kubectl, kubectl_env

VOLUMES = "/apis/lhtrio.io/v1/namespaces/default/volumes"


def _copy(tmp_path: Path, *names: str) -> Path:
    """The samples ``names`` in a directory of their own (tests change them)."""
    folder = tmp_path / "manifests"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(SAMPLES / name, folder / name)
    return folder


async def _volume(kube: Kube, name: str) -> dict[str, Any]:
    response = await kube.http.get(f"{VOLUMES}/{name}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _install_crd(kubectl: Kubectl) -> None:
    out = await kubectl.out("apply", "-f", str(SAMPLES / "volume-crd.yaml"))
    assert out.strip() == "customresourcedefinition.apiextensions.k8s.io/volumes.lhtrio.io created"
    await kubectl.run("wait", "--for=condition=established", "crd/volumes.lhtrio.io")


def _table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


async def test_apply_a_crd_and_volumes_twice_and_get_shows_the_printer_columns(
    kube: Kube, kubectl: Kubectl, tmp_path: Path
) -> None:
    await _install_crd(kubectl)
    folder = _copy(tmp_path, "volumes.yaml")
    out = await kubectl.out("apply", "-f", str(folder))
    assert out.splitlines() == ["volume.lhtrio.io/db-1 created", "volume.lhtrio.io/cache-1 created"]
    db = await _volume(kube, "db-1")
    assert db["metadata"]["generation"] == 1
    assert db["spec"] == {"size": 1073741824, "replicas": 3, "frontend": "nbd"}  # defaulted

    manifest = folder / "volumes.yaml"
    manifest.write_text(manifest.read_text().replace("size: 1073741824", "size: 4294967296"))
    out = await kubectl.out("apply", "-f", str(folder))
    assert out.splitlines() == [
        "volume.lhtrio.io/db-1 configured",
        "volume.lhtrio.io/cache-1 unchanged",
    ]
    db = await _volume(kube, "db-1")
    assert db["spec"]["size"] == 4294967296
    assert db["metadata"]["generation"] == 2

    await kubectl.run(
        "patch", "volumes.lhtrio.io", "db-1", "--subresource=status", "--type=merge",
        "-p", '{"status": {"state": "attached", "robustness": "healthy", "node": "n1"}}',
    )  # fmt: skip
    rows = _table(await kubectl.out("get", "volumes.lhtrio.io"))
    assert rows[0] == ["NAME", "STATE", "ROBUSTNESS", "SIZE", "NODE", "AGE"]
    by_name = {row[0]: row for row in rows[1:]}
    assert by_name["db-1"][1:5] == ["attached", "healthy", "4294967296", "n1"]
    assert by_name["cache-1"][1:2] == ["2147483648"]  # no status: empty cells
    assert by_name["db-1"][5].endswith(("s", "m"))  # an age
    assert (await _volume(kube, "db-1"))["metadata"]["generation"] == 2  # status: no new generation

    listed = await kubectl.json("get", "lhv", "-l", "tier=gold")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["db-1"]
    assert listed["items"][0]["status"]["state"] == "attached"
    wide = _table(await kubectl.out("get", "lhvol", "cache-1", "-o", "wide"))
    assert wide[1][0] == "cache-1"


async def test_server_side_apply_owns_fields_and_reports_conflicts(
    kube: Kube, kubectl: Kubectl, tmp_path: Path
) -> None:
    await _install_crd(kubectl)
    folder = _copy(tmp_path, "volumes.yaml")
    manifest = folder / "volumes.yaml"
    out = await kubectl.out("apply", "--server-side", "-f", str(folder))
    assert "volume.lhtrio.io/db-1 serverside-applied" in out.splitlines()
    fields = (await _volume(kube, "db-1"))["metadata"]["managedFields"]
    assert [(f["manager"], f["operation"]) for f in fields] == [("kubectl", "Apply")]
    assert fields[0]["fieldsV1"]["f:spec"] == {"f:size": {}, "f:replicas": {}}

    await kubectl.run("patch", "lhv", "db-1", "--type=merge", "-p", '{"spec": {"size": 5}}')
    manifest.write_text(manifest.read_text().replace("size: 1073741824", "size: 1073741825"))
    refused = await kubectl.run("apply", "--server-side", "-f", str(folder), ok=False)
    assert refused.returncode != 0
    assert 'conflict with "kubectl-patch"' in refused.stderr.decode()
    assert ".spec.size" in refused.stderr.decode()
    assert (await _volume(kube, "db-1"))["spec"]["size"] == 5  # nothing changed

    manifest.write_text(manifest.read_text().replace("  labels: {tier: gold}\n", ""))
    await kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(folder))
    db = await _volume(kube, "db-1")
    assert db["spec"]["size"] == 1073741825
    assert "labels" not in db["metadata"] or "tier" not in db["metadata"]["labels"]  # dropped
    managers = {f["manager"] for f in db["metadata"]["managedFields"]}
    assert "kubectl-patch" not in managers  # its only field was taken over


async def test_client_side_apply_moves_to_server_side_apply_without_conflicts(
    kube: Kube, kubectl: Kubectl, tmp_path: Path
) -> None:
    await _install_crd(kubectl)
    folder = _copy(tmp_path, "volumes.yaml")
    manifest = folder / "volumes.yaml"
    await kubectl.run("apply", "-f", str(folder))
    manifest.write_text(manifest.read_text().replace("size: 2147483648", "size: 3221225472"))
    await kubectl.run("apply", "--server-side", "-f", str(folder))
    cache = await _volume(kube, "cache-1")
    assert cache["spec"]["size"] == 3221225472
    managers = {(f["manager"], f["operation"]) for f in cache["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers


async def test_patch_delete_and_finalizers(kube: Kube, kubectl: Kubectl, tmp_path: Path) -> None:
    await _install_crd(kubectl)
    await kubectl.run("apply", "-f", str(_copy(tmp_path, "volumes.yaml")))
    await kubectl.run(
        "patch", "lhv", "cache-1", "--type=merge",
        "-p", '{"metadata": {"finalizers": ["lhtrio.io/data"]}, "spec": {"replicas": 2}}',
    )  # fmt: skip
    await kubectl.run(
        "patch", "lhv", "cache-1", "--type=json",
        "-p", '[{"op": "test", "path": "/spec/replicas", "value": 2},'
              ' {"op": "replace", "path": "/spec/replicas", "value": 1}]',
    )  # fmt: skip
    assert (await _volume(kube, "cache-1"))["spec"]["replicas"] == 1
    out = await kubectl.out("delete", "lhv", "cache-1", "--wait=false")
    assert out.strip() == 'volume.lhtrio.io "cache-1" deleted'
    held = await _volume(kube, "cache-1")  # its finalizer holds it
    assert held["metadata"]["deletionTimestamp"]
    await kubectl.run(
        "patch", "lhv", "cache-1", "--type=merge", "-p", '{"metadata": {"finalizers": null}}'
    )
    gone = await kubectl.run("get", "lhv", "cache-1", ok=False)
    assert gone.returncode != 0
    assert 'volumes.lhtrio.io "cache-1" not found' in gone.stderr.decode()
    await kubectl.run("delete", "-f", str(tmp_path / "manifests"), "--ignore-not-found")
    assert (await kube.http.get(VOLUMES)).json()["items"] == []


async def _read_until(stream: trio.abc.ReceiveStream, seen: bytearray, wanted: str) -> None:
    with trio.fail_after(20):
        while wanted.encode() not in seen:
            chunk = await stream.receive_some(65536)
            assert chunk, f"kubectl get -w ended before {wanted!r}: {seen.decode()}"
            seen += chunk


async def test_get_watch_prints_changes_as_they_happen(
    kube: Kube, kubectl: Kubectl, tmp_path: Path
) -> None:
    await _install_crd(kubectl)
    await kubectl.run("apply", "-f", str(_copy(tmp_path, "volumes.yaml")))
    process = await trio.lowlevel.open_process(
        kubectl.command("get", "volumes.lhtrio.io", "-w"),
        stdout=subprocess.PIPE,
        env=kubectl_env(),
    )
    try:
        assert process.stdout is not None
        seen = bytearray()
        await _read_until(process.stdout, seen, "cache-1")
        assert seen.decode().split()[:6] == ["NAME", "STATE", "ROBUSTNESS", "SIZE", "NODE", "AGE"]
        status = {"status": {"state": "attached", "robustness": "degraded", "node": "n2"}}
        response = await kube.http.patch(
            f"{VOLUMES}/db-1/status",
            content=json.dumps(status),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert response.status_code == 200, response.text
        await _read_until(process.stdout, seen, "degraded")
        line = next(line for line in seen.decode().splitlines() if "degraded" in line)
        assert line.split()[:5] == ["db-1", "attached", "degraded", "1073741824", "n2"]
    finally:
        process.kill()  # by its PID: the watch never ends by itself
        await process.wait()


async def test_built_in_manifests_apply_twice_with_strategic_merge(
    kube: Kube, kubectl: Kubectl, tmp_path: Path
) -> None:
    folder = _copy(tmp_path, "cluster.yaml")
    out = await kubectl.out("apply", "-f", str(folder))
    assert out.splitlines() == [
        "namespace/lhtrio-system created",
        "serviceaccount/lhtrio created",
        "clusterrole.rbac.authorization.k8s.io/lhtrio created",
        "clusterrolebinding.rbac.authorization.k8s.io/lhtrio created",
        "role.rbac.authorization.k8s.io/lhtrio-events created",
        "rolebinding.rbac.authorization.k8s.io/lhtrio-events created",
        "daemonset.apps/lhtrio-node created",
        "service/lhtrio-api created",
    ]
    daemonset = "/apis/apps/v1/namespaces/lhtrio-system/daemonsets/lhtrio-node"
    mesh = {"name": "mesh", "image": "proxy:1"}  # added by someone else: apply leaves it be
    response = await kube.http.patch(
        daemonset,
        content=json.dumps(
            [{"op": "add", "path": "/spec/template/spec/containers/-", "value": mesh}]
        ),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 200, response.text
    manifest = folder / "cluster.yaml"
    text = manifest.read_text().replace("image: lhtrio:0.1", "image: lhtrio:0.2")
    manifest.write_text(
        text.replace("{name: LOG_LEVEL, value: info}", "{name: LOG_LEVEL, value: debug}")
    )
    out = await kubectl.out("apply", "-f", str(folder))
    assert "daemonset.apps/lhtrio-node configured" in out.splitlines()
    assert "service/lhtrio-api unchanged" in out.splitlines()

    ds = (await kube.http.get(daemonset)).json()
    node, log, added = ds["spec"]["template"]["spec"]["containers"]  # merged by name
    assert (node["name"], node["image"], log["name"], log["image"]) == (
        "node", "lhtrio:0.2", "log", "busybox:1.36",
    )  # fmt: skip
    assert added == mesh
    assert node["env"] == [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "LOG_LEVEL", "value": "debug"},
    ]
    assert node["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "api"}}
    assert ds["metadata"]["generation"] == 3

    manifest.write_text(manifest.read_text().replace("image: busybox:1.36", "image: busybox:1.37"))
    out = await kubectl.out("apply", "--server-side", "-f", str(folder))
    assert "daemonset.apps/lhtrio-node serverside-applied" in out.splitlines()
    ds = (await kube.http.get(daemonset)).json()
    containers = ds["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("node", "lhtrio:0.2"), ("log", "busybox:1.37"), ("mesh", "proxy:1"),
    ]  # fmt: skip
    owned = {f["manager"]: f["fieldsV1"] for f in ds["metadata"]["managedFields"]}
    template = owned["kubectl"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert set(template) == {'k:{"name":"node"}', 'k:{"name":"log"}'}  # element by element
    rows = _table(await kubectl.out("get", "ds,svc,sa", "-n", "lhtrio-system"))
    names = {row[0] for row in rows if row and row[0] != "NAME"}
    assert {"daemonset.apps/lhtrio-node", "service/lhtrio-api", "serviceaccount/lhtrio"} <= names

    await kubectl.run("delete", "namespace", "lhtrio-system")
    left = await kube.http.get("/apis/apps/v1/namespaces/lhtrio-system/daemonsets")
    assert left.json()["items"] == []  # a namespace takes its objects with it


async def test_kubectl_validation_refuses_bad_manifests_and_nothing_changes(
    kube: Kube, kubectl: Kubectl, tmp_path: Path
) -> None:
    await _install_crd(kubectl)
    bad = tmp_path / "bad.yaml"
    before = await kube.revision()
    cases = {
        "spec: {size: 1, sise: 2}": 'unknown field "spec.sise"',
        "spec: {size: big}": "spec.size: Invalid value",
        "spec: {replicas: 2}": "spec.size: Required value",
        "spec: {size: 1, frontend: iscsi}": "spec.frontend: Invalid value",
    }
    for spec, message in cases.items():
        bad.write_text(f"apiVersion: lhtrio.io/v1\nkind: Volume\nmetadata: {{name: bad}}\n{spec}\n")
        refused = await kubectl.run("apply", "-f", str(bad), ok=False)
        assert refused.returncode != 0, spec
        assert message in refused.stderr.decode(), (spec, refused.stderr.decode())
    daemon = next(
        doc
        for doc in yaml.safe_load_all((SAMPLES / "cluster.yaml").read_text())
        if doc["kind"] == "DaemonSet"
    )
    daemon["metadata"]["namespace"] = "default"
    daemon["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 60
    bad.write_text(yaml.safe_dump(daemon))
    refused = await kubectl.run("apply", "-f", str(bad), ok=False)
    unknown = 'unknown field "spec.template.spec.terminationGracePeriodSecond"'
    assert unknown in refused.stderr.decode(), refused.stderr.decode()
    assert await kube.revision() == before  # nothing was written


async def test_explain_and_api_resources(kube: Kube, kubectl: Kubectl) -> None:
    await _install_crd(kubectl)
    explained = await kubectl.out("explain", "volumes.spec")
    assert "size\t<integer> -required-" in explained
    assert "Size in bytes." in explained
    explained = await kubectl.out("explain", "daemonsets.spec.updateStrategy")
    assert "rollingUpdate" in explained
    rows = _table(await kubectl.out("api-resources", "--api-group=lhtrio.io"))
    assert rows[1] == ["volumes", "lhv,lhvol", "lhtrio.io/v1", "true", "Volume"]
    await kubectl.run("delete", "crd", "volumes.lhtrio.io")
    rows = _table(await kubectl.out("api-resources", "--api-group=lhtrio.io", "--cached=false"))
    assert rows[1:] == []
