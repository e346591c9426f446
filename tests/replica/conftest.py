"""Fixtures of the replica store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lhtrio.replica.store import Replica

from .replica_helpers import BLOCK, INSTANCE, VOLUME


@pytest.fixture
def rdir(tmp_path: Path) -> Path:
    return tmp_path / "replica"


@pytest.fixture
def replica(rdir: Path) -> Iterator[Replica]:
    r = Replica.create(str(rdir), size=64 * BLOCK, volume=VOLUME, instance=INSTANCE)
    try:
        yield r
    finally:
        r.close()
