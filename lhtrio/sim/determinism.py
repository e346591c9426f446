"""One seed, one history: what makes a simulated run replay exactly.

:func:`run_seeded` runs an async function in a fresh ``trio.run`` on
``trio.testing.MockClock(autojump_threshold=0)`` (time moves only when every task waits, straight
to the next deadline: a simulated hour takes what its events cost), with every source of
non-determinism in reach pinned to the seed for the run's duration and restored afterwards:

* **trio's scheduler.** trio runs a batch of ready tasks in a random order (its private
  ``trio._core._run._r``) so that tests cannot depend on one. Here it is seeded, and trio's own
  deterministic mode (the one its Hypothesis plugin turns on: a batch sorted by task creation,
  then shuffled by that generator) is on, which also orders timers that expire together.
* **Threads.** The replica fsyncs and changes its metadata in ``trio.to_thread.run_sync``; a
  thread finishes in real time, and the mock clock would jump while it runs. In a simulated run
  ``trio.to_thread.run_sync`` runs its function inline (after a checkpoint): disk work takes no
  simulated time. Safe here because nothing in a simulated run blocks on another thread: replica
  connections are not threaded (the only holder of the data lock across an await would be a
  connection thread).
* **Random names.** ``uuid.uuid4`` (snapshot names, store uids) and ``secrets.token_hex``
  (replica name suffixes, tickets, same-host socket names) draw from the seeded generator.
* **The wall clock** (:data:`lhtrio.models.times.WALL_CLOCK`): a fixed epoch plus trio's clock.
* **Hash order** of strings differs between processes (``PYTHONHASHSEED``), so sets of names
  iterate differently in another process: a replay in the same process is exact, and the chaos
  session pins ``PYTHONHASHSEED=0`` so that a seed from its table replays in a test too.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import trio
import trio.testing
from trio._core import _run as trio_run  # the scheduler's generator (see above)

from lhtrio.models.times import WALL_CLOCK

__all__ = ["EPOCH", "run_seeded", "seeded"]

T = TypeVar("T")

#: Simulated time 0 on the wall clock.
EPOCH: Final = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


async def _inline(fn: Callable[..., T], *args: Any, **_: Any) -> T:
    await trio.lowlevel.checkpoint()
    return fn(*args)


@contextmanager
def seeded(seed: int) -> Iterator[random.Random]:
    """Pin trio's scheduler, threads and random names to ``seed`` until the block exits."""
    rng = random.Random(f"lhtrio-sim-names-{seed}")
    saved = (
        random.getstate(),
        trio_run._r.getstate(),
        trio_run._ALLOW_DETERMINISTIC_SCHEDULING,
        trio.to_thread.run_sync,
        uuid.uuid4,
        secrets.token_hex,
    )
    trio_run._r.seed(seed)
    random.seed(f"lhtrio-sim-global-{seed}")  # what the product draws (conflict back-off)
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio.to_thread.run_sync = _inline  # type: ignore[assignment]
    uuid.uuid4 = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)
    secrets.token_hex = lambda nbytes=32: (
        rng.getrandbits(8 * (nbytes or 32)).to_bytes(nbytes or 32, "big").hex()
    )
    try:
        yield rng
    finally:
        global_state, state, allow, run_sync, uuid4, token_hex = saved
        random.setstate(global_state)
        trio_run._r.setstate(state)
        trio_run._ALLOW_DETERMINISTIC_SCHEDULING = allow  # type: ignore[misc]
        trio.to_thread.run_sync = run_sync
        uuid.uuid4 = uuid4
        secrets.token_hex = token_hex


def _wall() -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=trio.current_time())


def run_seeded(seed: int, main: Callable[[], Awaitable[T]]) -> T:
    """``main()`` in a trio run of its own on a mock clock, everything pinned to ``seed``."""

    async def root() -> T:
        WALL_CLOCK.set(_wall)
        return await main()

    with seeded(seed):
        return trio.run(root, clock=trio.testing.MockClock(autojump_threshold=0))
