"""``serve_engine``: one volume's engine — replica links, control endpoint and frontend.

The engine does not know which frontend it serves (NBD today): the composition root passes a
:class:`~lhtrio.engine.frontend.Frontend` (:mod:`lhtrio.engine.frontend`). The control endpoint
speaks protocol v1 control calls (:mod:`lhtrio.engine.service`); ``lhtrio ctl`` is its client.

Start-up (``longhorn-facts.md`` §3.4): connect every replica, read their state and the replica set
they hold recorded, set replicas that cannot be reached, have another size, are stale (revision
counter behind, or left out of the newest record) to ERR, record the replicas that serve
(:mod:`lhtrio.engine.membership`), then serve.
A volume name that is not a valid name, or replicas that all have another size than the one the
engine was given, are refused before anything is served.

**Stopping.** ``stop`` (an event the composition root sets on SIGTERM, or the node when it
deletes the instance) is the graceful way: the frontend drains (no new requests; those in flight
finish and are answered), every replica is flushed, then the engine returns, all within
:data:`STOP_DEADLINE`. Cancellation is the hard way: the frontend ends at once (its clients see
their in-flight requests fail), but the final flush still runs, shielded, for up to
:data:`FLUSH_DEADLINE`. Either way the replica links (shielded, so that the flush can use them)
are closed when the engine ends, also when it fails to start.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Final

import trio

from lhtrio.engine.consistency import SWEEP_INTERVAL, Resync, resync, sweep_intents
from lhtrio.engine.frontend import Frontend, FrontendControl
from lhtrio.engine.replicaset import Member, Mode, ReplicaSet, decide_start
from lhtrio.engine.service import EngineService
from lhtrio.engine.volume import Volume
from lhtrio.errors import InvalidArgumentError, LhtrioError
from lhtrio.models.names import validate_volume_name
from lhtrio.models.replica import MemberRecord, ReplicaInfo
from lhtrio.net import serve_rpc
from lhtrio.net.reactor import open_reactor
from lhtrio.units import format_size
from lhtrio.wire import Identity, Role

__all__ = ["Frontend", "FrontendControl", "serve_engine", "LINGER", "STOP_DEADLINE"]

#: How long the frontend of an engine with a process of its own may wait in place for the
#: replicas' answers to its client's one request (``linger``; :mod:`lhtrio.net.reactor`).
LINGER: Final = 0.002
#: The longest a graceful stop takes: the frontend's drain, then the final flush.
STOP_DEADLINE: Final = 40.0
#: The longest the final flush of a cancelled engine takes.
FLUSH_DEADLINE: Final = 10.0

logger = logging.getLogger(__name__)


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
    sweep: float = SWEEP_INTERVAL,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[tuple[str, int, str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the engine of ``volume_name`` until ``stop`` is set (then stop gracefully and
    return) or until cancelled; reports ``(host, port, frontend address)`` once serving.

    ``salvage``: if no replica qualifies as RW at start, serve from the best one anyway
    (:func:`~lhtrio.engine.replicaset.choose_salvage`). ``linger``: how long the frontend may
    wait in place for the replicas' answers to a lone request (:meth:`Volume.linger`); only for
    an engine with a process of its own (:data:`LINGER`), never in a node, where the wait would
    hold up every other volume's I/O. ``spin``: how much of that wait may busy-poll for the
    client's next request (:meth:`lhtrio.net.reactor.Reactor.wait`). ``local``: reach replicas
    on this host through the same-host socket they offer, not TCP
    (:func:`lhtrio.net.open_rpc_client`). ``sweep``: how often the replicas' write-intent
    marks are cleared (:mod:`lhtrio.engine.consistency`).
    """
    validate_volume_name(volume_name)
    if size <= 0 or size % 4096:
        raise InvalidArgumentError(
            f"volume {volume_name}: size {size} is not a positive multiple of 4096 bytes"
        )
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
        frontend_control = FrontendControl(frontend, volume, nursery)
        progress = Resync()
        try:
            await _connect_all(volume, nursery, salvage=salvage)
            await resync(volume, progress)  # replicas read the same before anything is served
            nursery.start_soon(functools.partial(sweep_intents, volume, interval=sweep))
            service = EngineService(volume, frontend_control, resync=progress)
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
            task_status.started((bound[0], bound[1], frontend_control.address))
            await (trio.Event() if stop is None else stop).wait()  # no stop: until cancelled
            logger.info("engine of volume %s: stopping", volume_name)
            with trio.move_on_after(STOP_DEADLINE) as late:
                await _shutdown(volume, frontend_control)
            if late.cancelled_caught:
                logger.warning(
                    "engine of volume %s did not stop within %g s; closing anyway",
                    volume_name,
                    STOP_DEADLINE,
                )
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(FLUSH_DEADLINE) as late:
                await _shutdown(volume, frontend_control)
            if late.cancelled_caught:
                logger.warning(
                    "engine of volume %s: the final flush did not finish within %g s",
                    volume_name,
                    FLUSH_DEADLINE,
                )
            raise
        finally:
            volume.links.close()  # whatever happened: the shielded links must end
        nursery.cancel_scope.cancel()
    logger.info("engine of volume %s stopped", volume_name)


