"""The one long operation a volume runs at a time (:class:`~lhtrio.models.volume.VolumeOperation`).

Rebuild, purge, expansion, revert and salvage exclude each other: each starts with
:meth:`OperationGate.begin` and ends with :meth:`OperationGate.end`, and ``state`` says which one
runs. Another operation that arrives meanwhile is refused (ConflictError), except while the
running one was started by the engine itself (``automatic``: the purge of system snapshots after
a rebuild), which an operator's operation waits for instead.
"""

from __future__ import annotations

import trio

from lhtrio.errors import ConflictError
from lhtrio.models.volume import VolumeOperation

__all__ = ["OperationGate"]


class OperationGate:
    """Which long operation volume ``name`` runs (``state``); see the module docstring."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = VolumeOperation.NONE
        self._automatic = False  # the operation running was started by the engine itself
        self._idle = trio.Event()
        self._idle.set()

    async def begin(self, operation: VolumeOperation, *, automatic: bool = False) -> None:
        """Start ``operation``; ConflictError while another runs, except one the engine started
        itself, which this waits for unless it is ``automatic`` too. End it with :meth:`end`."""
        while self.state is not VolumeOperation.NONE and self._automatic and not automatic:
            await self._idle.wait()
        if self.state is not VolumeOperation.NONE:
            raise ConflictError(
                f"volume {self.name} is busy ({self.state.value}): {operation.value} refused; "
                "try again later"
            )
        self.state, self._automatic, self._idle = operation, automatic, trio.Event()

    def end(self) -> None:
        """The operation started by :meth:`begin` is over."""
        self.state, self._automatic = VolumeOperation.NONE, False
        self._idle.set()
