"""A hung trio test fails alone, and says where it waited.

pytest-timeout ends a hung test with a signal raised inside trio's run loop: the run is abandoned
half-way (its tasks are never cancelled, its processes never stopped), and every later trio test
in the process fails with "Attempted to call run() from inside a run()". One hang then reads as
several failures, and its traceback shows only the loop's ``epoll.poll``.

So each trio test runs under a watchdog on the real clock (the test's own clock may be trio's
MockClock, whose time jumps): after :data:`HANG_AFTER` seconds it takes down every task's await
stack, then cancels the test, which unwinds as any cancelled trio code does (fixtures torn down,
servers and processes stopped), and fails with those stacks. pytest-timeout (a minute later)
stays the net for what does not unwind.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

__all__ = ["HANG_AFTER", "run_watched", "task_stacks"]

#: Seconds of real time after which a trio test counts as hung (pytest-timeout's ``timeout``
#: is a minute more; the slowest test takes about 30 s on a 2-core machine).
HANG_AFTER = 120.0

_ROOT = str(Path(__file__).resolve().parent.parent) + "/"
_OURS = (_ROOT + "lhtrio/", _ROOT + "tests/")


def task_stacks() -> str:
    """Every task of the current run, as a tree, each with where it waits: the frames of this
    project's code (or the innermost frame when there is none)."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        frames = [
            f"{frame.f_code.co_filename.removeprefix(_ROOT)}:{lineno} {frame.f_code.co_name}"
            for frame, lineno in task.iter_await_frames()
            if frame.f_code.co_filename.startswith(_OURS)
        ]
        if not frames:
            innermost = list(task.iter_await_frames())[-1:]
            frames = [f"{f.f_code.co_filename}:{n} {f.f_code.co_name}" for f, n in innermost]
        lines.append("  " * depth + f"task {task.name}")
        lines.extend("  " * depth + "    at " + frame for frame in frames)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    root = trio.lowlevel.current_root_task()
    if root is not None:
        walk(root, 0)
    return "\n".join(lines)


def run_watched(fn: Callable[..., Awaitable[Any]], *args: Any, **options: Any) -> Any:
    """``trio.run(fn, *args, **options)`` under the watchdog (pytest-trio's ``run``)."""
    return trio.run(_watched, fn, *args, **options)


async def _watched(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    token = trio.lowlevel.current_trio_token()
    scope = trio.CancelScope()
    stacks: list[str] = []

    def hung() -> None:
        stacks.append(task_stacks())
        scope.cancel()

    def wake() -> None:  # (in the timer's thread)
        with contextlib.suppress(trio.RunFinishedError):  # it ended meanwhile
            token.run_sync_soon(hung)

    timer = threading.Timer(HANG_AFTER, wake)
    timer.daemon = True
    timer.start()
    try:
        with scope:
            result = await fn(*args)
    except BaseException:
        if stacks:
            _fail(stacks[0])  # (the error the cancellation left is chained)
        raise
    finally:
        timer.cancel()
    if stacks:
        _fail(stacks[0])
    return result


def _fail(stacks: str) -> None:
    pytest.fail(
        f"hung: still running after {HANG_AFTER:.0f} s of real time, and cancelled; "
        f"where each task waited:\n{stacks}",
        pytrace=False,
    )
