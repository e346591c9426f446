"""The admin API over HTTP for the operator's commands: where it is, its token, its errors.

* **Where:** ``lhtrio --api URL`` (or ``LHTRIO_API``; default :data:`DEFAULT_API`). ``HOST:PORT``
  means ``http://HOST:PORT``. An ``https://`` API's certificate is checked against the system's
  CAs, or those of ``--ca-file FILE`` (``LHTRIO_CA_FILE``): a self-signed node's.
* **The token** goes with every call (``Authorization: Bearer TOKEN``; reads need it too unless
  the node runs with ``--api-read-anonymous``), read when the first call is made, so ``--help``
  needs none: ``--token-file FILE`` given on the command line, else ``LHTRIO_TOKEN`` (the token
  itself), else ``LHTRIO_TOKEN_FILE``; surrounding whitespace is stripped. A read whose token
  cannot be read goes without one (the node may answer anonymous reads); if it is refused (401),
  the error says why the token could not be read. A node keeps its token in
  ``DATA_DIR/api-token``.
* **Errors** are mapped once, in :meth:`ApiClient.request`, to an :class:`ApiError` carrying its
  exit code (:class:`Exit`); :class:`lhtrio.admin.groups.ApiGroup` prints ``error: MESSAGE`` on
  stderr and exits with it. The API's own errors are ``{"code", "message", "details"}``: their
  message is printed.

Synchronous httpx: one command is a handful of requests made one after the other.
"""

from __future__ import annotations

import enum
import os
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import attrs
import click
import httpx
from click.core import ParameterSource

__all__ = [
    "API_ENV",
    "CA_FILE_ENV",
    "DEFAULT_API",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "Admin",
    "ApiClient",
    "ApiError",
    "Exit",
    "admin_client",
    "api_options",
    "install",
]

API_ENV: Final = "LHTRIO_API"
TOKEN_ENV: Final = "LHTRIO_TOKEN"
TOKEN_FILE_ENV: Final = "LHTRIO_TOKEN_FILE"
CA_FILE_ENV: Final = "LHTRIO_CA_FILE"
DEFAULT_API: Final = "http://127.0.0.1:9500"

#: Seconds to connect, and to wait for an answer, before the API counts as unreachable. An
#: operation needing the engine may attach the volume for the call, for up to 60 s: its own
#: error (503) comes before the answer's deadline.
CONNECT_TIMEOUT: Final = 5.0
ANSWER_TIMEOUT: Final = 90.0
#: Seconds a watch stream may stay silent before it counts as broken (and is opened again).
STREAM_SILENCE: Final = 60.0

_TOKEN_HELP: Final = (
    f"a node keeps its token in DATA_DIR/api-token (or its --api-token-file): give it with "
    f"lhtrio --token-file FILE, {TOKEN_ENV}=TOKEN or {TOKEN_FILE_ENV}=FILE"
)


class Exit(enum.IntEnum):
    """The exit codes of the admin commands (``docs/cli.md``)."""

    ERROR = 1
    USAGE = 2  # click's own, for bad arguments
    NOT_FOUND = 3
    CONFLICT = 4
    UNREACHABLE = 5
    UNAUTHORIZED = 6


#: 422 (the object rules the request out as it is) is a conflict with its state, as 409 is.
_EXITS: Final = {
    401: Exit.UNAUTHORIZED,
    404: Exit.NOT_FOUND,
    409: Exit.CONFLICT,
    422: Exit.CONFLICT,
}


#: What a 404 for one object of a collection adds: where the ones there are are listed.
_LISTS: Final = {
    "volumes": "lhtrio volume ls lists the volumes",
    "nodes": "lhtrio node ls lists the nodes",
    "replicas": "lhtrio replica ls lists the replicas",
    "engines": "lhtrio engine ls lists the engines",
    "settings": "lhtrio setting ls lists the settings",
    "volumeattachments": "lhtrio attachment ls lists the volumes' attachments",
}


def _listed_by(what: str) -> str:
    """For ``GET /v1/volumes/NAME`` (or ``DELETE``), what lists the volumes; else ``""``
    (an action's 404 may be about a name in its body)."""
    method, _, path = what.partition(" ")
    parts = path.split("/")
    if method not in ("GET", "DELETE") or len(parts) != 4 or parts[1] != "v1":
        return ""
    return _LISTS.get(parts[2], "")


