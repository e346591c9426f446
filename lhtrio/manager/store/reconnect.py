"""How a store's watch that lost its connection tries again (the etcd and Kubernetes stores).

:class:`Backoff` pauses between reconnections: from :data:`PAUSE` doubling to 1 s, for at most
``limit`` seconds without an answer (then :class:`~lhtrio.errors.StorageError`, and the runner
lists again later). The pause starts short again once the watch made progress, so a server that
opens watches only to end them is not asked again and again without a pause.
"""

from __future__ import annotations

from typing import Final

import trio

from lhtrio.errors import StorageError

__all__ = ["PAUSE", "Backoff"]

#: The first pause before a dropped watch reconnects (seconds); it doubles up to 1 s.
PAUSE: Final = 0.05


class Backoff:
    """Pauses between the reconnections of ``what`` to ``where`` (see the module docstring)."""

    def __init__(self, what: str, where: str, *, limit: float) -> None:
        self._what = what
        self._where = where
        self._limit = limit
        self._since: float | None = None
        self._delay = PAUSE

    def answered(self, *, progress: bool) -> None:
        """The server answered (``progress``: with something new)."""
        self._since = None
        if progress:
            self._delay = PAUSE

    async def wait(self, error: BaseException | None) -> None:
        """Pause before the next attempt; StorageError (from ``error``) once the server has not
        answered for ``limit`` seconds."""
        now = trio.current_time()
        if self._since is None:
            self._since = now
        elif now - self._since > self._limit:
            raise StorageError(
                f"{self._what} dropped and {self._where} did not answer again within "
                f"{self._limit:.0f} s"
            ) from error
        await trio.sleep(self._delay)
        self._delay = min(self._delay * 2, 1.0)
