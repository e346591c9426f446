"""The replica: where a volume's bytes live, as Longhorn's directory of sparse files.

The on-disk store is synchronous and does I/O only (no trio, no networking):

- :mod:`.store` — :class:`Replica`: create/open/close, the data path, flush and the revision
  counter (its guarantee is documented there), and the structural operations;
- :mod:`.names`, :mod:`.meta`, :mod:`.fs` — file names, metadata formats, file-system primitives;
- :mod:`.index`, :mod:`.chain` — the read index and the chain logic (pure);
- :mod:`.layout`, :mod:`.lifecycle` — validating and opening a directory, crash leftovers;
- :mod:`.heads`, :mod:`.removal`, :mod:`.checksum` — snapshot, revert, expand; removal and purge;
  snapshot hashes.
"""

from __future__ import annotations

from lhtrio.replica.chain import Action, ActionKind
from lhtrio.replica.info import DiskInfo, ReplicaInfo
from lhtrio.replica.meta import ChecksumInfo
from lhtrio.replica.store import Replica

__all__ = ["Action", "ActionKind", "ChecksumInfo", "DiskInfo", "Replica", "ReplicaInfo"]
