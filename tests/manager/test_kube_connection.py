"""How the Kubernetes store finds its cluster and shows who it is (lhtrio.manager.store.kubernetes's
kube_config), and its watch streams over TLS (lhtrio.manager.store.kube_watch) against a real TLS
server of the test's own: in a pod, the service account's token (read again at each connection:
the kubelet rotates it), CA and namespace; outside, a kubeconfig's current context; what it cannot
speak (exec plugins, passwords, other schemes, missing files) is a StorageError saying so."""

from __future__ import annotations

import functools
import json
import ssl
import urllib.parse
from contextlib import aclosing
from pathlib import Path

import h11
import pytest
import trio
import trustme
from click.testing import CliRunner
from lightkube import AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User

from lhtrio.cli import cli
from lhtrio.errors import GoneError, StorageError
from lhtrio.manager.store import kubernetes
from lhtrio.manager.store.api import EventType
from lhtrio.manager.store.kube_connect import kube_config
from lhtrio.manager.store.kube_format import WatchBrokenError
from lhtrio.manager.store.kube_watch import Server, open_watch_stream
from lhtrio.manager.store.kubernetes import KubernetesStore
from lhtrio.manager.store.open import check_store_url
from tests.manager.kube import write_kubeconfig


def service_account(directory: Path, ca: trustme.CA, namespace: str = "storage") -> Path:
    directory.mkdir()
    (directory / "token").write_text("tok-1\n")
    (directory / "namespace").write_text(namespace)
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    return directory


def test_in_a_pod_the_service_account_says_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    account = service_account(tmp_path / "sa", ca)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    connection = kube_config(None, service_account=str(account))
    assert connection.namespace == "storage"  # the pod's, from the namespace file
    assert connection.config.cluster.server == "https://10.96.0.1:443"
    server = connection.server
    assert (server.host, server.port, server.path) == ("10.96.0.1", 443, "")
    assert server.ssl_context is not None
    assert server.token() == "tok-1"
    (account / "token").write_text("tok-2\n")  # rotated by the kubelet
    assert server.token() == "tok-2"


def test_a_kubeconfig_names_the_server_and_the_namespace_defaults_to_lhtrios(
    tmp_path: Path,
) -> None:
    config = write_kubeconfig(tmp_path / "config", "http://127.0.0.1:6443/prefix/", "team-a")
    connection = kube_config(str(config))
    assert connection.namespace == "team-a"
    assert (connection.server.host, connection.server.port) == ("127.0.0.1", 6443)
    assert connection.server.path == "/prefix"
    assert connection.server.ssl_context is None
    assert connection.server.token() is None
    bare = json.loads(config.read_text())
    del bare["contexts"][0]["context"]["namespace"]
    config.write_text(json.dumps(bare))
    assert kube_config(str(config)).namespace == "lhtrio-system"


