"""A client that leaves during negotiation never wedges the server (issue 16 #9).

After each way a real or raw client can end a handshake without a transmission, a new client
is served and ``serve_nbd`` stops promptly when cancelled. The server runs in a trio loop of its
own thread: a wedged server (the old handler waited, shielded, for a transmission that never
came) then fails the test instead of hanging it.
"""

from __future__ import annotations

import functools
import json
import queue
import struct
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from lhtrio.frontend.nbd.server import serve_nbd
from lhtrio.net import Address, parse_address
from lhtrio.wire import Hello, encode_frame

from .nbd_client import MemoryDevice, RawClient
from .nbd_helpers import ERR_TOO_BIG, INFO, go_data, option

STOP_WITHIN = 5.0


@asynccontextmanager
async def server_in_a_thread(address: Address) -> AsyncIterator[str]:
    """``serve_nbd`` of a :class:`MemoryDevice` in its own thread; yields the URI. On exit,
    cancels it and fails unless it stopped within STOP_WITHIN seconds."""
    ready: queue.Queue[tuple[str, trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            uri = await nursery.start(serve_nbd, address, MemoryDevice())
            ready.put((uri, trio.lowlevel.current_trio_token(), nursery.cancel_scope))

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)  # (abandoned if wedged)
    thread.start()
    uri, token, scope = await trio.to_thread.run_sync(functools.partial(ready.get, timeout=30))
    try:
        yield uri
    finally:
        token.run_sync_soon(scope.cancel)
        await trio.to_thread.run_sync(functools.partial(thread.join, STOP_WITHIN))
    assert not thread.is_alive(), f"serve_nbd did not stop within {STOP_WITHIN} s of cancellation"


async def _run(*cmd: str) -> tuple[int, str]:
    with trio.fail_after(60):
        result = await trio.run_process(
            list(cmd), capture_stdout=True, capture_stderr=True, check=False
        )
    return result.returncode, (result.stdout + result.stderr).decode()


async def _nbdinfo_list(address: Address, uri: str) -> None:
    code, out = await _run("nbdinfo", "--list", "--json", uri)
    assert code == 0, out
    assert [e["export-name"] for e in json.loads(out)["exports"]] == ["vol"]


async def _nbdinfo_unknown_export(address: Address, uri: str) -> None:
    code, out = await _run("nbdinfo", uri.replace("/vol", "/nosuch"))
    assert code != 0
    assert "nosuch" in out or "unknown" in out.lower(), out


async def _lhtrio_ctl(address: Address, uri: str) -> None:
    """An operator's mistake: ``lhtrio ctl`` pointed at the NBD socket."""
    code, out = await _run(sys.executable, "-m", "lhtrio", "ctl", "--engine", str(address), "info")
    assert code != 0, out


async def _lhtrio_hello(address: Address, uri: str) -> None:
    """What ``lhtrio ctl`` sends, as raw bytes (over TCP too): its flags are unknown to NBD."""
    async with await RawClient.connect(address) as client:
        await client.exactly(18)  # the greeting
        await client.send(encode_frame(1, Hello(volume="")))
        assert await client.closed()


async def _unknown_client_flag(address: Address, uri: str) -> None:
    async with await RawClient.connect(address) as client:
        await client.greeting(client_flags=1 | 4)
        assert await client.closed()


async def _export_name_unknown(address: Address, uri: str) -> None:
    async with await RawClient.connect(address) as client:
        await client.greeting()
        await client.send(option(1, b"nosuch"))  # NBD_OPT_EXPORT_NAME: no way to refuse it
        assert await client.closed()


async def _close_in_the_middle_of_an_option(address: Address, uri: str) -> None:
    async with await RawClient.connect(address) as client:
        await client.greeting()
        await client.send(option(INFO, go_data("vol"))[:-3])
    # (closed by the client here, with the option incomplete)


async def _close_after_the_greeting(address: Address, uri: str) -> None:
    async with await RawClient.connect(address) as client:
        await client.exactly(18)


async def _abort(address: Address, uri: str) -> None:
    async with await RawClient.connect(address) as client:
        await client.greeting()
        await client.send(option(2))  # NBD_OPT_ABORT; close without reading the ACK, as libnbd


async def _option_too_big(address: Address, uri: str) -> None:
    """An option over the cap gets NBD_REP_ERR_TOO_BIG before the close (issue 16 #20)."""
    async with await RawClient.connect(address) as client:
        await client.greeting()
        await client.send(b"IHAVEOPT" + struct.pack(">II", INFO, 1 << 20))
        [(reply, message)] = await client.option_replies(INFO)
        assert reply == ERR_TOO_BIG
        assert message == b"option data of 1048576 bytes exceeds 65536"
        assert await client.closed()


BEHAVIOURS: dict[str, Callable[[Address, str], Awaitable[None]]] = {
    "nbdinfo --list": _nbdinfo_list,
    "nbdinfo of an unknown export": _nbdinfo_unknown_export,
    "lhtrio ctl at the NBD socket": _lhtrio_ctl,
    "an lhtrio hello": _lhtrio_hello,
    "an unknown client flag": _unknown_client_flag,
    "EXPORT_NAME of an unknown export": _export_name_unknown,
    "a close in the middle of an option": _close_in_the_middle_of_an_option,
    "a close after the greeting": _close_after_the_greeting,
    "NBD_OPT_ABORT": _abort,
    "an option over the size cap": _option_too_big,
}


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
async def test_a_session_that_ends_in_negotiation_leaves_the_server_serving_and_stoppable(
    tmp_path: Path, transport: str, behaviour: str
) -> None:
    address = parse_address(f"unix:{tmp_path}/nbd.sock" if transport == "unix" else "127.0.0.1:0")
    async with server_in_a_thread(address) as uri:
        bound = address if address.is_unix else parse_address(uri.split("/")[2])
        for _ in range(2):  # (twice: the first one must not have taken anything with it)
            await BEHAVIOURS[behaviour](bound, uri)
        # A new client is served.
        code, out = await _run(
            "qemu-io", "-f", "raw", "-c", "write -P 7 0 4k", "-c", "read -P 7 0 4k", uri
        )
        assert code == 0, out
        assert "verification failed" not in out
    # (server_in_a_thread checked that it stopped promptly)
