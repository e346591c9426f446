"""Times as lhtrio writes and reads them: whatever is accepted is written back and read again."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.times import format_time, parse_time, utc, utc_now


def test_years_before_1000_get_four_digits() -> None:
    assert format_time(dt.datetime(999, 6, 1, tzinfo=dt.UTC)) == "0999-06-01T00:00:00Z"
    assert format_time(dt.datetime(1, 1, 1, tzinfo=dt.UTC)) == "0001-01-01T00:00:00Z"
    assert parse_time("0999-06-01T00:00:00Z") == dt.datetime(999, 6, 1, tzinfo=dt.UTC)


def test_times_are_utc_with_whole_seconds() -> None:
    local = dt.datetime(2026, 11, 22, 12, 0, 0, 999, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_time(local) == "2026-11-22T10:00:00Z"
    assert parse_time("2026-11-22T12:00:00.75+02:00") == dt.datetime(
        2026, 11, 22, 10, tzinfo=dt.UTC
    )
    assert utc_now().microsecond == 0
    assert utc_now().tzinfo is dt.UTC


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("9999-12-31T23:59:59-14:00", "outside the years 0001-9999"),
        ("0001-01-01T00:00:00+01:00", "outside the years 0001-9999"),
        ("2026-11-22T10:00:00", "time zone"),
        ("2026-11-22", "time zone"),
        ("noon", "not an RFC 3339 time"),
        ("", "not an RFC 3339 time"),
        ("2026-11-22T25:00:00Z", "not an RFC 3339 time"),
    ],
)
def test_times_that_cannot_be_written_back_are_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgumentError, match=problem):
        parse_time(text)


@pytest.mark.parametrize("value", [None, 5, b"2026-11-22T10:00:00Z", ["x"]])
def test_only_strings_are_parsed(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="expected an RFC 3339 time"):
        parse_time(value)


def test_naive_times_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="no time zone"):
        format_time(dt.datetime(2026, 1, 1))
    with pytest.raises(InvalidArgumentError, match="no time zone"):
        utc(dt.datetime(2026, 1, 1))


@given(st.datetimes(timezones=st.timezones()))
def test_any_aware_time_is_written_and_read_back_or_refused(value: dt.datetime) -> None:
    try:
        text = format_time(value)
    except InvalidArgumentError:
        # Only a time that leaves the calendar once converted to UTC.
        with pytest.raises((OverflowError, ValueError)):
            value.astimezone(dt.UTC)
        return
    assert len(text) == 20
    assert text.endswith("Z")
    again = parse_time(text)
    assert again == value.astimezone(dt.UTC).replace(microsecond=0)
    assert format_time(again) == text


@given(st.text(max_size=40))
def test_parse_either_gives_a_time_that_formats_back_or_refuses(text: str) -> None:
    try:
        value = parse_time(text)
    except InvalidArgumentError:
        return
    assert parse_time(format_time(value)) == value
