"""What the node tells its admin API about itself: whether it supervises its instances, and its
engines' I/O and rebuilds.

The API sits below the node in the layers and never imports the engine: it is given a
:class:`NodeProbe` (it satisfies the API's :class:`~lhtrio.api.observe.NodeFacts` protocol) and
reads plain records from it (:mod:`lhtrio.models.stats`). :func:`~lhtrio.node.server.serve_node`
fills the probe in: the supervisor once it runs, ``stopping`` once the node shuts down.
"""

from __future__ import annotations

import attrs

from lhtrio.instances.supervisor import Kind, State, Supervisor
from lhtrio.models.stats import EngineSample

__all__ = ["NodeProbe"]


@attrs.define(eq=False)
class NodeProbe:
    """Node ``name`` as its API sees it (see the module docstring)."""

    name: str
    supervisor: Supervisor | None = None
    stopping: bool = False

    def unready(self) -> str:
        """Why the node does not supervise its instances now, or ``""`` when it does."""
        if self.stopping:
            return f"node {self.name} is shutting down"
        if self.supervisor is None:
            return f"node {self.name} is starting: its instances are not supervised yet"
        return ""

    def engines(self) -> list[EngineSample]:
        """Each running engine's volume, I/O totals and rebuild, read now (no I/O)."""
        if self.supervisor is None:
            return []
        samples = []
        for instance in self.supervisor.list():
            volume = instance.volume
            if instance.spec.kind is not Kind.ENGINE or volume is None:
                continue
            if instance.state is not State.RUNNING:
                continue
            rebuild = volume.rebuild
            samples.append(
                EngineSample(
                    volume=volume.name,
                    io=volume.io.totals(),
                    rebuilds=() if rebuild is None else (rebuild.record(),),
                )
            )
        return samples
