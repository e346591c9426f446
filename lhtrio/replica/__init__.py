"""The replica: where a volume's bytes live, as Longhorn's directory of sparse files.

The on-disk store is synchronous and does I/O only (no trio, no networking):

- :mod:`.store` — :class:`Replica`, the facade: create/open/close and the structural operations;
- :mod:`.datapath` — its base: the data path, flush and the revision counter (its guarantee and
  the concurrency contract are documented there);
- :mod:`.layers` — :class:`~.layers.Layers`, the open chain (layer files, metadata, read index,
  head) that the structural operations work on;
- :mod:`.snapshots`, :mod:`.removal`, :mod:`.checksum`, :mod:`.adopt`, :mod:`.transfer` — the
  structural operations: snapshot, revert, expand; removal and purge; snapshot hashes; a rebuild
  target adopting its source's disk graph; the file operations of a rebuild (both ends);
- :mod:`.reader` — :func:`open_snapshot_reader`: a snapshot's extents and blocks, read from a
  directory no engine opened (for backups);
- :mod:`.names`, :mod:`.meta`, :mod:`.fs` — file names, metadata formats, file-system primitives;
- :mod:`.index`, :mod:`.chain` — the read index and the chain logic (pure);
- :mod:`.layout`, :mod:`.lifecycle` — validating and opening a directory, crash leftovers.

Above the store, with trio: :mod:`.sync` (a rebuild target pulling files), :mod:`.gate` (the
service's data path and gate), :mod:`.calls` (the checks of control-call arguments that need more
than a type), :mod:`.service` (the control calls, dispatched from their table) and
:mod:`.server` (``serve_replica``).

What a replica reports (:class:`~lhtrio.models.replica.ReplicaInfo`, ``Checksum``, ``FileInfo``,
``SyncStatus``, ...) is declared once in :mod:`lhtrio.models.replica`, its control calls (name,
arguments, result) in :mod:`lhtrio.wire.calls.replica`.
"""

from __future__ import annotations

from lhtrio.replica.reader import SnapshotReader, open_snapshot_reader
from lhtrio.replica.store import Replica

__all__ = ["Replica", "SnapshotReader", "open_snapshot_reader"]