@pytest.mark.parametrize(
    ("user", "server", "problem"),
    [
        (
            {"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}},
            "https://k:6443",
            "exec plugin",
        ),
        ({"username": "admin", "password": "secret"}, "https://k:6443", "password"),
        ({}, "ftp://k:21", "not an http"),
    ],
)
def test_what_the_store_cannot_speak_is_refused_saying_so(
    tmp_path: Path, user: dict[str, object], server: str, problem: str
) -> None:
    config = write_kubeconfig(tmp_path / "config", server)
    document = json.loads(config.read_text())
    document["users"][0]["user"] = user
    config.write_text(json.dumps(document))
    with pytest.raises(StorageError, match=problem):
        kube_config(str(config))


def test_a_missing_configuration_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no Kubernetes configuration"):
        kube_config(str(tmp_path / "nothing"))
    for garbage in ("clusters: [", "- a list", "clusters: 5"):
        (tmp_path / "garbage").write_text(garbage)
        with pytest.raises(StorageError, match="no Kubernetes configuration"):
            kube_config(str(tmp_path / "garbage"))


@pytest.mark.parametrize("url", ["kubernetes", "kubernetes:/etc/kube/config"])
def test_store_urls_of_kubernetes(url: str) -> None:
    assert check_store_url(url) == url


@pytest.mark.parametrize("url", ["kubernetes:", "kube", "kubernetes:\x00x"])
def test_bad_store_urls_of_kubernetes_are_refused(url: str) -> None:
    with pytest.raises(Exception, match="unknown store"):
        check_store_url(url)


# --- watch streams over TLS ----------------------------------------------------------------------


Answer = tuple[int, list[bytes]]


async def serve_watch(
    stream: trio.abc.Stream, answer: Answer | list[Answer], seen: list[h11.Request]
) -> None:
    """Read one request, answer it with ``answer`` (status, body chunks; of a list, the first
    not given yet), then close."""
    http = h11.Connection(h11.SERVER)
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(bytes(await stream.receive_some(65536)))
            continue
        if isinstance(event, h11.Request):
            seen.append(event)
        if isinstance(event, h11.EndOfMessage):
            break
    status, chunks = answer.pop(0) if isinstance(answer, list) else answer
    headers = [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]
    await stream.send_all(http.send(h11.Response(status_code=status, headers=headers)) or b"")
    for chunk in chunks:
        await stream.send_all(http.send(h11.Data(data=chunk)) or b"")
    await stream.send_all(http.send(h11.EndOfMessage()) or b"")
    await stream.aclose()


async def tls_server(
    nursery: trio.Nursery, answer: Answer | list[Answer], seen: list[h11.Request]
) -> tuple[int, trustme.CA]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    handler = lambda stream: serve_watch(stream, answer, seen)  # noqa: E731
    serve = functools.partial(trio.serve_ssl_over_tcp, handler, 0, context, host="127.0.0.1")
    listeners = await nursery.start(serve)
    return listeners[0].transport_listener.socket.getsockname()[1], ca


def event(kind: str, version: int) -> bytes:
    obj = {"metadata": {"name": "v1", "resourceVersion": str(version)}}
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def server_for(port: int, ca: trustme.CA, token: str | None) -> Server:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return Server(host="127.0.0.1", port=port, path="/k", ssl_context=context, token=lambda: token)


async def read_all(server: Server, target: str) -> bytes:
    body = b""
    async with open_watch_stream(server, target) as stream, aclosing(stream.chunks()) as chunks:
        async for chunk in chunks:
            body += chunk
    return body


async def test_a_watch_over_tls_shows_its_token_and_reads_the_stream(nursery: trio.Nursery) -> None:
    seen: list[h11.Request] = []
    body = [event("ADDED", 5)[:7], event("ADDED", 5)[7:] + event("BOOKMARK", 9)]
    port, ca = await tls_server(nursery, (200, body), seen)
    with trio.fail_after(10):
        got = await read_all(server_for(port, ca, "tok-1"), "/api/v1/x?watch=true")
    assert got == event("ADDED", 5) + event("BOOKMARK", 9)
    (request,) = seen
    assert request.target == b"/k/api/v1/x?watch=true"
    assert (b"authorization", b"Bearer tok-1") in request.headers


async def test_a_watch_refused_with_410_is_gone(nursery: trio.Nursery) -> None:
    status = json.dumps({"kind": "Status", "code": 410, "message": "too old"}).encode()
    port, ca = await tls_server(nursery, (410, [status]), [])
    with trio.fail_after(10), pytest.raises(GoneError, match="too old"):
        await read_all(server_for(port, ca, None), "/w")


async def test_a_server_that_is_not_trusted_is_not_watched(nursery: trio.Nursery) -> None:
    port, _ = await tls_server(nursery, (200, []), [])
    stranger = trustme.CA()  # trusts another CA
    with trio.fail_after(10), pytest.raises(WatchBrokenError, match="did not answer"):
        await read_all(server_for(port, stranger, "tok"), "/w")


async def test_nobody_listening_breaks_the_watch() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    server = Server(host="127.0.0.1", port=port, path="", ssl_context=None, token=lambda: None)
    with trio.fail_after(10), pytest.raises(WatchBrokenError):
        await read_all(server, "/w")


async def test_a_watch_goes_on_from_its_last_event_or_bookmark_when_its_answer_ends(
    nursery: trio.Nursery,
) -> None:
    """The API server ends every watch after its timeout: the store watches again from the
    newest revision it saw, a bookmark's included (so a quiet watch resumes from a revision
    the server still keeps), and the caller sees one stream of events."""
    seen: list[h11.Request] = []
    answers: list[Answer] = [
        (200, [event("ADDED", 5) + event("BOOKMARK", 9)]),
        (200, [event("MODIFIED", 12)]),
        (200, []),
    ]
    port, ca = await tls_server(nursery, answers, seen)
    store = KubernetesStore(
        AsyncClient(
            KubeConfig.from_one(cluster=Cluster(server=f"https://127.0.0.1:{port}"), user=User())
        ),
        server_for(port, ca, "tok"),
        "lhtrio-system",
    )
    async with store.watch("Volume", 0) as changes:  # 0: no "still kept?" probe first
        got = []
        with trio.fail_after(10):
            async for change in changes:
                got.append((change.type, change.revision))
                if len(got) == 2:
                    break
    assert got == [(EventType.ADDED, 5), (EventType.MODIFIED, 12)]
    versions = [
        urllib.parse.parse_qs(urllib.parse.urlsplit(r.target.decode()).query)["resourceVersion"]
        for r in seen
    ]
    assert versions == [["0"], ["9"]]


async def test_a_quiet_watch_that_the_server_ends_again_and_again_is_no_failure(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each answer the server ends (its timeout) counts as an answer: only a server that does
    not answer for RECONNECT seconds fails the watch."""
    monkeypatch.setattr(kubernetes, "RECONNECT", 0.0)
    answers: list[Answer] = [(200, []), (200, []), (200, []), (200, [event("ADDED", 7)])]
    port, ca = await tls_server(nursery, answers, [])
    store = KubernetesStore(
        AsyncClient(
            KubeConfig.from_one(cluster=Cluster(server=f"https://127.0.0.1:{port}"), user=User())
        ),
        server_for(port, ca, None),
        "lhtrio-system",
    )
    async with store.watch("Volume", 0) as changes:
        with trio.fail_after(10):
            async for change in changes:
                assert (change.type, change.revision) == (EventType.ADDED, 7)
                break


def test_a_node_without_a_kubernetes_configuration_stops_saying_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(
        cli, ["node", "--name", "n1", "--data-dir", str(tmp_path), "--store", "kubernetes"]
    )
    assert result.exit_code == 1
    assert "no Kubernetes configuration in the service account, $KUBECONFIG" in result.output
