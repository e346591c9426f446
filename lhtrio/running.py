"""Running a command's trio program: SIGINT/SIGTERM as a graceful stop, errors for operators."""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click
import trio

from lhtrio.errors import LhtrioError

__all__ = ["run", "until_signalled"]


async def until_signalled(main: Callable[[trio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` until it returns.

    The first SIGINT or SIGTERM sets ``stop``: ``main`` stops gracefully (an engine drains its
    clients and flushes) and returns within its own deadline. A second signal cancels it at
    once (an engine still flushes, shielded, for a few seconds).
    """
    stop = trio.Event()
    log = logging.getLogger(__name__)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not stop.is_set():
                        log.warning("%s: stopping (send it again to stop at once)", name)
                        stop.set()
                    else:
                        log.warning("%s again: stopping at once", name)
                        nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await main(stop)
            nursery.cancel_scope.cancel()


def run(main: Any, *args: Any) -> None:
    """Run ``main`` under trio; LhtrioErrors are printed for the operator with exit code 1."""
    try:
        trio.run(functools.partial(main, *args))
    except BaseException as exc:
        errors = _leaves(exc)
        if not errors or not all(isinstance(e, LhtrioError) for e in errors):
            raise
        for error in errors:
            click.echo(f"error: {error}", err=True)
        sys.exit(1)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]
