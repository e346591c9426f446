"""The watchdog every trio test runs under (:mod:`tests.hangs`): a hang fails that test alone,
unwound, with where each task waited; the test's own clock does not move it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests import hangs


async def waits_forever(unwound: list[str]) -> None:
    try:
        await trio.sleep_forever()
    finally:
        unwound.append("cleaned up")


async def two_waiting(unwound: list[str]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waits_forever, unwound, name="first")
        nursery.start_soon(waits_forever, unwound, name="second")


def test_a_hung_trio_test_is_cancelled_and_says_where_each_task_waited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hangs, "HANG_AFTER", 0.2)
    unwound: list[str] = []
    with pytest.raises(pytest.fail.Exception) as failed:
        hangs.run_watched(two_waiting, unwound)
    message = str(failed.value)
    assert "hung: still running after 0 s" in message
    assert "task first" in message
    assert "task second" in message
    assert "tests/test_hangs.py:15 waits_forever" in message
    assert unwound == ["cleaned up", "cleaned up"]  # cancelled: it unwound
    assert hangs.run_watched(trio.sleep, 0) is None  # and left no run behind


async def answer_after_an_hour() -> int:
    await trio.sleep(3600)
    return 42


def test_the_watchdog_keeps_real_time_whatever_the_tests_clock() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    assert hangs.run_watched(answer_after_an_hour, clock=clock) == 42
