"""Changes of a volume's desired state that need no engine: labels, data locality, replica count.

Each is a pure change of the Volume (read-modify-write through
:meth:`~lhtrio.manager.objects.Objects.change`, optionally on condition of a version:
:mod:`lhtrio.manager.versions`) checked by the rules that belong to the volume, not to the
request:

* a volume being deleted takes no new data locality or replica count (409: its deletion is
  under way); its labels may still change, as Kubernetes allows for metadata;
* ``strict-local`` keeps the volume's only replica on its attach node, so it needs exactly one
  replica (Longhorn's rule): asking for ``strict-local`` with more replicas, or for more replicas
  of a ``strict-local`` volume, is refused (422) — change the other first.

The volume plan does not yet act on the data locality (issue 19 stores it; placement by
locality comes with the scheduler's work): it is kept, shown and checked.
"""

from __future__ import annotations

import attrs

from lhtrio.errors import ConflictError, FailedPreconditionError
from lhtrio.manager.objects import Objects
from lhtrio.manager.versions import at_version
from lhtrio.models.cluster import Volume
from lhtrio.models.cluster.volume import DataLocality, VolumeSpec

__all__ = [
    "locality_problem",
    "set_replica_count",
    "update_data_locality",
    "update_labels",
]


def locality_problem(spec: VolumeSpec) -> str | None:
    """What is wrong with ``spec``'s data locality and replica count together, or None."""
    if spec.data_locality is DataLocality.STRICT_LOCAL and spec.number_of_replicas != 1:
        return (
            f"data locality strict-local keeps the volume's one replica on its node: it needs "
            f"numberOfReplicas 1, not {spec.number_of_replicas}"
        )
    return None


def _spec_change(volume: Volume, spec: VolumeSpec, what: str) -> Volume:
    name = volume.meta.name
    if volume.meta.deleting:
        raise ConflictError(f"volume {name!r} is being deleted: its {what} cannot change")
    if spec == volume.spec:
        return volume
    problem = locality_problem(spec)
    if problem is not None:
        raise FailedPreconditionError(f"volume {name!r}: {problem}")
    return attrs.evolve(volume, spec=spec)


async def update_data_locality(
    objects: Objects, name: str, locality: DataLocality, *, version: int | None = None
) -> Volume:
    """Set volume ``name``'s data locality; the volume as stored."""

    def apply(volume: Volume) -> Volume:
        spec = attrs.evolve(volume.spec, data_locality=locality)
        return _spec_change(volume, spec, "data locality")

    return await objects.change(Volume, name, at_version(version, apply))


async def set_replica_count(
    objects: Objects, name: str, count: int, *, version: int | None = None
) -> Volume:
    """Ask for ``count`` replicas of volume ``name`` (the volume plan places or removes them);
    the volume as stored."""

    def apply(volume: Volume) -> Volume:
        spec = attrs.evolve(volume.spec, number_of_replicas=count)
        return _spec_change(volume, spec, "replica count")

    return await objects.change(Volume, name, at_version(version, apply))


async def update_labels(
    objects: Objects, name: str, labels: dict[str, str], *, version: int | None = None
) -> Volume:
    """Replace volume ``name``'s labels with ``labels``; the volume as stored."""

    def apply(volume: Volume) -> Volume:
        if volume.meta.labels == labels:
            return volume
        return attrs.evolve(volume, meta=attrs.evolve(volume.meta, labels=dict(labels)))

    return await objects.change(Volume, name, at_version(version, apply))
