"""A replica's network namespace (lhtrio.verify.netns) next to one a killed process left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import trio

from lhtrio.verify import netns
from lhtrio.verify.netns import open_node_net
from tests.procs import run

pytestmark = pytest.mark.real

SERVER = """
import socket, sys
s = socket.create_server((sys.argv[1], 0))
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.sendall(b"inside")
"""


async def _answer_from_inside(net: netns.NodeNet) -> bytes:
    """Connect from here to a server started inside ``net``; what it says."""
    server = await trio.lowlevel.open_process(
        [*net.exec_prefix, sys.executable, "-c", SERVER, net.ns_ip], stdout=subprocess.PIPE
    )
    assert server.stdout is not None
    try:
        with trio.fail_after(10):
            port = int((await server.stdout.receive_some()).decode())
            stream = await trio.open_tcp_stream(net.ns_ip, port)
            async with stream:
                return await stream.receive_some()
    finally:
        server.kill()
        await server.wait()


async def test_a_namespace_left_behind_takes_neither_the_name_nor_the_subnet_of_a_new_one() -> None:
    """CI once lost a schedule to this: namespaces of a process killed hours before held
    ``10.242.N.1/24`` here, a new testbed whose process id also gave ``10.242`` made the same
    subnets, and every connection to its replicas went into the old namespaces (reset)."""
    pid = os.getpid()
    following = netns._made + 1  # what this process's series offers next
    name = f"lhv{pid % 10000}x{following % 1000}"
    subnet = f"10.{200 + pid % 50}.{following % 250}"
    await run("ip", "netns", "add", name)
    await run("ip", "link", "add", f"{name}h", "type", "veth", "peer", "name", f"{name}i")
    try:
        await run("ip", "addr", "add", f"{subnet}.1/24", "dev", f"{name}h")
        await run("ip", "link", "set", f"{name}h", "up")
        async with open_node_net(0) as net:
            assert net.name != name
            assert not net.host_ip.startswith(f"{subnet}.")
            assert await _answer_from_inside(net) == b"inside"
    finally:
        await run("ip", "link", "del", f"{name}h")
        await run("ip", "netns", "del", name)
