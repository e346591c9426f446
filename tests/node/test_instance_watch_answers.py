"""An instance watch answers only what changed since the caller's last answer."""

from __future__ import annotations

import attrs

from lhtrio.instances.watch import KEEP, WatchAnswers
from lhtrio.models.instance import Instance, InstanceKind, InstanceState


def _instance(name: str, state: InstanceState = InstanceState.RUNNING) -> Instance:
    return Instance(
        name=name,
        type=InstanceKind.REPLICA,
        volume="v",
        state=state,
        address=f"tcp://n:{len(name)}",
        port=1,
        size=4096,
        error="",
    )


def test_a_caller_that_names_its_last_answer_gets_what_changed_and_what_left() -> None:
    answers = WatchAnswers(base=1)
    a, b, c = _instance("a"), _instance("b"), _instance("c")
    first = answers.answer(1, [a, b])
    assert first.complete
    assert [i.name for i in first.instances] == ["a", "b"]
    b2 = attrs.evolve(b, state=InstanceState.ERROR, error="gone wrong")
    second = answers.answer(2, [a, b2, c], since=first.answer)
    assert not second.complete
    assert second.instances == [b2, c]
    assert second.removed == []
    third = answers.answer(3, [b2], since=second.answer)
    assert (third.instances, third.removed) == ([], ["a", "c"])


def test_each_caller_is_answered_against_its_own_last_answer() -> None:
    """Two callers at one version: the baseline is the answer each was given."""
    answers = WatchAnswers(base=1)
    a = _instance("a")
    mine = answers.answer(1, [a])
    a2 = attrs.evolve(a, error="changed without a new version")
    theirs = answers.answer(1, [a2])
    assert answers.answer(1, [a], since=mine.answer).instances == []
    assert answers.answer(1, [a], since=theirs.answer).instances == [a]


def test_a_forgotten_or_unknown_answer_gets_every_instance() -> None:
    answers = WatchAnswers(base=1)
    first = answers.answer(1, [_instance("a")])
    for version in range(KEEP):
        answers.answer(2 + version, [_instance("a")])
    forgotten = answers.answer(20, [_instance("a"), _instance("b")], since=first.answer)
    assert forgotten.complete
    assert [i.name for i in forgotten.instances] == ["a", "b"]
    # Another node process numbers its answers from its own base: it knows none of these.
    assert WatchAnswers(base=1000).answer(1, [_instance("a")], since=forgotten.answer).complete