class ApiError(Exception):
    """A call that did not succeed: ``message`` for the operator, ``exit_code`` for scripts;
    ``status`` and ``code`` are the API's answer (None and "" when there was none)."""

    def __init__(
        self, message: str, exit_code: Exit, *, status: int | None = None, code: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status
        self.code = code


def api_url(text: str) -> str:
    """``text`` as the API's base URL: ``http(s)://HOST[:PORT]``; ``HOST:PORT`` is http."""
    url = text.strip()
    if "://" not in url:
        url = f"http://{url}"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise click.BadParameter(f"{text!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise click.BadParameter(
            f"{text!r} is not the API's URL: give http://HOST:PORT (a node's --api)"
        )
    return url.rstrip("/")


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return api_url(value)
    except click.BadParameter as exc:
        exc.ctx, exc.param = ctx, param
        raise


@attrs.define(eq=False)
class ApiClient:
    """Requests to the API at ``url``; ``token`` (or None) goes with every one, read when the
    first is made (``token`` raises :class:`ApiError` if it cannot be)."""

    url: str
    token: Callable[[], str | None]
    ca_file: str | None = None
    _http: httpx.Client | None = None

    def get(self, path: str, **params: str) -> Any:
        return self.request("GET", path, params=params)

    def post(
        self,
        path: str,
        body: object = None,
        *,
        action: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return self.request(
            "POST", path, body={} if body is None else body, action=action, headers=headers
        )

    def put(self, path: str, body: object) -> Any:
        return self.request("PUT", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: object = None,
        action: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The answer's JSON; every failure as an :class:`ApiError` with its exit code
        (``headers``: more to send, such as ``If-Match``)."""
        headers = {"Accept": "application/json", **(headers or {})}
        token, unread = self._token_for(method)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        query = dict(params or {})
        if action is not None:
            query["action"] = action
        what = f"{method} {path}" + (f"?action={action}" if action else "")
        try:
            response = self._client().request(
                method, path, params=query, json=body, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise self._unreachable(f"no answer to {what} (timed out: {exc})") from None
        except httpx.TransportError as exc:
            raise self._failed(what, exc) from None
        if unread is not None and response.status_code == 401:
            raise unread
        return self._answer(what, response, sent_token=token is not None)

    def _token_for(self, method: str) -> tuple[str | None, ApiError | None]:
        """The token to send, and for a read whose token could not be read, why (sent without
        one: the node may answer anonymous reads; a 401 then says why)."""
        try:
            return self.token(), None
        except ApiError as exc:
            if method not in ("GET", "HEAD"):
                raise
            return None, exc

    def probe(self, path: str) -> tuple[int, str]:
        """A plain-text GET (``/healthz``, ``/readyz``): the status and the text, whatever the
        status; :class:`ApiError` (exit 5) when there is no answer."""
        what = f"GET {path}"
        try:
            response = self._client().get(path, headers={"Accept": "text/plain"})
        except httpx.TimeoutException as exc:
            raise self._unreachable(f"no answer to {what} (timed out: {exc})") from None
        except httpx.TransportError as exc:
            raise self._failed(what, exc) from None
        return response.status_code, response.text.strip()

    @contextmanager
    def stream(
        self, path: str, params: dict[str, str], headers: dict[str, str]
    ) -> Iterator[Iterator[bytes]]:
        """A streamed GET (a watch): the body's chunks as they arrive. A refusal is an
        :class:`ApiError` as for :meth:`request`; a connection that fails or stays silent for
        :data:`STREAM_SILENCE` seconds (the API sends a keep-alive every 15 s) is an
        :class:`ApiError` with :attr:`Exit.UNREACHABLE`, before or while reading."""
        what = f"GET {path}"
        sent = {"Accept": "text/event-stream", **headers}
        token, unread = self._token_for("GET")
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        try:
            with self._client().stream(
                "GET",
                path,
                params=params,
                headers=sent,
                timeout=httpx.Timeout(STREAM_SILENCE, connect=CONNECT_TIMEOUT),
            ) as response:
                if not response.is_success:
                    response.read()
                    if unread is not None and response.status_code == 401:
                        raise unread
                    self._answer(what, response, sent_token=token is not None)
                yield self._chunks(what, response)
        except httpx.TimeoutException as exc:
            raise self._unreachable(f"no answer to {what} (timed out: {exc})") from None
        except httpx.TransportError as exc:
            raise self._failed(what, exc) from None

    def _chunks(self, what: str, response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_bytes()
        except httpx.TimeoutException:
            raise self._unreachable(
                f"{what}: nothing for {STREAM_SILENCE:g} s (no keep-alive either)"
            ) from None
        except httpx.TransportError as exc:
            raise self._failed(f"{what} (a stream)", exc) from None

    def _client(self) -> httpx.Client:
        if self._http is None:
            verify: ssl.SSLContext | bool = True
            if self.ca_file is not None:
                try:
                    verify = ssl.create_default_context(cafile=self.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise ApiError(
                        f"cannot use {self.ca_file} (--ca-file, {CA_FILE_ENV}) as the CA that "
                        f"signed the API's certificate: {exc}; give a PEM file of certificates",
                        Exit.ERROR,
                    ) from None
            self._http = httpx.Client(
                base_url=self.url,
                timeout=httpx.Timeout(ANSWER_TIMEOUT, connect=CONNECT_TIMEOUT),
                verify=verify,
            )
        return self._http

    def _failed(self, what: str, exc: httpx.TransportError) -> ApiError:
        """A transport failure: the API unreachable, or its certificate not trusted."""
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or isinstance(exc.__cause__, ssl.SSLError):
            trusted = f"the CA of {self.ca_file}" if self.ca_file else "the system's CAs"
            return ApiError(
                f"{what}: the certificate of the admin API at {self.url} is not trusted by "
                f"{trusted} ({exc}); give the CA that signed it with lhtrio --ca-file FILE or "
                f"{CA_FILE_ENV}",
                Exit.UNREACHABLE,
            )
        return self._unreachable(f"{what} failed: {str(exc) or type(exc).__name__}")

    def _unreachable(self, problem: str) -> ApiError:
        return ApiError(
            f"cannot reach the admin API at {self.url}: {problem}; is a node serving it there "
            f"(lhtrio node --api)? Give its URL with lhtrio --api URL or {API_ENV}",
            Exit.UNREACHABLE,
        )

    def _answer(self, what: str, response: httpx.Response, *, sent_token: bool) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            if body is None and response.content:
                raise ApiError(
                    f"{what}: the answer of {self.url} is not JSON: is it lhtrio's admin API?",
                    Exit.ERROR,
                    status=response.status_code,
                )
            return body
        status = response.status_code
        problem = body if isinstance(body, dict) else {}
        message = str(problem.get("message") or f"{what}: HTTP {status} {response.reason_phrase}")
        if status == 401:
            given = "" if sent_token else "no token was given; "
            message = f"{message} ({given}{_TOKEN_HELP})"
        elif status == 404 and (listed := _listed_by(what)):
            message = f"{message}: {listed}"
        raise ApiError(
            message,
            _EXITS.get(status, Exit.ERROR),
            status=status,
            code=str(problem.get("code") or ""),
        )

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


@attrs.define(eq=False)
class Admin:
    """What the root ``lhtrio`` options say about the API (kept on the root context); the client
    is made when a command first calls :meth:`client`, and closed with the context."""

    url: str
    token_file: str | None
    token_file_given: bool  # on the command line (which wins over LHTRIO_TOKEN)
    ca_file: str | None = None
    _client: ApiClient | None = None

    def client(self) -> ApiClient:
        if self._client is None:
            self._client = ApiClient(self.url, self.token, self.ca_file)
        return self._client

    def token(self) -> str | None:
        """The token: --token-file FILE, else LHTRIO_TOKEN, else LHTRIO_TOKEN_FILE; None if
        none is given (the API then answers 401, and the error says where tokens are)."""
        direct = os.environ.get(TOKEN_ENV, "").strip()
        if self.token_file is not None and (self.token_file_given or not direct):
            source = "--token-file" if self.token_file_given else TOKEN_FILE_ENV
            try:
                with open(self.token_file, encoding="utf-8") as file:
                    token = file.read().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ApiError(
                    f"cannot read the API token from {self.token_file} ({source}): {exc}",
                    Exit.UNAUTHORIZED,
                ) from None
            if not token:
                raise ApiError(
                    f"the API token file {self.token_file} ({source}) is empty: {_TOKEN_HELP}",
                    Exit.UNAUTHORIZED,
                )
            return token
        return direct or None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def api_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The root command's ``--api URL``, ``--token-file FILE`` and ``--ca-file FILE`` (``api``,
    ``token_file``, ``ca_file``): give them to :func:`install` in its callback. None is needed
    unless the API is called."""
    func = click.option(
        "--ca-file",
        metavar="FILE",
        envvar=CA_FILE_ENV,
        show_envvar=True,
        type=click.Path(exists=True, dir_okay=False),
        help="The CA certificate(s), PEM, that signed an https:// API's certificate "
        "(default: the system's CAs).",
    )(func)
    func = click.option(
        "--token-file",
        metavar="FILE",
        envvar=TOKEN_FILE_ENV,
        show_envvar=True,
        help=f"The admin API's bearer token, for changes (a node's DATA_DIR/api-token); "
        f"{TOKEN_ENV} may hold the token itself.",
    )(func)
    return click.option(
        "--api",
        metavar="URL",
        default=DEFAULT_API,
        show_default=True,
        envvar=API_ENV,
        show_envvar=True,
        callback=_check_url,
        help="The admin API of a node (lhtrio node --api), for the volume, snapshot, node and "
        "setting verbs.",
    )(func)


def install(
    ctx: click.Context, api: str, token_file: str | None, ca_file: str | None = None
) -> None:
    """Keep the API's :class:`Admin` on ``ctx`` (the root context) for the verbs below it."""
    given = ctx.get_parameter_source("token_file") is ParameterSource.COMMANDLINE
    admin = Admin(api, token_file, given, ca_file)
    ctx.obj = admin
    ctx.call_on_close(admin.close)


def admin_client() -> ApiClient:
    """The API client of the running command (the root command installed its :class:`Admin`)."""
    admin = click.get_current_context().find_object(Admin)
    if admin is None:
        raise RuntimeError("lhtrio's root command did not install the admin API's options")
    return admin.client()
