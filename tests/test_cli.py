"""The ``lhtrio`` command line: help, argument checking, endpoints and ``-o`` (no servers needed).

Arguments that no server could accept are usage errors (exit code 2, one ``Error:`` line, never a
traceback) before anything starts or is sent: to prove "before anything is sent", the endpoint
given is a port that refuses connections, so a value that got through would exit 1 instead.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from lhtrio.cli import cli
from lhtrio.wire import Call, Reply, Request
from lhtrio.wire import Result as ControlResult

CLEAN_ENV: dict[str, str | None] = {"LHTRIO_ENGINE": None, "LHTRIO_NODE": None}


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={**CLEAN_ENV, **(env or {})})


@pytest.fixture
def refusing() -> Iterator[str]:
    """HOST:PORT of a bound socket that does not listen: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def ident(value: object) -> str:
    """A test id made of the words of ``value`` (ids with quotes or slashes are hard to select)."""
    words = re.findall(r"[A-Za-z0-9]+", str(value))
    return "-".join(words[:6]) or "empty"


def walk(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))


COMMANDS = [path for path, _ in walk(cli)]


def usage_error(result: Result) -> str:
    """The one ``Error:`` line of a usage error; fails on anything else (a traceback, exit 1)."""
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


# --- help -----------------------------------------------------------------------------------


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, command in walk(cli):
        name = " ".join(("lhtrio", *path))
        if not (command.help or "").strip():
            missing.append(name)
        missing += [
            f"{name} {param.opts[-1]}"
            for param in command.params
            if isinstance(param, click.Option) and not (param.help or "").strip()
        ]
    assert missing == []


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: "-".join(p) or "lhtrio")
def test_help_works_without_an_endpoint(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:")


def test_every_group_says_what_each_of_its_commands_does() -> None:
    """A group's summary names every verb it has ("ls" as list, "rm" as remove)."""
    words = {"ls": "list", "rm": "remove"}
    for path, command in walk(cli):
        if isinstance(command, click.Group) and path not in ((), ("ctl",), ("im",)):
            summary = command.get_short_help_str(limit=200).lower()
            for name in command.commands:
                assert words.get(name, name) in summary, (path, name, summary)


def test_repeatable_options_say_so() -> None:
    for path, command in walk(cli):
        for param in command.params:
            if isinstance(param, click.Option) and param.multiple:
                assert "repeat" in (param.help or ""), (path, param.opts)


@pytest.mark.parametrize("group", ["ctl", "im"])
def test_group_help_documents_output_and_the_endpoint_variable(group: str) -> None:
    text = invoke(group, "--help").output
    assert "-o, --output [table|json|yaml]" in text
    assert ("LHTRIO_ENGINE" if group == "ctl" else "LHTRIO_NODE") in text


# --- the endpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option", "variable"),
    [(("ctl", "info"), "--engine", "LHTRIO_ENGINE"), (("im", "ls"), "--node", "LHTRIO_NODE")],
)
def test_a_call_without_an_endpoint_is_a_usage_error_saying_how_to_give_it(
    args: tuple[str, ...], option: str, variable: str
) -> None:
    error = usage_error(invoke(*args))
    assert option in error
    assert variable in error


@pytest.mark.parametrize(
    ("args", "variable"), [(("ctl", "info"), "LHTRIO_ENGINE"), (("im", "ls"), "LHTRIO_NODE")]
)
def test_the_endpoint_can_come_from_the_environment(
    args: tuple[str, ...], variable: str, refusing: str
) -> None:
    result = invoke(*args, env={variable: refusing})
    assert result.exit_code == 1, result.output
    assert f"cannot connect to tcp://{refusing}" in result.output


@pytest.mark.parametrize("group", ["ctl", "im"])
def test_a_malformed_endpoint_is_a_usage_error(group: str) -> None:
    option = "--engine" if group == "ctl" else "--node"
    assert "is not HOST:PORT" in usage_error(invoke(group, option, "nowhere", "info"))


# --- -o -------------------------------------------------------------------------------------

INFO = {  # as an engine answers info: every key (``resync`` nil without a start-up resync)
    "volume": "v",
    "size": 64 << 20,
    "state": "healthy",
    "frontend": {"state": "running", "address": "unix:/run/v.sock"},
    "replicas": [],
    "resync": None,
}


def fake_engine(monkeypatch: pytest.MonkeyPatch, answer: Callable[[Call], Any]) -> None:
    """Every connection the command opens reaches a fake engine: control call ``call`` answers
    ``answer(call)`` (a wire value, as a real engine sends it)."""

    class Engine:
        peer = "tcp://127.0.0.1:9"

        async def call(self, request: Request) -> Reply:
            assert isinstance(request, Call), request
            return ControlResult(answer(request))

    @asynccontextmanager
    async def connect(address: str, **options: Any) -> AsyncIterator[Engine]:
        yield Engine()

    monkeypatch.setattr("lhtrio.output.open_rpc_client", connect)


