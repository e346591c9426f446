"""The work queue's rules, driven by hand (no clock, no trio)."""

from __future__ import annotations

from lhtrio.manager.queue import WorkQueue


def test_adds_coalesce_and_names_come_out_in_order() -> None:
    queue = WorkQueue()
    for name in ("a", "b", "a", "c", "b"):
        queue.add(name)
    assert len(queue) == 3
    assert [queue.get(0), queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", "c", None]


def test_a_running_name_is_not_handed_out_again_but_runs_once_more_after() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")
    queue.add("a")
    assert queue.get(0) is None  # still running
    queue.done("a")
    assert queue.get(0) == "a"  # once, for both adds
    queue.done("a")
    assert queue.get(0) is None


def test_failures_back_off_doubling_up_to_the_cap_and_success_resets() -> None:
    queue = WorkQueue(backoff_min=0.5, backoff_max=3.0)
    queue.add("a")
    now = 0.0
    delays = []
    for _ in range(5):
        name = queue.get(now)
        assert name == "a"
        delay = queue.failed("a", now)
        delays.append(delay)
        assert queue.get(now + delay - 0.01) is None
        now += delay
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert queue.get(now) == "a"
    queue.done("a")
    queue.add("a")
    assert queue.get(now) == "a"
    assert queue.failed("a", now) == 0.5


def test_a_name_changed_while_failing_is_retried_at_once() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")  # changed while its reconcile ran
    queue.failed("a", 0)
    assert queue.get(0) == "a"


def test_an_add_brings_a_delayed_name_forward() -> None:
    queue = WorkQueue()
    queue.add_after("a", 10.0)
    assert queue.next_time() == 10.0
    assert queue.get(5.0) is None
    queue.add("a")  # changed meanwhile: now, once
    assert len(queue) == 1
    assert queue.get(5.0) == "a"
    assert queue.next_time() is None  # the later entry is gone
    queue.done("a")
    assert queue.get(10.0) is None
