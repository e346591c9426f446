"""``serve_engine``: one volume's engine — replica links, control endpoint and frontend.

The engine does not know which frontend it serves (NBD today): the composition root passes a
:class:`Frontend`, a callable that serves a :class:`~lhtrio.engine.volume.Volume` until cancelled
and reports its address through ``task_status``. The control endpoint speaks protocol v1 control
calls (:mod:`lhtrio.engine.service`); ``lhtrio ctl`` is its client.

Start-up (``longhorn-facts.md`` §3.4): connect every replica, read their state, set replicas that
cannot be reached, have another size, or are stale (revision counter behind) to ERR, then serve.
Shutdown: stop the frontend first (its in-flight requests finish), flush the replicas, close.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Final, NoReturn, Protocol

import attrs
import trio

from lhtrio.engine.replicaset import Member, Mode, ReplicaSet, decide_start
from lhtrio.engine.service import EngineService
from lhtrio.engine.volume import Volume
from lhtrio.errors import LhtrioError
from lhtrio.net import serve_rpc
from lhtrio.net.reactor import open_reactor
from lhtrio.wire import Identity, Role

__all__ = ["Frontend", "FrontendControl", "serve_engine", "LINGER"]

#: How long the frontend of an engine with a process of its own may wait in place for the
#: replicas' answers to its client's one request (``linger``; :mod:`lhtrio.net.reactor`).
LINGER: Final = 0.002

logger = logging.getLogger(__name__)


class Frontend(Protocol):
    def __call__(
        self, volume: Volume, *, task_status: trio.TaskStatus[str] = ...
    ) -> Awaitable[None]: ...


@attrs.define(eq=False)
class FrontendControl:
    """Starts and stops the frontend task; ``address`` is where it serves while running."""

    frontend: Frontend | None
    volume: Volume
    nursery: trio.Nursery
    address: str = ""
    _scope: trio.CancelScope | None = None

    @property
    def running(self) -> bool:
        return self._scope is not None

    async def start(self) -> None:
        if self.frontend is None or self._scope is not None:
            return
        self.address = await self.nursery.start(self._run)

    async def _run(self, task_status: trio.TaskStatus[str]) -> None:
        assert self.frontend is not None
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                await self.frontend(self.volume, task_status=task_status)
            finally:
                self._scope = None

    async def stop(self) -> None:
        """Stop serving; in-flight requests finish first (the volume is quiesced)."""
        scope = self._scope
        if scope is None:
            return
        async with self.volume.quiesced():
            scope.cancel()  # (it may have ended meanwhile: the engine is being cancelled too)
        await self.volume.flush()


async def serve_engine(
    volume_name: str,
    size: int,
    replicas: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    frontend: Frontend | None = None,
    short_timeout: float = 8.0,
    salvage: bool = False,
    linger: float = 0.0,
    spin: float = 0.0,
    local: bool = True,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run the engine of ``volume_name`` until cancelled; reports the control endpoint.

    ``salvage``: if no replica qualifies as RW at start, serve from the best one anyway
    (:func:`~lhtrio.engine.replicaset.choose_salvage`). ``linger``: how long the frontend may
    wait in place for the replicas' answers to a lone request (:meth:`Volume.linger`); only for
    an engine with a process of its own (:data:`LINGER`), never in a node, where the wait would
    hold up every other volume's I/O. ``spin``: how much of that wait may busy-poll for the
    client's next request (:meth:`lhtrio.net.reactor.Reactor.wait`). ``local``: reach replicas
    on this host through the same-host socket they offer, not TCP
    (:func:`lhtrio.net.open_rpc_client`).
    """
    async with open_reactor() as reactor, trio.open_nursery() as nursery:
        members = [Member(address, Mode.RW) for address in replicas]
        volume = Volume(
            volume_name,
            size,
            ReplicaSet(members, short_timeout=short_timeout),
            nursery,
            reactor,
            linger=linger,
            spin=spin,
            local=local,
        )
        await _connect_all(volume, nursery, salvage=salvage)
        frontend_control = FrontendControl(frontend, volume, nursery)
        service = EngineService(volume, frontend_control)
        bound = await nursery.start(
            functools.partial(
                serve_rpc,
                service,
                host,
                port,
                identity=Identity(
                    volume=volume_name, instance=f"engine-{volume_name}", role=Role.ENGINE
                ),
            )
        )
        await frontend_control.start()
        logger.info(
            "engine of volume %s: control on %s:%d, frontend %s, replicas %s",
            volume_name,
            *bound,
            frontend_control.address or "none",
            ", ".join(f"{m.address} {m.mode.value}" for m in members),
        )
        task_status.started(bound)
        try:
            await trio.sleep_forever()
        finally:
            try:
                with trio.CancelScope(shield=True), trio.move_on_after(10) as late:
                    await _shutdown(volume, frontend_control)
                if late.cancelled_caught:
                    logger.warning(
                        "engine of volume %s: the final flush did not finish within 10 s",
                        volume_name,
                    )
            finally:
                volume.close_links()  # whatever happened: the shielded links must end
    raise AssertionError("unreachable")  # pragma: no cover


async def _connect_all(volume: Volume, nursery: trio.Nursery, *, salvage: bool) -> None:
    members = list(volume.replicas.members)
    for member in members:
        await nursery.start(volume.connect, member)
    infos: list[tuple[str, dict[str, Any] | str]] = []
    for member in members:
        client = volume.client(member)
        if client is None:
            infos.append((member.address, member.error or "unreachable"))
            continue
        try:
            info = await client.call_control("info")
        except LhtrioError as exc:
            infos.append((member.address, str(exc)))
        else:
            infos.append((member.address, info))
            member.identity = (info["instance"], info["path"])
    decision = decide_start(infos, size=volume.size, salvage=salvage)
    for member in members:
        mode = decision.modes[member.address]
        if mode is Mode.ERR:
            volume.fail(member, decision.reasons[member.address])
            continue
        member.synced = True  # the newest data: from here on, an away log can track it
        if member.address in decision.reasons:
            logger.warning(
                "volume %s: %s %s", volume.name, member.address, decision.reasons[member.address]
            )
    logger.info("volume %s starts %s", volume.name, volume.replicas.health.value)
    if not volume.replicas.readers:
        logger.error(
            "volume %s is faulted: every replica is ERR; after checking them, run "
            "'lhtrio ctl salvage' or restart the engine with --salvage",
            volume.name,
        )


async def _shutdown(volume: Volume, frontend: FrontendControl) -> None:
    try:
        await frontend.stop()  # in-flight requests finish first
        await volume.flush()
    except LhtrioError as exc:
        logger.warning("final flush of volume %s failed: %s", volume.name, exc)
