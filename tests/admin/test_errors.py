"""How the CLI over the admin API fails: bad arguments before any request (exit 2), the API's
errors as ``error: MESSAGE`` with an exit code per kind (3 not found, 4 conflict, 5 unreachable,
6 unauthorized, 1 otherwise), and where the token comes from."""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from click.testing import Result

from lhtrio.api import serve_api
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import Volume
from tests.admin.conftest import TOKEN, Lhtrio, run_cli
from tests.test_cli import ident, usage_error


@pytest.fixture
def refusing() -> Iterator[str]:
    """The URL of a bound socket that does not listen: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- usage errors: exit 2, before any request -----------------------------------------------


BAD_ARGUMENTS = [
    (("volume", "create", "../x", "--size", "1Gi"), "invalid volume name"),
    (("volume", "create", "v", "--size", "1G"), "1Gi (1073741824)"),
    (("volume", "create", "v", "--size", "0"), "--size"),
    (("volume", "create", "v"), "--size"),
    (("volume", "create", "v", "--size", "1Gi", "--replicas", "0"), "--replicas"),
    (("volume", "create", "v", "--size", "1Gi", "--replicas", "21"), "--replicas"),
    (("volume", "get", "a/b"), "invalid volume name"),
    (("volume", "rm", ""), "invalid volume name"),
    (("volume", "attach", "v"), "--node"),
    (("volume", "attach", "v", "--node", "n/1"), "invalid node name"),
    (("volume", "attach", "v", "--node", "n1", "--timeout", "-1"), "--timeout"),
    (("volume", "detach", "v", "--node", "../n"), "invalid node name"),
    (("volume", "expand", "v", "--size", "12345"), "4096"),
    (("volume", "set-replicas", "v", "0"), "COUNT"),
    (("volume", "set-replicas", "v", "three"), "COUNT"),
    (("volume", "salvage", "v"), "REPLICAS"),
    (("volume", "salvage", "v", "r/1"), "invalid replica name"),
    (("volume", "ls", "-o", "xml"), "--output"),
    (("snapshot", "create", "v", "bad/name"), "invalid snapshot name"),
    (("snapshot", "create", "v", "--label", "novalue"), "KEY=VALUE"),
    (("snapshot", "rm", "v"), "NAME"),
    (("snapshot", "revert", "../v", "s1"), "invalid volume name"),
    (("snapshot", "ls", "x" * 64), "invalid volume name"),
    (("node", "get", "n 1"), "invalid node name"),
    (("setting", "get", "../x"), "invalid setting name"),
    (("setting", "set", "default-replica-count"), "VALUE"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_ARGUMENTS, ids=ident)
def test_bad_arguments_are_usage_errors_before_any_request(
    args: tuple[str, ...], expected: str, refusing: str
) -> None:
    # A request would fail with exit code 5 (the API refuses connections): 2 means none was made.
    error = usage_error(run_cli(*args, env={"LHTRIO_API": refusing, "LHTRIO_TOKEN": TOKEN}))
    assert expected in error


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:9500", "http://", "http://[::1"])
def test_an_api_url_that_is_not_one_is_a_usage_error(url: str) -> None:
    assert "--api" in usage_error(run_cli("--api", url, "volume", "ls"))


def test_the_admin_options_are_needed_by_no_other_command(refusing: str) -> None:
    result = run_cli("--token-file", "/nonexistent/token", "replica", "--help")
    assert result.exit_code == 0, result.output
    assert run_cli("node", "--help").exit_code == 0
    assert run_cli("volume", "attach", "--help").exit_code == 0


# --- unreachable: exit 5 --------------------------------------------------------------------


@pytest.mark.parametrize("args", [("volume", "ls"), ("volume", "rm", "v"), ("setting", "ls")])
def test_an_api_that_cannot_be_reached_exits_5_saying_where_and_how_to_point_elsewhere(
    args: tuple[str, ...], refusing: str
) -> None:
    result = run_cli("--api", refusing, *args, env={"LHTRIO_TOKEN": TOKEN})
    assert result.exit_code == 5
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: cannot reach the admin API at {refusing}")
    assert "--api" in line
    assert "LHTRIO_API" in line


def test_the_api_comes_from_lhtrio_api_and_host_port_means_http(refusing: str) -> None:
    bare = refusing.removeprefix("http://")
    for result in (
        run_cli("volume", "ls", env={"LHTRIO_API": bare}),
        run_cli("--api", bare, "volume", "ls", env={"LHTRIO_API": "http://127.0.0.1:1"}),
    ):
        assert result.exit_code == 5
        assert f"at {refusing}:" in result.stderr


# --- the API's errors -----------------------------------------------------------------------


async def test_not_found_exits_3_and_conflict_4(lhtrio: Lhtrio) -> None:
    missing = await lhtrio("volume", "get", "nope")
    assert missing.exit_code == 3
    assert missing.stderr == (
        "error: Volume 'nope' does not exist: lhtrio volume ls lists the volumes\n"
    )
    assert (await lhtrio("volume", "create", "v", "--size", "1Gi")).exit_code == 0
    again = await lhtrio("volume", "create", "v", "--size", "2Gi")
    assert again.exit_code == 4
    assert again.stderr.startswith("error: ")
    assert "'v'" in again.stderr
    assert (await lhtrio.api.objects.get(Volume, "v")).spec.size == 1 << 30


async def test_a_failing_store_is_the_apis_message_with_exit_1(lhtrio: Lhtrio) -> None:
    lhtrio.api.store.broken = True
    result = await lhtrio("volume", "ls")
    assert result.exit_code == 1
    assert result.stderr == "error: store /var/lib/lhtrio/store.db: disk I/O error\n"


async def serve_once_as(
    answer: bytes, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """A web server that is not lhtrio's API: every request gets ``answer``."""

    async def handle(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive_some()
        await stream.send_all(answer)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        task_status.started(f"http://127.0.0.1:{port}")
        await trio.serve_listeners(handle, listeners, handler_nursery=nursery)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "is not JSON"),
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad", "HTTP 502 Bad Gateway"),
    ],
)
async def test_an_answer_that_is_not_the_apis_is_an_error_with_exit_1(
    nursery: trio.Nursery, answer: bytes, message: str
) -> None:
    url = await nursery.start(functools.partial(serve_once_as, answer))
    result = await trio.to_thread.run_sync(functools.partial(run_cli, "--api", url, "volume", "ls"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: GET /v1/volumes")
    assert message in result.stderr


# --- the token: exit 6 ----------------------------------------------------------------------


async def test_without_a_token_a_change_exits_6_saying_where_tokens_are(lhtrio: Lhtrio) -> None:
    before = await lhtrio.api.state()
    result = await lhtrio("volume", "create", "v", "--size", "1Gi", token=None)
    assert result.exit_code == 6
    (line,) = result.stderr.splitlines()
    for hint in ("no token was given", "api-token", "--token-file", "LHTRIO_TOKEN"):
        assert hint in line
    wrong = await lhtrio("volume", "create", "v", "--size", "1Gi", token="not-it")
    assert wrong.exit_code == 6
    assert "not the API token" in wrong.stderr
    assert await lhtrio.api.state() == before
    read = await lhtrio("volume", "ls", token=None)  # reads need the token too
    assert read.exit_code == 6
    assert "no token was given" in read.stderr


async def test_the_token_comes_from_a_file_stripped(lhtrio: Lhtrio, tmp_path: Path) -> None:
    token_file = tmp_path / "api-token"
    token_file.write_text(f"  {TOKEN}\n")
    by_option = await lhtrio(
        "--token-file", str(token_file), "volume", "create", "a", "--size", "1Gi", token=None
    )
    assert by_option.exit_code == 0, by_option.output
    by_env = await lhtrio(
        "volume", "create", "b", "--size", "1Gi", token=None,
        env={"LHTRIO_TOKEN_FILE": str(token_file)},
    )  # fmt: skip
    assert by_env.exit_code == 0, by_env.output


async def test_which_token_wins(lhtrio: Lhtrio, tmp_path: Path) -> None:
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text(TOKEN)
    wrong.write_text("not-it")
    # --token-file on the command line wins over LHTRIO_TOKEN ...
    result = await lhtrio(
        "--token-file", str(right), "volume", "create", "a", "--size", "1Gi", token="not-it"
    )
    assert result.exit_code == 0, result.output
    # ... LHTRIO_TOKEN over LHTRIO_TOKEN_FILE
    result = await lhtrio(
        "volume", "create", "b", "--size", "1Gi", env={"LHTRIO_TOKEN_FILE": str(wrong)}
    )
    assert result.exit_code == 0, result.output


async def test_a_token_file_that_cannot_be_read_exits_6_naming_it(
    lhtrio: Lhtrio, tmp_path: Path
) -> None:
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.write_text("\n")
    for path, problem in ((missing, "cannot read"), (empty, "is empty")):
        result = await lhtrio("--token-file", str(path), "volume", "rm", "v", token=None)
        assert result.exit_code == 6
        assert str(path) in result.stderr
        assert problem in result.stderr
        # a read goes without the token it cannot read; refused, it says why
        read = await lhtrio("--token-file", str(path), "volume", "ls")
        assert read.exit_code == 6
        assert str(path) in read.stderr
        assert problem in read.stderr


async def test_reads_from_a_node_with_anonymous_reads_need_no_token(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    objects = Objects(MemoryStore())
    serve = functools.partial(serve_api, objects, "127.0.0.1", 0, token=TOKEN, read_anonymous=True)
    url = await nursery.start(serve)
    missing = tmp_path / "missing"

    def cli(*args: str, token: str | None = None) -> Result:
        return run_cli(*args, env={"LHTRIO_API": url, "LHTRIO_TOKEN": token})

    listed = await trio.to_thread.run_sync(cli, "volume", "ls")
    assert listed.exit_code == 0, listed.output
    unreadable = await trio.to_thread.run_sync(cli, "--token-file", str(missing), "volume", "ls")
    assert unreadable.exit_code == 0, unreadable.output  # the read went without it
    change = await trio.to_thread.run_sync(cli, "volume", "create", "v", "--size", "1Gi")
    assert change.exit_code == 6
    created = await trio.to_thread.run_sync(
        functools.partial(cli, "volume", "create", "v", "--size", "1Gi", token=TOKEN)
    )
    assert created.exit_code == 0, created.output
