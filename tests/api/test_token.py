"""The API token: the node's own (``DATA_DIR/api-token``, 0600, made once and reused) or a file
the operator gives."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lhtrio.api import node_token, read_token
from lhtrio.api.token import TOKEN_FILE
from lhtrio.errors import InvalidArgumentError


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would make every new file world-readable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_the_node_token_is_made_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    token = node_token(str(tmp_path))
    path = tmp_path / TOKEN_FILE
    assert mode(path) == 0o600
    assert path.read_text() == f"{token}\n"
    assert len(token) >= 43  # 32 random bytes
    assert os.listdir(tmp_path) == [TOKEN_FILE]  # no temporary file left

    assert node_token(str(tmp_path)) == token
    assert path.read_text() == f"{token}\n"


def test_each_node_gets_its_own_token(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert node_token(str(tmp_path / "a")) != node_token(str(tmp_path / "b"))


def test_a_given_token_file_is_read_without_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  abc.DEF-123_~  \n")
    path.chmod(0o600)
    assert read_token(str(path)) == "abc.DEF-123_~"


@pytest.mark.parametrize(
    "content",
    [b"", b"\n  \n", b"two words", b"tab\there", b"caf\xc3\xa9", b"nul\x00", b"x" * 5000],
)
def test_a_token_file_without_a_token_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(InvalidArgumentError, match="token file"):
        read_token(str(path))


def test_a_missing_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        read_token(str(tmp_path / "nope"))


def test_a_token_file_others_can_read_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    path.write_text("t0ken\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="lhtrio.api.token"):
        assert read_token(str(path)) == "t0ken"
    assert "chmod 600" in caplog.text


def test_a_token_file_the_node_finds_is_kept(tmp_path: Path) -> None:
    """An operator's or an earlier start's file is never replaced."""
    path = tmp_path / TOKEN_FILE
    path.write_text("mine\n")
    path.chmod(0o600)
    assert node_token(str(tmp_path)) == "mine"
    assert path.read_text() == "mine\n"
