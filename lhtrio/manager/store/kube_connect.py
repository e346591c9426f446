"""Where the Kubernetes store's API server is and how it shows who it is: ``--store kubernetes``
(in a pod: the service account's token, CA and namespace, through lightkube's in-cluster
configuration; elsewhere ``$KUBECONFIG`` or ``~/.kube/config``) or ``--store
kubernetes:KUBECONFIG`` (that file's current context), resolved once at start into lightkube's
configuration for the calls and a :class:`~lhtrio.manager.store.kube_watch.Server` for the
watches. A bearer token (a token file is read again at each watch connection: the kubelet rotates
it) or a client certificate identify the client; exec credential plugins (asyncio-only in
lightkube), auth providers and passwords are refused with a StorageError saying so.
"""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import attrs
import yaml
from lightkube import KubeConfig
from lightkube.config.client_adapter import verify_cluster
from lightkube.config.kubeconfig import SERVICE_ACCOUNT, SingleConfig
from lightkube.config.models import User
from lightkube.core.exceptions import ConfigError

from lhtrio.errors import StorageError
from lhtrio.manager.store.kube_format import DEFAULT_NAMESPACE, WatchBrokenError
from lhtrio.manager.store.kube_watch import Server

__all__ = ["Connection", "kube_config"]


@attrs.frozen
class Connection:
    """What ``--store kubernetes[:KUBECONFIG]`` resolved to: lightkube's configuration, the same
    for the watches (:class:`~lhtrio.manager.store.kube_watch.Server`), and the namespace."""

    config: SingleConfig
    server: Server
    namespace: str


def _token(user: User | None) -> Callable[[], str | None]:
    def token() -> str | None:
        if user is None:
            return None
        if user.token_file:
            try:
                return Path(user.token_file).read_text().strip()
            except OSError as exc:
                raise WatchBrokenError(
                    f"cannot read the token file {user.token_file}: {exc}"
                ) from None
        return user.token

    return token


def kube_config(target: str | None, *, service_account: str = SERVICE_ACCOUNT) -> Connection:
    """The connection and namespace of ``--store kubernetes[:KUBECONFIG]`` (``target``: the
    kubeconfig's path, or None: the pod's service account, else ``$KUBECONFIG`` or
    ``~/.kube/config``). The namespace is the service account's (the pod's), else the
    context's, else :data:`~lhtrio.manager.store.kube_format.DEFAULT_NAMESPACE`. A bearer token
    (or token file) or a client certificate identify the client; exec plugins, auth providers
    and passwords are refused. Reads files: call it from a thread."""
    where = target or "the service account, $KUBECONFIG or ~/.kube/config"
    try:
        if target:
            config = KubeConfig.from_file(target)
        else:
            config = KubeConfig.from_env(service_account=service_account)
        single = config.get()
    except (ConfigError, OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise StorageError(f"no Kubernetes configuration in {where}: {exc}") from None
    except yaml.YAMLError as exc:  # a kubeconfig that is not YAML
        raise StorageError(f"no Kubernetes configuration in {where}: {exc}") from None
    if single is None:
        raise StorageError(f"the Kubernetes configuration in {where} has no current context")
    if single.user is None:  # a context without a user: nobody in particular
        single = single._replace(user=User())
    user = single.user
    assert user is not None
    if user.exec or user.auth_provider or user.password:
        raise StorageError(
            f"the Kubernetes configuration in {where} identifies its user with an exec plugin, an "
            "auth provider or a password, which the Kubernetes store does not support: give it a "
            "token, a token file or a client certificate"
        )
    url = urllib.parse.urlsplit(single.cluster.server)
    https = url.scheme == "https"
    if url.scheme not in ("http", "https") or not url.hostname:
        raise StorageError(
            f"the Kubernetes API server {single.cluster.server!r} is not an http(s) URL"
        )
    try:
        context = verify_cluster(single.cluster, user, single.abs_file, trust_env=False)
    except (ConfigError, OSError, ssl.SSLError) as exc:
        raise StorageError(f"the Kubernetes configuration in {where}: {exc}") from None
    server = Server(
        host=url.hostname,
        port=url.port or (443 if https else 80),
        path=url.path.rstrip("/"),
        ssl_context=context if https else None,
        token=_token(user),
    )
    return Connection(single, server, single.context.namespace or DEFAULT_NAMESPACE)
