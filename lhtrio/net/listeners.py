"""Listening sockets for lhtrio's servers: TCP (``tcp://HOST:PORT``) or Unix (``unix:PATH``).

Unix sockets serve clients on the same host: the NBD frontend for local consumers, and replicas
whose engine runs on the same node (Longhorn's *strict-local* data path), which skips the whole
TCP stack on every frame.

**A socket path belongs to whoever listens there.** Binding a Unix socket needs its path free,
and the old way (unlink whatever is there, then bind) let a second server silently take a
live server's path, and then delete it when it stopped, leaving the first unreachable (issue
16 #14). So: a path where a server answers a connect is refused; a socket file nobody answers
on (left by a process that died) is replaced; a path that is not a socket is refused. Each
refusal is a :class:`~lhtrio.errors.ConflictError` naming the path, as is a TCP address in use
(never a bare ``OSError``). On stop, :func:`remove_unix_socket` removes the file only if it is
still the one this process bound: the same device and inode, recorded per path at bind time
(the files a process bound are a fact about that process, kept in this module), and nobody
answering there (a socket made after ours was removed may get our inode number again, and our
own listener is closed by then).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from typing import Final

import trio

from lhtrio.errors import ConflictError, InvalidArgumentError, LhtrioError
from lhtrio.net.address import Address
from lhtrio.net.network import NETWORK, Listener

__all__ = ["open_listeners", "remove_unix_socket"]

#: Socket files this process bound and has not removed: path -> (st_dev, st_ino).
_BOUND: dict[str, tuple[int, int]] = {}
#: How long a connect to an existing socket file may take to tell whether a server is there.
_PROBE_TIMEOUT: Final = 2.0


async def open_listeners(address: Address) -> tuple[list[Listener], Address]:
    """Listen on ``address``; returns the listeners and the bound address (the real port).

    ConflictError, naming the address, if another server has it (a TCP port in use, a Unix
    socket a server answers on, a path that is not a socket); InvalidArgumentError if it
    cannot be listened on for another reason (no such local address, a privileged port).
    """
    if (network := NETWORK.get()) is not None:  # (the simulator's: lhtrio.net.network)
        return await network.listen(address)
    if address.is_unix:
        return [await _listen_unix(address)], address
    where = f"{address.host}:{address.port}" if address.host else f"port {address.port}"
    try:
        sockets = await trio.open_tcp_listeners(address.port, host=address.host or None)
    except OSError as exc:
        raise _refusal(f"address {where}", exc) from exc
    host, port = sockets[0].socket.getsockname()[:2]
    return list[Listener](sockets), Address(host=host, port=port)


async def _listen_unix(address: Address) -> trio.SocketListener:
    if not address.is_abstract:
        await _claim(address.path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(address.socket_path)
        sock.listen(128)
        if not address.is_abstract:
            _BOUND[address.path] = _identity(os.lstat(address.path))
    except OSError as exc:
        sock.close()
        raise _refusal(f"address {address}", exc) from exc
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def _claim(path: str) -> None:
    """Make ``path`` free for a new socket: remove a stale socket file, refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConflictError(
            f"cannot listen on unix:{path}: it exists and is not a socket; remove it or choose "
            "another path"
        )
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with trio.move_on_after(_PROBE_TIMEOUT):
            await probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        # Nobody listens: a file left by a process that is gone. Remove it, unless it was just
        # replaced by another (a server starting at the same time now owns it).
        with contextlib.suppress(FileNotFoundError):
            if _identity(os.lstat(path)) == _identity(st):
                os.unlink(path)
        return
    except OSError as exc:  # (a full backlog, no permission: someone is there)
        raise ConflictError(
            f"address unix:{path} is in use or not usable ({exc.strerror or exc}); stop "
            "whatever serves there or choose another path"
        ) from exc
    finally:
        probe.close()
    raise ConflictError(
        f"address unix:{path} is in use by another process (a server answers there); stop it "
        "or choose another path"
    )


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _answers(path: str) -> bool:
    """Whether a server listens on the socket at ``path`` (a connect that does not wait)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:  # (a full backlog: someone is there)
            return True
    return True


def _refusal(what: str, exc: OSError) -> LhtrioError:
    if exc.errno == errno.EADDRINUSE:
        return ConflictError(f"{what} is in use by another process; stop it or choose another")
    return InvalidArgumentError(f"cannot listen on {what}: {exc.strerror or exc}")


def remove_unix_socket(address: Address) -> None:
    """Remove the socket file this process bound at ``address``, after its listener closed, if
    it is still that file (a server that took the path over keeps it). Nothing for TCP and
    abstract addresses."""
    if not address.is_unix or address.is_abstract:
        return
    ours = _BOUND.pop(address.path, None)
    if ours is None:
        return
    with contextlib.suppress(FileNotFoundError):
        if _identity(os.lstat(address.path)) == ours and not _answers(address.path):
            os.unlink(address.path)
