"""deploy/'s manifests, offline: each validates strictly against Kubernetes' own schemas
(kubernetes-validate), the kustomization installs exactly them, the examples validate against
their CRDs, the Role grants exactly the verbs the Kubernetes store uses on exactly the resources
its kinds live in, and the DaemonSet runs `lhtrio node` with options it accepts, the downward
API's node name and pod IP, probes on /healthz and /readyz, time to stop, and no privilege it
does not need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from lhtrio.manager.store.crds import GROUP
from lhtrio.manager.store.kube_format import DEFAULT_NAMESPACE, RESOURCES
from lhtrio.node.server import GRACE
from lhtrio.node_command import API_STOP_DEADLINE, node
from tests.deploy.manifests import (
    DEPLOY,
    EXAMPLES,
    KUBERNETES,
    cr_validator,
    documents,
    installed,
    manifests,
)


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("obj", installed(), ids=name_of)
def test_every_manifest_validates_strictly(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES, strict=True)


@pytest.mark.parametrize("obj", installed(), ids=name_of)
def test_every_namespaced_object_is_in_lhtrios_namespace(obj: dict[str, Any]) -> None:
    cluster_wide = {"Namespace", "CustomResourceDefinition"}
    if obj["kind"] in cluster_wide:
        assert "namespace" not in obj["metadata"]
    else:
        assert obj["metadata"]["namespace"] == DEFAULT_NAMESPACE
    assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "lhtrio"


def test_the_kustomization_installs_every_manifest_and_nothing_else() -> None:
    (kustomization,) = documents(DEPLOY / "kustomization.yaml")
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(p.name for p in manifests())
    assert all((DEPLOY / name).is_file() for name in listed)
    assert listed.index("namespace.yaml") < listed.index("rbac.yaml")  # the namespace first
    assert [i["name"] for i in kustomization["images"]] == ["lhtrio"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_validate_against_their_crds(path: Path) -> None:
    for obj in documents(path):
        assert obj["apiVersion"] == f"{GROUP}/v1"
        assert obj["metadata"]["namespace"] == DEFAULT_NAMESPACE
        cr_validator(obj["kind"]).validate(obj)


def only(kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in installed() if obj["kind"] == kind]
    return found


#: What the node does to each resource, read off the code (docs/deploy.md has the table): every
#: kind is read, listed, watched, created and merge-patched; volumes (the API), engines, replicas
#: and attachment tickets (the volume reconciler) and events (the recorder's bound) are deleted;
#: nodes, settings and leases never are; status goes through the status subresource.
USED = {
    **{
        (GROUP, plural): {"get", "list", "watch", "create", "patch", "delete"}
        for plural in ("volumes", "engines", "replicas", "volumeattachments")
    },
    **{
        (GROUP, plural): {"get", "list", "watch", "create", "patch"}
        for plural in ("nodes", "settings")
    },
    **{
        (GROUP, f"{plural}/status"): {"patch"}
        for plural in ("volumes", "engines", "replicas", "volumeattachments", "nodes", "settings")
    },
    ("coordination.k8s.io", "leases"): {"get", "list", "watch", "create", "patch"},
    ("", "events"): {"get", "list", "watch", "create", "patch", "delete"},
}


def granted() -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in only("Role")["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no names, no wildcards
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_the_role_grants_exactly_what_the_node_uses() -> None:
    assert granted() == USED
    assert all("*" not in verbs for verbs in granted().values())
    kinds = {(r.group, r.plural) for r in RESOURCES.values()}
    assert kinds == {key for key in USED if "/" not in key[1]}  # every kind's resource, no other


def test_the_role_is_bound_to_the_nodes_service_account_only() -> None:
    binding = only("RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": only("Role")["metadata"]["name"],
    }
    account = only("ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": DEFAULT_NAMESPACE}
    ]
    assert only("DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"] == account
    assert not [obj for obj in installed() if obj["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = only("DaemonSet")["spec"]["template"]["spec"]
    return spec


def container(name: str = "node") -> dict[str, Any]:
    (found,) = [c for c in pod()["containers"] + pod()["initContainers"] if c["name"] == name]
    assert isinstance(found, dict)
    return found


def test_the_node_runs_with_options_lhtrio_node_accepts() -> None:
    args = [
        arg.replace("$(NODE_NAME)", "worker-1").replace("$(POD_IP)", "10.0.0.5")
        for arg in container()["args"]
    ]
    context = node.make_context("node", args)  # the options' own checks run
    assert context.params["name"] == "worker-1"
    assert context.params["store"] == "kubernetes"
    assert context.params["advertise"] == "10.0.0.5"
    assert context.params["data_dir"] == "/var/lib/lhtrio"
    with pytest.raises(click.BadParameter):
        node.make_context("node", [*args, "--store=kubernetes\x00"])


def test_the_node_name_and_address_come_from_the_downward_api() -> None:
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container()["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "POD_IP": "status.podIP"}
    assert "--name=$(NODE_NAME)" in container()["args"]
    assert "--advertise=$(POD_IP)" in container()["args"]


def test_the_probes_ask_the_api_and_the_api_listens_where_they_ask() -> None:
    node_container = container()
    assert node_container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
    assert node_container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "api"}
    (api,) = [p for p in node_container["ports"] if p["name"] == "api"]
    assert f"--api=:{api['containerPort']}" in node_container["args"]
    service = only("Service")
    assert service["spec"]["ports"] == [{"name": "api", "port": 9500, "targetPort": "api"}]
    labels = only("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_the_pod_has_time_to_close_its_volumes() -> None:
    grace = next(float(a.split("=")[1]) for a in container()["args"] if a.startswith("--grace="))
    assert grace >= GRACE
    assert pod()["terminationGracePeriodSeconds"] >= grace + API_STOP_DEADLINE


def test_the_node_asks_for_resources() -> None:
    requests = container()["resources"]["requests"]
    assert set(requests) == {"cpu", "memory"}


def test_no_privilege_it_does_not_need() -> None:
    spec = pod()
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    node_context = container()["securityContext"]
    assert node_context == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    chown = container("own-data-dir")
    assert chown["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert chown["securityContext"]["allowPrivilegeEscalation"] is False
    assert chown["command"] == ["chown", "10001:10001", "/var/lib/lhtrio"]
    host_paths = [v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v]
    assert host_paths == ["/var/lib/lhtrio"]  # the data, and nothing else of the host (no /dev)
    for each in spec["containers"] + spec["initContainers"]:
        assert not each["securityContext"].get("privileged")
