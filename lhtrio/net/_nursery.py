"""A nursery for connection tasks that does not wrap its body's exception in a group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["open_connection_nursery"]


@asynccontextmanager
async def open_connection_nursery() -> AsyncIterator[trio.Nursery]:
    """``trio.open_nursery()`` for context managers that yield inside it.

    The background tasks of a connection (reader, writer) handle their expected failures
    themselves, so an exception group leaving the nursery almost always holds just the exception
    of the caller's ``async with`` body. That single exception is re-raised as itself, so callers
    can write ``except IdentityMismatchError``; groups of several exceptions pass unchanged.
    """
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise
