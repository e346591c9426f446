"""``python -m lhtrio`` as an operator runs it, against the API served over HTTP: the exit codes
scripts test come out of the real process (not only out of click's test runner)."""

from __future__ import annotations

import os
import subprocess
import sys

import trio

from lhtrio.models.cluster import Volume
from tests.admin.conftest import TOKEN, Api


async def lhtrio(api: Api, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LHTRIO_")}
    env |= {"LHTRIO_API": api.url, "LHTRIO_TOKEN": TOKEN}
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "lhtrio", *args],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_exit_codes_of_the_real_command(api: Api) -> None:
    created = await lhtrio(api, "volume", "create", "db-1", "--size", "1Gi")
    assert created.returncode == 0, created.stderr
    assert created.stdout == b"volume db-1 created: 1Gi, 3 replicas\n"
    assert (await api.objects.get(Volume, "db-1")).spec.size == 1 << 30

    results = {
        code: await lhtrio(api, *args)
        for code, args in (
            (2, ("volume", "create", "../x", "--size", "1Gi")),
            (3, ("volume", "get", "nope")),
            (4, ("volume", "create", "db-1", "--size", "1Gi")),
            (5, ("--api", "http://127.0.0.1:1", "volume", "ls")),
            (6, ("--token-file", os.devnull, "volume", "rm", "db-1")),
        )
    }
    for code, result in results.items():
        assert result.returncode == code, (code, result.stderr)
        assert result.stdout == b""
        assert b"Traceback" not in result.stderr
    assert not (await api.objects.get(Volume, "db-1")).meta.deleting