@pytest.fixture
def canned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every control call answers INFO; the list collects the calls' names."""
    calls: list[str] = []

    def answer(call: Call) -> Any:
        calls.append(call.name)
        return INFO

    fake_engine(monkeypatch, answer)
    return calls


@pytest.mark.parametrize(
    ("args", "output"),
    [
        (("-o", "json", "info"), "json"),
        (("info", "-o", "json"), "json"),
        (("-o", "json", "info", "-o", "table"), "table"),
        (("-o", "table", "info", "-o", "json"), "json"),
        (("info",), "table"),
    ],
)
def test_output_is_chosen_before_or_after_the_verb(
    args: tuple[str, ...], output: str, canned: list[str]
) -> None:
    result = invoke("ctl", "--engine", "127.0.0.1:9", *args)
    assert result.exit_code == 0, result.output
    assert canned == ["info"]
    if output == "json":
        assert json.loads(result.output) == INFO
    else:
        assert result.output.splitlines()[:2] == ["volume    v", "size      64Mi (67108864 bytes)"]


# --- sizes ----------------------------------------------------------------------------------

SIZE_COMMANDS = [  # "--size=-5" and "-- -5": else click takes "-5" for an option
    ("replica", "{dir}/r1", "--volume", "v", "--size={size}"),
    ("engine", "v", "--replica", "{endpoint}", "--size={size}"),
    ("ctl", "--engine", "{endpoint}", "expand", "--", "{size}"),
    ("im", "--node", "{endpoint}", "create", "replica", "r1", "--volume", "v", "--size={size}"),
    ("im", "--node", "{endpoint}", "create", "engine", "e1", "--volume", "v", "--size={size}",
     "--replica", "{endpoint}"),
]  # fmt: skip


@pytest.mark.parametrize("command", SIZE_COMMANDS, ids=lambda c: ident(c[0] + c[3]))
@pytest.mark.parametrize(
    ("size", "message"),
    [
        pytest.param(size, message, id=ident(size) if size != "-5" else "negative")
        for size, message in [
            ("1G", "size 1G is 1000000000 bytes, not a multiple of 4096: use 1Gi (1073741824)"),
            ("1GB", "size 1GB is 1000000000 bytes, not a multiple of 4096: use 1Gi (1073741824)"),
            ("10G", "not a multiple of 4096: use 10Gi (10737418240), 9999998976 or 10000003072"),
            ("-5", "size '-5' is negative"),
            ("0", "size 0 is not positive"),
            ("ten", "not a number of bytes"),
        ]
    ],
)
def test_every_command_refuses_a_bad_size_as_a_usage_error(
    command: tuple[str, ...], size: str, message: str, tmp_path: Path, refusing: str
) -> None:
    args = [a.format(dir=tmp_path, size=size, endpoint=refusing) for a in command]
    error = usage_error(invoke(*args))
    assert "--size" in error or "SIZE" in error
    assert message in error
    assert not (tmp_path / "r1").exists()  # nothing was started


# --- names and labels -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(args, message, id=ident(" ".join(args[:2]) + " " + message))
        for args, message in [
            (("engine", "", "--size", "1Gi", "--replica", "{endpoint}"), "invalid volume name ''"),
            (("engine", "a/b", "--size", "1Gi", "--replica", "{endpoint}"), "volume name 'a/b'"),
            (("engine", "v", "--size", "1Gi", "--replica", "nowhere"), "address 'nowhere'"),
            (("replica", "{dir}/r1", "--volume", "a/b"), "invalid volume name 'a/b'"),
            (("replica", "{dir}/r1", "--instance", "-r"), "invalid instance name '-r'"),
            (("replica", "{dir}/r 1"), "name 'r 1'"),
            (("node", "--name", "n/1", "--data-dir", "{dir}/d"), "invalid node name 'n/1'"),
            (("node", "--name", "n1", "--data-dir", "{dir}/d", "--port-range", "9-1"), "'9-1'"),
            (("ctl", "--engine", "{endpoint}", "snapshot", "create", "a/b"), "snapshot name 'a/b'"),
            (("ctl", "--engine", "{endpoint}", "snapshot", "rm", ".."), "snapshot name '..'"),
            (("ctl", "--engine", "{endpoint}", "snapshot", "revert", "--", "-x"), "name '-x'"),
            (("ctl", "--engine", "{endpoint}", "replica", "add", "nowhere"), "address 'nowhere'"),
            (("im", "--node", "{endpoint}", "get", "a/b"), "invalid instance name 'a/b'"),
            (("im", "--node", "{endpoint}", "rm", ""), "invalid instance name ''"),
            (("im", "--node", "{endpoint}", "log", "e1", "--tail", "-1"), "--tail"),
            (
                (
                    "im",
                    "--node",
                    "{endpoint}",
                    "create",
                    "replica",
                    "r1",
                    "--volume",
                    "v/1",
                    "--size",
                    "1Gi",
                ),
                "invalid volume name 'v/1'",
            ),
        ]
    ],
)
def test_names_and_addresses_are_checked_before_anything_starts(
    args: tuple[str, ...], message: str, tmp_path: Path, refusing: str
) -> None:
    error = usage_error(invoke(*[a.format(dir=tmp_path, endpoint=refusing) for a in args]))
    assert message in error
    assert list(tmp_path.iterdir()) == []  # no replica or node directory was created


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        pytest.param(labels, message, id=ident(message))
        for labels, message in [
            (["app"], "label 'app' is not KEY=VALUE"),
            (["=db"], "invalid label key ''"),
            (["app=db", "app=web"], "label 'app' is given twice"),
            (["app=" + "x" * 64], "invalid value"),
            (["a\x01=b"], "invalid label key"),
            ([f"k{i}=v" for i in range(65)], "65 labels given, the limit is 64"),
        ]
    ],
)
def test_snapshot_labels_are_checked_before_the_engine_is_called(
    labels: list[str], message: str, refusing: str
) -> None:
    args = [arg for label in labels for arg in ("--label", label)]
    error = usage_error(invoke("ctl", "--engine", refusing, "snapshot", "create", "s1", *args))
    assert message in error


