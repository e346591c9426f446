"""A network namespace per replica, reached over a veth pair, where nftables drops packets.

``open_node_net(i)`` makes a namespace with a veth pair: ``10.X.N.1/24`` on this side,
``10.X.N.2/24`` inside (``X`` from the process id, ``N`` counts the namespaces this process
made, so neither two testbeds nor two schedules collide), loopback up, a default route back
through the veth, and an nftables table ``inet lhv`` with an input and an output chain, empty.
A replica started with :attr:`NodeNet.exec_prefix` (``nsenter --net``) listens on
``10.X.N.2``; the engine and the proxies stay in this namespace and reach it through the veth.
Faults: :meth:`NodeNet.partition` drops every packet in and out (a silent partition: TCP
retransmits until it heals or the peers give up); :meth:`NodeNet.lossy` drops a random share;
:meth:`NodeNet.heal` empties the chains. Needs root, ``ip``, ``nft`` and ``nsenter``
(:func:`netns_available`).

Resource handling: leaving :func:`open_node_net` deletes the namespace, which deletes the veth
pair and the rules; the caller must have ended the processes it started inside first.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from lhtrio.errors import LhtrioError
from lhtrio.verify.shell import run_command

__all__ = ["NodeNet", "netns_available", "open_node_net"]


def netns_available() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "nft", "nsenter"))


class NodeNet:
    """One replica's namespace (see the module docstring)."""

    def __init__(self, name: str, host_ip: str, ns_ip: str) -> None:
        self.name = name
        self.host_ip = host_ip
        self.ns_ip = ns_ip

    @property
    def exec_prefix(self) -> list[str]:
        """Run a command in the namespace's network, and nothing else of it: ``nsenter``
        execs it as it is (the PID the caller signals is the command's). Not ``ip netns exec``,
        which also gives the command a private copy of every mount: a loop disk under another
        replica would stay mounted in it after this namespace unmounted it (its file system
        then still in use while it is checked, and found again, read-only, by the next mount)."""
        return ["nsenter", f"--net={NETNS_DIR}/{self.name}", "--"]

    async def _nft(self, *args: str) -> None:
        await run_command("ip", "netns", "exec", self.name, "nft", *args)

    async def heal(self) -> None:
        for chain in ("input", "output"):
            await self._nft("flush", "chain", "inet", "lhv", chain)

    async def partition(self) -> None:
        await self.heal()
        for chain in ("input", "output"):
            await self._nft("add", "rule", "inet", "lhv", chain, "drop")

    async def lossy(self, percent: int) -> None:
        if not 0 < percent < 100:
            raise LhtrioError(f"a lossy link drops 1-99 % of its packets, not {percent}")
        await self.heal()
        for chain in ("input", "output"):
            rule = ["numgen", "random", "mod", "100", "<", str(percent), "drop"]
            await self._nft("add", "rule", "inet", "lhv", chain, *rule)


_made = 0  # namespaces made by this process so far: names and subnets never repeat
NETNS_DIR = "/run/netns"  # where ip netns keeps the namespaces' names


async def _free_name_and_subnet() -> tuple[str, str]:
    """The next name and /24 of this process's series that no namespace and no address of
    this host uses yet. Namespaces outlive a process killed before it deleted them; one left
    holding ``10.X.N.1/24`` on this side would take the traffic meant for a new one of the same
    subnet (another process's, whose id gives the same ``X``): every replica behind it
    unreachable, connections reset."""
    global _made  # noqa: PLW0603 (one counter per process, on purpose)
    pid = os.getpid()
    namespaces = await trio.run_process(["ip", "netns", "list"], capture_stdout=True)
    names = {line.split()[0] for line in namespaces.stdout.decode().splitlines() if line.strip()}
    addresses = await trio.run_process(["ip", "-4", "-o", "addr", "show"], capture_stdout=True)
    subnets = set(re.findall(r" inet (\d+\.\d+\.\d+)\.\d+/", addresses.stdout.decode()))
    for _ in range(1000):
        _made += 1
        name = f"lhv{pid % 10000}x{_made % 1000}"
        subnet = f"10.{200 + pid % 50}.{_made % 250}"
        if name not in names and subnet not in subnets:
            return name, subnet
    raise LhtrioError(f"no free namespace name or subnet 10.{200 + pid % 50}.N.0/24 left")


@asynccontextmanager
async def open_node_net(index: int) -> AsyncIterator[NodeNet]:
    """Namespace ``index`` of this process (see the module docstring); deleted on exit."""
    if not netns_available():
        raise LhtrioError("network namespaces need root, ip and nft (apt-get install nftables)")
    name, subnet = await _free_name_and_subnet()
    net = NodeNet(name, f"{subnet}.1", f"{subnet}.2")
    host, inside = f"{name}h", f"{name}i"
    await run_command("ip", "netns", "add", name)
    try:
        await run_command("ip", "link", "add", host, "type", "veth", "peer", "name", inside)
        await run_command("ip", "link", "set", inside, "netns", name)
        await run_command("ip", "addr", "add", f"{net.host_ip}/24", "dev", host)
        await run_command("ip", "link", "set", host, "up")
        await run_command("ip", "-n", name, "addr", "add", f"{net.ns_ip}/24", "dev", inside)
        await run_command("ip", "-n", name, "link", "set", inside, "up")
        await run_command("ip", "-n", name, "link", "set", "lo", "up")
        # Through this side, the namespace reaches every address of this one: the engine, the
        # proxies (a rebuilt replica copies from another one through its proxy).
        await run_command("ip", "-n", name, "route", "add", "default", "via", net.host_ip)
        await net._nft("add", "table", "inet", "lhv")
        for chain in ("input", "output"):
            spec = f"{{ type filter hook {chain} priority 0; }}"
            await net._nft("add", "chain", "inet", "lhv", chain, spec)
        yield net
    finally:
        with trio.CancelScope(shield=True):
            await trio.run_process(["ip", "link", "del", host], capture_stderr=True, check=False)
            await run_command("ip", "netns", "del", name)
