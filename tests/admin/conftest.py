"""The operator's CLI against the real admin API: hypercorn serves it in the test's trio run over
an in-memory store (:mod:`tests.api.conftest`), and ``lhtrio`` runs in a worker thread
(``CliRunner``), talking HTTP to it as an operator's shell would."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pytest
import trio
from click.testing import CliRunner, Result

from lhtrio.cli import cli
from lhtrio.manager.store.api import Document
from tests.api.conftest import TOKEN, Api, api

__all__ = ["TOKEN", "Api", "Lhtrio", "api", "lhtrio", "no_env", "run_cli"]

#: Every variable the CLI reads, unset unless a test sets it.
NO_ENV: dict[str, str | None] = {
    "LHTRIO_API": None,
    "LHTRIO_TOKEN": None,
    "LHTRIO_TOKEN_FILE": None,
    "LHTRIO_CA_FILE": None,
    "LHTRIO_ENGINE": None,
    "LHTRIO_NODE": None,
}


def no_env() -> dict[str, str | None]:
    return dict(NO_ENV)


def run_cli(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    """``lhtrio ARGS`` in this thread; stdout and stderr apart (``result.stdout``, ``.stderr``)."""
    result = CliRunner().invoke(cli, list(args), env={**NO_ENV, **(env or {})})
    # Nothing may escape as a traceback: every failure is a message and an exit code.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


@attrs.frozen
class Lhtrio:
    """``await lhtrio("volume", "ls")``: the command, pointed at the API, in a worker thread."""

    api: Api

    async def __call__(
        self, *args: str, token: str | None = TOKEN, env: dict[str, str | None] | None = None
    ) -> Result:
        given = {"LHTRIO_API": self.api.url, "LHTRIO_TOKEN": token, **(env or {})}
        return await trio.to_thread.run_sync(functools.partial(run_cli, *args, env=given))

    def soon(self, nursery: trio.Nursery, *args: str) -> Callable[[], Any]:
        """Start ``lhtrio ARGS`` in the background; the returned coroutine function gives its
        result once it has exited."""
        done = trio.Event()
        results: list[Result] = []

        async def run() -> None:
            results.append(await self(*args))
            done.set()

        nursery.start_soon(run)

        async def result() -> Result:
            await done.wait()
            return results[0]

        return result

    async def document(self, kind: str, name: str) -> Document:
        return await self.api.store.inner.get(kind, name)


@pytest.fixture
def lhtrio(api: Api) -> Lhtrio:
    return Lhtrio(api)
