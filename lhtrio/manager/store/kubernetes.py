"""The Kubernetes store: desired state as custom resources of the cluster lhtrio runs in.

``lhtrio node --store kubernetes`` (in a pod: the service account's token, CA and namespace) or
``--store kubernetes:KUBECONFIG`` (a kubeconfig file: its current context, and its namespace or
``lhtrio-system``), resolved by :mod:`lhtrio.manager.store.kube_connect`. Every object lives in
that one namespace; which Kubernetes resource keeps each kind, and how documents and objects turn
into one another, is :mod:`lhtrio.manager.store.kube_format`'s. The rules are
:mod:`lhtrio.manager.store.rules`, as for every backend, checked on the object as read before
anything is sent.

**The client** is lightkube's ``AsyncClient`` for every call: it runs natively under trio (it is
built on ``httpx2`` over anyio), reads kubeconfigs and in-cluster service accounts (re-reading
the rotated token), and speaks the API's gets, lists, creates and patches; only this store's
modules import it (an import-linter contract says so). Its asyncio-only paths are avoided
(``on_error`` retries that call ``asyncio.sleep``, exec credential plugins). A delete goes
through its request builder because its ``delete`` takes no preconditions and drops the answer
(the object, when finalizers keep it). Watches are not lightkube's (see below).

**Writes.** ``create`` is a POST, then, when the document has a status, a patch of
``/status`` (the API server drops a new custom resource's status): two revisions, and watchers
see the object first without its status. ``update`` reads the object, applies the rules, and
sends merge patches of only what changed, each guarded by the version it was read at: the spec
and metadata through the main resource, then the status through ``/status`` (see
:func:`~lhtrio.manager.store.kube_format.plan_update`). When both changed, the status patch is
guarded by the version the first patch made; if another writer came between the two, the
update is a ConflictError with its spec written, and the caller's read-modify-write loop
(:meth:`lhtrio.manager.objects.Objects.change`) reads again and writes the status. A change
that changes nothing still takes a new revision (a "touch" annotation), as the contract says.
``delete`` is a DELETE with the caller's version as a precondition; with finalizers the API
server only sets ``deletionTimestamp``, and an update that empties them removes the object, as
:mod:`~lhtrio.manager.store.rules` says.

**Watches** list nothing themselves: they watch from the revision given, asking for bookmarks
(the API server's periodic "nothing before this revision is left"), over h11 on connections of
their own (:mod:`lhtrio.manager.store.kube_watch`: lightkube's watch leaves httpx2's generators to
the garbage collector when it stops early, which trio reports), and a watch whose connection
drops or ends reconnects from the last revision it saw, event or bookmark, pausing as
:class:`~lhtrio.manager.store.reconnect.Backoff` says for at most :data:`RECONNECT` seconds.
Before a watch starts, a list at exactly its revision tells whether the API server still keeps
it; a revision it compacted (410 Gone, then or later) is GoneError, and the runner lists again.

**Compaction** is the API server's: it compacts etcd every few minutes by itself, and
:meth:`KubernetesStore.compact` does nothing unless given a ``compactor`` (the tests compact the
etcd under their API double).

**Errors.** 404 on an object is NotFoundError, 409 AlreadyExistsError or ConflictError, 400 and
422 InvalidArgumentError (a name Kubernetes refuses: object names are lowercase RFC 1123
subdomains there), 410 GoneError; the API server unreachable, refusing the service account (401,
403), or missing lhtrio's CRDs is StorageError (the admin API answers 503).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
)
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager, contextmanager
from typing import Any, Final

import httpx2
import trio
from lightkube import ApiError, AsyncClient
from lightkube.core import resource as lightkube_resource
from lightkube.generic_resource import GenericNamespacedResource, GenericNamespacedStatus
from lightkube.types import PatchType

from lhtrio.errors import (
    AlreadyExistsError,
    ConflictError,
    GoneError,
    InvalidArgumentError,
    NotFoundError,
    StorageError,
)
from lhtrio.manager.store import rules
from lhtrio.manager.store.api import Document, EventType, Listing, WatchEvent
from lhtrio.manager.store.kube_connect import kube_config
from lhtrio.manager.store.kube_format import (
    Resource,
    WatchBrokenError,
    WatchLines,
    from_kube,
    plan_update,
    resource_of,
    to_kube,
    watch_event,
    watch_target,
)
from lhtrio.manager.store.kube_watch import Server, open_watch_stream
from lhtrio.manager.store.reconnect import Backoff

__all__ = [
    "PAGE",
    "RECONNECT",
    "WATCH_TIMEOUT",
    "KubernetesStore",
    "open_kubernetes_store",
]

logger = logging.getLogger(__name__)

#: A list reads this many objects per call.
PAGE: Final = 500
#: How long a dropped watch keeps trying to reconnect (seconds) before it fails.
RECONNECT: Final = 10.0
#: The API server ends each watch after this long (seconds); the watch goes on from its revision.
WATCH_TIMEOUT: Final = 300
#: One call's timeout (seconds; a watch's reads have none).
REQUEST_TIMEOUT: Final = 10.0
#: The field manager of every write (the API server's ``managedFields``).
FIELD_MANAGER: Final = "lhtrio"

#: ``await compactor(revision)``: compact the etcd under the API server (tests).
Compactor = Callable[[int], Awaitable[None]]
Obj = dict[str, Any]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _classes(resource: Resource) -> tuple[type[Any], type[Any]]:
    """lightkube's generic classes of ``resource`` and of its status, made here rather than with
    ``create_namespaced_resource``: that registers them process-wide, where a typed model of the
    same kind (a Lease) would be answered instead of a plain map."""
    info = lightkube_resource.ApiInfo(
        resource=lightkube_resource.ResourceDef(
            resource.group, resource.version, resource.kube_kind
        ),
        plural=resource.plural,
        verbs=["delete", "get", "list", "patch", "post", "put", "watch"],
    )
    status_info = lightkube_resource.ApiInfo(
        resource=info.resource,
        parent=info.resource,
        plural=resource.plural,
        verbs=["get", "patch", "put"],
        action="status",
    )
    main = type(resource.kube_kind, (GenericNamespacedResource,), {"_api_info": info})
    status = type(
        f"{resource.kube_kind}Status", (GenericNamespacedStatus,), {"_api_info": status_info}
    )
    return main, status


def _code(exc: httpx2.HTTPStatusError) -> int:
    if isinstance(exc, ApiError) and exc.status.code:
        return int(exc.status.code)
    return exc.response.status_code


def _reason(exc: httpx2.HTTPStatusError) -> str:
    return str(exc.status.reason or "") if isinstance(exc, ApiError) else ""


def _message(exc: httpx2.HTTPStatusError) -> str:
    if isinstance(exc, ApiError) and exc.status.message:
        return str(exc.status.message)
    return str(exc)


def _details_name(exc: httpx2.HTTPStatusError) -> str | None:
    details = exc.status.details if isinstance(exc, ApiError) else None
    return str(details.name) if details is not None and details.name else None


class KubernetesStore:
    """:class:`~lhtrio.manager.store.api.Store` on a Kubernetes API server; get one from
    :func:`open_kubernetes_store`."""

    def __init__(
        self,
        client: AsyncClient,
        server: Server,
        namespace: str,
        *,
        compactor: Compactor | None = None,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.client = client
        self.server = server
        self.namespace = namespace
        self._compactor = compactor
        self._clock = clock
        self._made: dict[str, tuple[type[Any], type[Any]]] = {}

    # --- plumbing ----------------------------------------------------------------------------

    def _cls(self, resource: Resource, *, status: bool = False) -> type[Any]:
        if resource.kind not in self._made:
            self._made[resource.kind] = _classes(resource)
        main, of_status = self._made[resource.kind]
        return of_status if status else main

    @contextmanager
    def _errors(self, what: str, name: str | None = None) -> Iterator[None]:
        """lightkube's and httpx2's errors as lhtrio's (see the module docstring)."""
        try:
            yield
        except httpx2.HTTPStatusError as exc:
            code, message = _code(exc), _message(exc)
            if code == 404 and name is not None and _details_name(exc) == name:
                raise NotFoundError(f"{what} does not exist") from None
            if code == 409 and _reason(exc) == "AlreadyExists":
                raise AlreadyExistsError(f"{what} exists already") from None
            if code == 409:
                raise ConflictError(
                    f"{what} was changed since it was read ({message}): read it again and retry"
                ) from None
            if code in (400, 422):
                raise InvalidArgumentError(
                    f"{what}: the API server refused it: {message}"
                ) from None
            if code == 410:
                raise GoneError(f"{what}: {message}: list again") from None
            if code == 404:
                raise StorageError(
                    f"{what}: the API server has no such resource in namespace "
                    f"{self.namespace!r} ({message}): are lhtrio's CRDs installed "
                    "(kubectl apply -k deploy/)?"
                ) from None
            raise StorageError(f"{what}: the API server answered {code}: {message}") from None
        except httpx2.HTTPError as exc:
            raise StorageError(f"{what}: the API server did not answer: {exc!r}") from None

    async def _read(self, resource: Resource, name: str) -> Obj:
        """The object ``name``; NotFoundError if there is none, or it is not lhtrio's (a Lease
        or Event of the namespace without lhtrio's label)."""
        with self._errors(f"{resource.kind} {name!r}", name):
            found = dict(await self.client.get(self._cls(resource), name, namespace=self.namespace))
        labels = (found.get("metadata") or {}).get("labels") or {}
        if resource.selector.items() - labels.items():
            raise NotFoundError(
                f"{resource.kind} {name!r} does not exist (a {resource.kube_kind} "
                "of that name is not lhtrio's)"
            )
        return found

    async def _patch(
        self, resource: Resource, name: str, patch: Obj, version: str, *, status: bool
    ) -> Obj:
        body = {**patch, "metadata": {**patch.get("metadata", {}), "resourceVersion": version}}
        with self._errors(f"{resource.kind} {name!r}", name):
            answer = await self.client.patch(
                self._cls(resource, status=status),
                name,
                body,
                namespace=self.namespace,
                patch_type=PatchType.MERGE,
            )
        return dict(answer)

    async def _request(
        self,
        method: str,
        resource: Resource,
        *,
        name: str | None = None,
        params: Obj | None = None,
        data: Obj | None = None,
    ) -> Any:
        """A call through lightkube's request builder (for what its verbs cannot say)."""
        generic = self.client._client
        request = generic.prepare_request(
            method, res=self._cls(resource), name=name, namespace=self.namespace, params=params
        )
        request.data = data
        request.response_type = self._cls(resource)
        answer = await generic.send(generic.build_adapter_request(request))  # type: ignore[no-untyped-call]
        return generic.handle_response(method, answer, request)

    # --- the interface -------------------------------------------------------------------------

    async def get(self, kind: str, name: str) -> Document:
        rules.check_key(kind, name)
        resource = resource_of(kind)
        return from_kube(resource, await self._read(resource, name))

    async def list(self, kind: str, *, labels: Mapping[str, str] | None = None) -> Listing:
        rules.check_key(kind, "x")
        resource = resource_of(kind)
        selector = rules.check_labels(labels)
        # the API server selects (``labelSelector``); the kind's own label wins over a selector
        # that names it too, and the answer is checked again: a label the kind's label hides (it
        # is no document's), or text that the selector's syntax would read otherwise, selects
        # nothing more than the selector says. Values Kubernetes cannot hold are its 400:
        # InvalidArgumentError.
        with self._errors(f"the list of {kind}"):
            found = self.client.list(
                self._cls(resource),
                namespace=self.namespace,
                chunk_size=PAGE,
                labels=dict[str, Any]({**selector, **resource.selector}) or None,
            )
            documents = [from_kube(resource, dict(obj)) async for obj in found]
            revision = int(found.resourceVersion)
        documents = [d for d in documents if rules.selects(selector, d)]
        documents.sort(key=lambda d: str(rules.metadata(d)["name"]))
        return Listing(documents, revision)

    async def create(self, document: Document) -> Document:
        kind, name = rules.key(document)
        resource = resource_of(kind)
        change = rules.create(None, document, revision=0, uid="", now=self._clock())
        assert change.stored is not None
        obj = to_kube(resource, change.stored, self.namespace)
        status = obj.pop("status", None) if resource.status else None
        try:
            with self._errors(f"{kind} {name!r}"):
                made = dict(await self.client.create(self._cls(resource).from_dict(obj)))
        except AlreadyExistsError:
            if resource.labelled:
                try:
                    await self._read(resource, name)
                except NotFoundError:  # one of that name, not lhtrio's: no retry makes one
                    raise StorageError(
                        f"a {resource.kube_kind} named {name!r} in namespace "
                        f"{self.namespace!r} is not lhtrio's: remove or rename it"
                    ) from None
            raise
        if status:
            version = str(made["metadata"]["resourceVersion"])
            made = await self._patch(resource, name, {"status": status}, version, status=True)
        return from_kube(resource, made)

    async def update(self, document: Document) -> Document:
        kind, name = rules.key(document)
        resource = resource_of(kind)
        current = await self._read(resource, name)
        change = rules.update(from_kube(resource, current), document, revision=0)
        assert change.event is not None
        wanted = change.stored if change.stored is not None else change.event.document
        writes = plan_update(resource, current, wanted, self.namespace)
        version = str(current["metadata"]["resourceVersion"])
        obj = current
        if writes.main is not None:
            obj = await self._patch(resource, name, writes.main, version, status=False)
            if change.stored is None:  # the last finalizer went: the object with it
                return from_kube(resource, obj)
        if writes.status is not None:
            obj = await self._patch(
                resource, name, writes.status, str(obj["metadata"]["resourceVersion"]), status=True
            )
        return from_kube(resource, obj)

    async def delete(
        self, kind: str, name: str, *, resource_version: str | None = None
    ) -> Document | None:
        rules.check_key(kind, name)
        resource = resource_of(kind)
        preconditions: Obj = {}
        if resource.labelled:  # never another's Lease or Event of that name
            preconditions["uid"] = (await self._read(resource, name))["metadata"]["uid"]
        if resource_version is not None:
            preconditions["resourceVersion"] = resource_version
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if preconditions:
            options["preconditions"] = preconditions
        with self._errors(f"{kind} {name!r}", name):
            answer = await self._request("delete", resource, name=name, data=options)
        obj = dict(answer) if answer is not None else {}
        meta = obj.get("metadata") or {}
        if (
            obj.get("kind") == resource.kube_kind
            and meta.get("deletionTimestamp")
            and meta.get("finalizers")
        ):
            return from_kube(resource, obj)
        return None

    async def compact(self, revision: int) -> None:
        if self._compactor is not None:
            await self._compactor(revision)

    def watch(
        self, kind: str, revision: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        return self._watch(kind, revision)

    @asynccontextmanager
    async def _watch(self, kind: str, revision: int) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        rules.check_key(kind, "x")
        resource = resource_of(kind)
        await self._check_kept(resource, revision)  # GoneError now, not at the first read
        events = self._events(resource, revision)
        try:
            yield events
        finally:
            await events.aclose()  # the block may leave mid-iteration

    async def _check_kept(self, resource: Resource, revision: int) -> None:
        """GoneError if the API server no longer keeps ``revision`` (a list at it fails)."""
        if revision <= 0:
            return
        params = {"resourceVersion": str(revision), "resourceVersionMatch": "Exact", "limit": 1}
        try:
            with self._errors(f"the watch of {resource.kind} from revision {revision}"):
                await self._request("list", resource, params=params)
        except GoneError:
            raise GoneError(
                f"revision {revision} was compacted (the API server keeps no changes before "
                f"it): list {resource.kind} again and watch from the list's revision"
            ) from None

    async def _events(self, resource: Resource, revision: int) -> AsyncGenerator[WatchEvent, None]:
        seen = revision
        where = f"the API server ({self.client.config.cluster.server})"
        backoff = Backoff(f"the watch of {resource.kind}", where, limit=RECONNECT)
        while True:
            failure: BaseException | None = None
            target = watch_target(resource, self.namespace, seen, WATCH_TIMEOUT)
            try:
                async with open_watch_stream(self.server, target) as stream:
                    backoff.answered(progress=False)  # it answered: a quiet watch is no failure
                    lines = WatchLines()
                    async with aclosing(stream.chunks()) as chunks:
                        async for chunk in chunks:
                            for line in lines.feed(chunk):
                                change, obj = watch_event(line)
                                backoff.answered(progress=True)
                                version = int(obj["metadata"]["resourceVersion"])
                                if not isinstance(change, EventType):  # a bookmark
                                    seen = max(seen, version)
                                    continue
                                seen = version
                                yield WatchEvent(change, from_kube(resource, obj), version)
            except GoneError as exc:
                raise GoneError(
                    f"the watch of {resource.kind} fell behind revision {seen} ({exc.message}): "
                    f"list {resource.kind} again"
                ) from None
            except WatchBrokenError as exc:
                failure = exc
            await backoff.wait(failure)  # dropped or ended: again from the revision ``seen``


@asynccontextmanager
async def open_kubernetes_store(
    target: str | None,
    *,
    namespace: str | None = None,
    compactor: Compactor | None = None,
    clock: Callable[[], dt.datetime] = _now,
) -> AsyncIterator[KubernetesStore]:
    """The store on the API server ``target`` names (see :func:`kube_config`) until the block
    ends; StorageError at once if it does not answer or has no lhtrio CRDs."""
    connection = await trio.to_thread.run_sync(kube_config, target)
    namespace = namespace or connection.namespace
    client = AsyncClient(
        connection.config,
        namespace=namespace,
        timeout=httpx2.Timeout(REQUEST_TIMEOUT),
        field_manager=FIELD_MANAGER,
        trust_env=False,
    )
    try:
        store = KubernetesStore(
            client, connection.server, namespace, compactor=compactor, clock=clock
        )
        await store.list("Setting")  # the API server answers, the CRDs are there
        yield store
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await client.aclose()
