"""The commands ``lhtrio cluster`` suggests on a terminal are real: each ``lhtrio`` in them
parses (no usage error) and goes to the API it was told about."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

from lhtrio.cluster import commands_to_try
from tests.admin.conftest import run_cli


def test_the_commands_to_try_are_verbs_of_the_cli_over_the_given_api(tmp_path: Path) -> None:
    token_file = tmp_path / "node1" / "api-token"
    token_file.parent.mkdir()
    token_file.write_text("t0ken\n")
    with socket.socket() as sock:  # bound, not listening: every connection is refused
        sock.bind(("127.0.0.1", 0))
        api = f"http://127.0.0.1:{sock.getsockname()[1]}"
        lines = commands_to_try(api, token_file)
        exported = dict(word.split("=", 1) for word in shlex.split(lines[0])[1:])
        assert exported == {"LHTRIO_API": api, "LHTRIO_TOKEN_FILE": str(token_file)}
        verbs = []
        for line in lines[1:]:
            for command in line.split("#")[0].split(";"):
                words = shlex.split(command)
                if Path(words[0]).name == "lhtrio":
                    args = words[1:]
                elif words[1:3] == ["-m", "lhtrio"]:
                    args = words[3:]
                else:
                    continue  # qemu-io
                verbs.append(args[:2])
                result = run_cli(*args, env=exported)
                # 5: the arguments were good and the API (the one exported) was called
                assert result.exit_code == 5, (command, result.output)
                assert api in result.stderr
        assert ["volume", "attach"] in verbs
        assert ["volume", "create"] in verbs
