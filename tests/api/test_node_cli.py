"""``lhtrio node --api``: arguments no node could serve are usage errors before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lhtrio.cli import cli


def node(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["node", "--name", "n1", "--data-dir", str(tmp_path / "d"), *args],
        env={"LHTRIO_STORE": None},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--api", "127.0.0.1:0"], "needs --store"),
        (["--store", "memory:", "--api", "unix:/tmp/api.sock"], "TCP"),
        (["--store", "memory:", "--api", "nonsense"], "HOST:PORT"),
        (["--store", "memory:", "--api", "127.0.0.1:70000"], "port"),
        (["--store", "memory:", "--api-token-file", "/etc/hostname"], "give --api too"),
    ],
)
def test_bad_api_options_are_usage_errors(tmp_path: Path, args: list[str], says: str) -> None:
    result = node(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert not (tmp_path / "d").exists()  # nothing started


def test_the_api_options_are_in_the_help(tmp_path: Path) -> None:
    result = node(tmp_path, "--help")
    assert "--api HOST:PORT" in result.output
    assert "--api-token-file FILE" in result.output
