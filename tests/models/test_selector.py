"""Label selectors, Kubernetes' equality-based syntax: parsed strictly, matched as Kubernetes
matches them (``k!=v`` holds when the key is absent)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.selector import Operator, Requirement, Selector, parse_selector

LABELS = {"app": "db", "tier": "gold", "example.com/team": "storage"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app=db", True),
        ("app==db", True),
        ("app=web", False),
        ("app!=web", True),
        ("missing!=x", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=db,tier=gold", True),
        ("app=db,tier=silver", False),
        (" app = db , example.com/team=storage ", True),
        ("app=", False),
    ],
)
def test_selectors_match_as_kubernetes_does(text: str, matches: bool) -> None:
    assert parse_selector(text).matches(LABELS) is matches


def test_requirements_are_read_apart() -> None:
    assert parse_selector("a=1,b!=2,c,!d") == Selector(
        (
            Requirement("a", Operator.EQUALS, "1"),
            Requirement("b", Operator.NOT_EQUALS, "2"),
            Requirement("c", Operator.EXISTS),
            Requirement("d", Operator.NOT_EXISTS),
        )
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("app in (db,web)", "set-based"),
        ("app notin (db)", "set-based"),
        ("a,,b", "empty part"),
        (",", "empty part"),
        ("=db", "label"),
        ("a b=c", "label"),
        ("app=a b", "label"),
        ("app=db=web", "label"),
        ("Example.com/x=y", "label"),
        ("!", "label"),
        ("x" * 5000, "limit"),
    ],
)
def test_bad_selectors_are_refused_saying_why(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgumentError, match=problem):
        parse_selector(text)


@given(st.text(max_size=50))
def test_any_text_parses_or_is_refused(text: str) -> None:
    """The fuzz invariant: a selector or InvalidArgumentError, nothing else."""
    try:
        selector = parse_selector(text)
    except InvalidArgumentError:
        return
    selector.matches(LABELS)
