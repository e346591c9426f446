"""The admin API over HTTP for the operator's commands: where it is, its token, its errors.

* **Where:** ``lhtrio --api URL`` (or ``LHTRIO_API``; default :data:`DEFAULT_API`). ``HOST:PORT``
  means ``http://HOST:PORT``.
* **The token** goes with every call (``Authorization: Bearer TOKEN``; reads need it too unless
  the node runs with ``--api-read-anonymous``), read when the first call is made, so ``--help``
  needs none: ``--token-file FILE`` given on the command line, else ``LHTRIO_TOKEN`` (the token
  itself), else ``LHTRIO_TOKEN_FILE``; surrounding whitespace is stripped. A read whose token
  cannot be read goes without one (the node may answer anonymous reads); if it is refused (401),
  the error says why the token could not be read. A node keeps its token in
  ``DATA_DIR/api-token``.
* **Errors** are mapped once, in :meth:`ApiClient.request`, to an :class:`ApiError` carrying its
  exit code (:class:`Exit`); :class:`ApiGroup` prints ``error: MESSAGE`` on stderr and exits with
  it. The API's own errors are ``{"code", "message", "details"}``: their message is printed.

Synchronous httpx: one command is a handful of requests made one after the other.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from typing import Any, Final

import attrs
import click
import httpx
from click.core import ParameterSource

from lhtrio.output import OUTPUTS

__all__ = [
    "API_ENV",
    "DEFAULT_API",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "Admin",
    "ApiClient",
    "ApiError",
    "ApiGroup",
    "Exit",
    "admin_client",
    "api_options",
    "install",
    "json_option",
]

API_ENV: Final = "LHTRIO_API"
TOKEN_ENV: Final = "LHTRIO_TOKEN"
TOKEN_FILE_ENV: Final = "LHTRIO_TOKEN_FILE"
DEFAULT_API: Final = "http://127.0.0.1:9500"

#: Seconds to connect, and to wait for an answer, before the API counts as unreachable. An
#: operation needing the engine may attach the volume for the call, for up to 60 s: its own
#: error (503) comes before the answer's deadline.
CONNECT_TIMEOUT: Final = 5.0
ANSWER_TIMEOUT: Final = 90.0

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
    _http: httpx.Client | None = None

    def get(self, path: str, **params: str) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: object = None, *, action: str | None = None) -> Any:
        return self.request("POST", path, body={} if body is None else body, action=action)

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
    ) -> Any:
        """The answer's JSON; every failure as an :class:`ApiError` with its exit code."""
        headers = {"Accept": "application/json"}
        unread: ApiError | None = None
        try:
            token = self.token()
        except ApiError as exc:
            if method not in ("GET", "HEAD"):
                raise
            token, unread = None, exc  # the node may answer anonymous reads
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        query = dict(params or {})
        if action is not None:
            query["action"] = action
        what = f"{method} {path}" + (f"?action={action}" if action else "")
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.url,
                timeout=httpx.Timeout(ANSWER_TIMEOUT, connect=CONNECT_TIMEOUT),
            )
        try:
            response = self._http.request(method, path, params=query, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise self._unreachable(f"no answer to {what} (timed out: {exc})") from None
        except httpx.TransportError as exc:
            raise self._unreachable(f"{what} failed: {str(exc) or type(exc).__name__}") from None
        if unread is not None and response.status_code == 401:
            raise unread
        return self._answer(what, response, sent_token=token is not None)

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
    _client: ApiClient | None = None

    def client(self) -> ApiClient:
        if self._client is None:
            self._client = ApiClient(self.url, self.token)
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
    """The root command's ``--api URL`` and ``--token-file FILE`` (``api``, ``token_file``):
    give them to :func:`install` in its callback. Neither is needed unless the API is called."""
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


def install(ctx: click.Context, api: str, token_file: str | None) -> None:
    """Keep the API's :class:`Admin` on ``ctx`` (the root context) for the verbs below it."""
    given = ctx.get_parameter_source("token_file") is ParameterSource.COMMANDLINE
    admin = Admin(api, token_file, given)
    ctx.obj = admin
    ctx.call_on_close(admin.close)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-o table|json``: a table, or the API's JSON documents as received (for scripts)."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUTS),
        default="table",
        show_default=True,
        help="Print a table, or the API's JSON documents for scripts.",
    )(func)


class ApiGroup(click.Group):
    """A group of verbs over the API: an :class:`ApiError` is ``error: MESSAGE`` on stderr and
    its exit code (404: 3, 409 and 422: 4, unreachable: 5, 401: 6, anything else: 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)


def admin_client() -> ApiClient:
    """The API client of the running command (the root command installed its :class:`Admin`)."""
    admin = click.get_current_context().find_object(Admin)
    if admin is None:
        raise RuntimeError("lhtrio's root command did not install the admin API's options")
    return admin.client()
