"""Process-wide tuning of lhtrio's long-running processes."""

from __future__ import annotations

import gc
import platform

from lhtrio.process import GEN0_THRESHOLD, tune_gc, tune_malloc


def test_tune_gc_raises_the_young_generation_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold()[0] == GEN0_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_tune_malloc_applies_on_glibc_and_only_there() -> None:
    assert tune_malloc() is (platform.libc_ver()[0] == "glibc")