async def _connect_all(volume: Volume, nursery: trio.Nursery, *, salvage: bool) -> None:
    members = list(volume.replicas.members)
    for member in members:
        await nursery.start(volume.links.connect, member)
    infos: list[tuple[str, ReplicaInfo | str]] = []
    records: dict[str, MemberRecord] = {}
    membership = volume.fanouts.membership
    for member in members:
        client = volume.links.control(member)
        if client is None:
            infos.append((member.address, member.error or "unreachable"))
            continue
        try:
            info = await client.info()
            records[member.address] = record = await client.members()
        except LhtrioError as exc:
            infos.append((member.address, str(exc)))
        else:
            infos.append((member.address, info))
            member.identity = (info.instance, info.path)
            membership.seen(record.epoch)
    _check_sizes(volume, infos)
    decision = decide_start(infos, size=volume.size, salvage=salvage, records=records)
    for member in members:
        mode = decision.modes[member.address]
        if mode is Mode.ERR:
            volume.links.fail(member, decision.reasons[member.address])
            continue
        member.synced = True  # the newest data: from here on, an away log can track it
        if member.address in decision.reasons:
            logger.warning(
                "volume %s: %s %s", volume.name, member.address, decision.reasons[member.address]
            )
    try:
        await membership.record()  # before anything is served
    except LhtrioError as exc:
        logger.warning("volume %s: %s", volume.name, exc)
    logger.info("volume %s starts %s", volume.name, volume.replicas.health.value)
    if not volume.replicas.readers:
        logger.error(
            "volume %s is faulted: every replica is ERR; after checking them, run "
            "'lhtrio ctl salvage' or restart the engine with --salvage",
            volume.name,
        )


def _check_sizes(volume: Volume, infos: list[tuple[str, ReplicaInfo | str]]) -> None:
    """Refuse to start when every replica that answered has another size than the engine's:
    the engine was given the wrong size (a replica of another size alone just starts ERR)."""
    sizes = {address: info.size for address, info in infos if not isinstance(info, str)}
    if sizes and all(s != volume.size for s in sizes.values()):
        found = ", ".join(
            f"{address} is {format_size(s)} ({s} bytes)" for address, s in sizes.items()
        )
        raise InvalidArgumentError(
            f"volume {volume.name}: the engine was given {volume.size} bytes, but {found}; "
            f"start the engine with the replicas' size"
        )


async def _shutdown(volume: Volume, frontend: FrontendControl) -> None:
    try:
        await frontend.stop()  # in-flight requests finish first
        await volume.flush()
        if volume.replicas.writers:
            # Nothing in flight, every replica flushed: no region can differ between them.
            await volume.control.all(
                "intent_clear", lambda replica: replica.intent_clear(everything=True)
            )
    except LhtrioError as exc:
        logger.warning("final flush of volume %s failed: %s", volume.name, exc)
