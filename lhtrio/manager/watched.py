"""What a node's manager keeps from the watches it holds, for its reconcilers to read.

A volume's reconcile needs the nodes up, the nodes, the settings and the space scheduled on each
disk. The manager keeps all four from its watches (:mod:`lhtrio.manager.kept`,
:mod:`lhtrio.manager.space`, :func:`lhtrio.manager.nudges.follow_availability`) and hands them
over as :class:`Watched`, instead of each reconcile listing every node, setting, lease and
replica (docs/benchmarks.md, "scale"). The decisions taken on them are the scheduler's and the
ownership rules', which tolerate the milliseconds they trail the store by: two nodes' managers
placing at the same moment could always miss each other's replicas.
"""

from __future__ import annotations

import attrs

from lhtrio.manager.kept import Kept
from lhtrio.manager.lease import Availability
from lhtrio.manager.space import ScheduledSpace
from lhtrio.models.cluster import Node, Setting

__all__ = ["Watched"]


@attrs.frozen
class Watched:
    """What the manager keeps for its reconcilers (see the module)."""

    availability: Availability = attrs.field(factory=Availability)
    space: ScheduledSpace = attrs.field(factory=ScheduledSpace)
    nodes: Kept[Node] = attrs.field(factory=lambda: Kept(Node))
    settings: Kept[Setting] = attrs.field(factory=lambda: Kept(Setting))
