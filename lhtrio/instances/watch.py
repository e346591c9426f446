"""What an instance watch answers: every instance, or only what changed since the caller's last
answer (sans-I/O; the node's service and the simulator's stub node both answer with it).

A node with hundreds of instances answered every watch with all of them, and its manager decoded
and compared them all, at every change of any one: at 100 nodes and 5,000 volumes in the scale
simulation, three quarters of the run's time. The node now remembers its last few answers (what
each instance was), numbers them, and a caller that names one (``since``) is answered with the
instances that differ from it and the names that left it. The answers are numbered, not keyed by
version: an instance may change between two answers at one version, and a caller's baseline
must be exactly what it was told. A caller whose answer was forgotten (more than :data:`KEEP`
answers ago, or a restarted node: each node process numbers from its own ``base``, the time it
started in nanoseconds for a real one) gets every instance, marked ``complete``.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from lhtrio.models.instance import Instance, InstanceWatch

__all__ = ["KEEP", "WatchAnswers"]

#: Answers remembered (a node has a manager and, now and then, an operator's ``lhtrio im``).
KEEP: Final = 8


class WatchAnswers:
    """The last :data:`KEEP` answers of one node's instance watch."""

    def __init__(self, base: int | None = None) -> None:
        self._numbers = itertools.count(time.time_ns() if base is None else base)
        self._answers: OrderedDict[int, dict[str, Instance]] = OrderedDict()

    def answer(self, version: int, instances: Iterable[Instance], since: int = 0) -> InstanceWatch:
        """The answer at ``version`` with ``instances`` (all of them), to a caller whose last
        answer was ``since`` (0: none)."""
        now = {i.name: i for i in instances}
        before = self._answers.get(since) if since else None
        number = next(self._numbers)
        self._answers[number] = now
        while len(self._answers) > KEEP:
            self._answers.popitem(last=False)
        if before is None:
            return InstanceWatch(version=version, instances=list(now.values()), answer=number)
        return InstanceWatch(
            version=version,
            instances=[i for name, i in now.items() if before.get(name) != i],
            complete=False,
            removed=sorted(before.keys() - now.keys()),
            answer=number,
        )