def test_valid_names_and_labels_reach_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []

    def answer(call: Call) -> Any:
        sent.append({"call": call.name, **call.args})
        return call.args["name"] or "a-uuid"

    fake_engine(monkeypatch, answer)
    result = invoke(
        "ctl", "--engine", "127.0.0.1:9", "snapshot", "create", "s1",
        "--label", "app=db", "--label", "example.com/tier=", "-o", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"name": "s1"}
    unnamed = invoke("ctl", "--engine", "127.0.0.1:9", "snapshot", "create")  # a UUID
    assert unnamed.exit_code == 0, unnamed.output
    assert unnamed.output == "a-uuid\n"
    assert sent == [
        {"call": "snapshot_create", "name": "s1", "labels": {"app": "db", "example.com/tier": ""}},
        {"call": "snapshot_create", "name": "", "labels": {}},
    ]


# --- replica add ----------------------------------------------------------------------------


def _rebuild(state: str, done: int) -> dict[str, Any]:
    """A rebuild's progress as an engine sends it."""
    return {
        "address": "tcp://127.0.0.1:9502",
        "source": "tcp://127.0.0.1:9501",
        "state": state,
        "files": 1,
        "files_done": 1 if done else 0,
        "skipped_files": 0,
        "total_bytes": 8 << 20,
        "done_bytes": done,
        "sent_bytes": done,
        "compared_bytes": 0,
        "known_bytes": 0,
        "skipped_bytes": 0,
        "seconds": 0.5,
        "delta": False,
        "error": "" if state != "failed" else "replica went away",
    }


@pytest.mark.parametrize(("last", "code"), [("done", 0), ("failed", 1)])
def test_replica_add_follows_the_rebuild_to_its_end(
    monkeypatch: pytest.MonkeyPatch, last: str, code: int
) -> None:
    answers = [_rebuild("starting", 0), _rebuild("syncing", 4 << 20), _rebuild(last, 8 << 20)]
    sent: list[dict[str, Any]] = []

    def answer(call: Call) -> Any:
        sent.append({"call": call.name, **call.args})
        return answers[len(sent) - 1]

    fake_engine(monkeypatch, answer)
    result = invoke(
        "ctl", "--engine", "127.0.0.1:9", "replica", "add", "127.0.0.1:9502", "-o", "json"
    )
    assert result.exit_code == code, result.output
    assert json.loads(result.output) == answers[-1]
    assert sent == [
        {"call": "replica_add", "address": "127.0.0.1:9502"},
        {"call": "rebuild_status", "wait": 1.0},
        {"call": "rebuild_status", "wait": 1.0},
    ]
    sent.clear()
    table = invoke("ctl", "--engine", "127.0.0.1:9", "replica", "add", "127.0.0.1:9502")
    assert table.exit_code == code, table.output
    assert f"state     {last} (full rebuild)" in table.output.splitlines()


def test_replica_add_no_wait_returns_the_first_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []

    def answer(call: Call) -> Any:
        sent.append(call.name)
        return _rebuild("starting", 0)

    fake_engine(monkeypatch, answer)
    args = ("replica", "add", "127.0.0.1:9502", "--no-wait", "-o", "json")
    result = invoke("ctl", "--engine", "127.0.0.1:9", *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == _rebuild("starting", 0)
    assert sent == ["replica_add"]


def test_replica_add_says_so_when_the_engine_forgot_the_rebuild(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_engine(
        monkeypatch, lambda call: _rebuild("starting", 0) if call.name == "replica_add" else None
    )
    result = invoke("ctl", "--engine", "127.0.0.1:9", "replica", "add", "127.0.0.1:9502")
    assert result.exit_code == 1, result.output
    assert "has no rebuild of 127.0.0.1:9502 any more" in result.output
    assert "Traceback" not in result.output
