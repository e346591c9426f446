"""The read index: which layer of the chain holds each 4 KiB block (sans-I/O).

One byte per block (``longhorn-facts.md`` §1.7): 0 means *unknown*, 1 is the oldest disk of the
live chain, ``layers`` is the head. A byte caps the chain at :data:`MAX_LAYERS` (250) disks.

Entries start unknown and are resolved lazily through a callback supplied by the store, which looks
at the files from the head downwards (``SEEK_DATA``). The callback answers for a *run* of blocks,
not just one: ``resolve(block, limit) -> (layer, count)`` says that ``layer`` is the topmost layer
holding ``block`` and that the same is true of the ``count`` blocks from ``block`` on
(``1 <= count <= limit``). One walk down the chain then resolves a whole extent, where a
block-at-a-time callback (Longhorn's FIEMAP per block) costs one walk per 4 KiB on the first read
after open. Answers are cached in the index; writes set entries to the head; unmap sets them back to
unknown, because the trimmed blocks now read from whatever lies below the trimmed layers.

Scanning for runs uses precompiled ``[^\\xNN]`` regular expressions over the ``bytearray``, so a
1 MiB read that one layer owns costs one C-level scan instead of 256 Python iterations.

The ``loc`` bytearray is never replaced, only changed in place (so the store may keep a reference
to it for its single-block fast path).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import attrs

from lhtrio.errors import InvalidArgumentError, OutOfRangeError

__all__ = ["BLOCK_SIZE", "BLOCK_SHIFT", "MAX_LAYERS", "Resolver", "ReadIndex"]

BLOCK_SHIFT = 12
BLOCK_SIZE = 1 << BLOCK_SHIFT
MAX_LAYERS = 250

Resolver = Callable[[int, int], tuple[int, int]]
"""``resolve(block, limit) -> (layer, count)``, see the module docstring."""

_NOT: list[re.Pattern[bytes]] = [
    re.compile(b"[^" + re.escape(bytes([v])) + b"]") for v in range(256)
]
_FILL = 1024  # entries set per slice assignment
_MAX_RESOLVE = 1 << 16  # blocks resolved by one callback at most (256 MiB of volume)


@attrs.define(eq=False)
class ReadIndex:
    """Block → layer map of one replica's live chain.

    ``blocks`` is the number of 4 KiB blocks of the volume, ``layers`` the number of disks in the
    live chain (the head is layer ``layers``).
    """

    blocks: int = attrs.field()
    layers: int = attrs.field()
    resolve: Resolver = attrs.field()
    loc: bytearray = attrs.field(init=False)
    _fill: bytes = attrs.field(init=False, repr=False)

    @blocks.validator
    def _check_blocks(self, _: object, value: int) -> None:
        if value < 0:
            raise InvalidArgumentError(f"an index needs >= 0 blocks, got {value}")

    @layers.validator
    def _check_layers(self, _: object, value: int) -> None:
        _check_layer_count(value)

    def __attrs_post_init__(self) -> None:
        self.loc = bytearray(self.blocks)
        self._fill = bytes([self.layers]) * _FILL

    # -- data path --------------------------------------------------------------------------------

    def mark_written(self, first: int, count: int) -> None:
        """Blocks ``[first, first+count)`` were written to the head."""
        loc = self.loc
        if count == 1:
            loc[first] = self.layers
            return
        fill = self._fill
        while count > _FILL:
            loc[first : first + _FILL] = fill
            first += _FILL
            count -= _FILL
        loc[first : first + count] = fill[:count] if count < _FILL else fill

    def forget(self, first: int, count: int) -> None:
        """Make blocks ``[first, first+count)`` unknown again (after an unmap)."""
        self.loc[first : first + count] = bytes(count)

    def lookup(self, block: int) -> int:
        """The layer that holds ``block``, resolving and caching it if unknown."""
        layer = self.loc[block]
        if layer:
            return layer
        return self._resolve_run(block, self.blocks)

    def runs(self, first: int, count: int) -> Iterator[tuple[int, int, int]]:
        """Yield ``(layer, first_block, count)`` for consecutive blocks with the same owner.

        Unknown entries are resolved (and cached) on the way.
        """
        loc = self.loc
        end = first + count
        i = first
        while i < end:
            layer = loc[i] or self._resolve_run(i, end)
            m = _NOT[layer].search(loc, i, end)
            stop = end if m is None else m.start()
            if stop < end and loc[stop] == 0:
                # The run may continue through unknown entries that resolve to the same layer.
                while stop < end and (loc[stop] or self._resolve_run(stop, end)) == layer:
                    m = _NOT[layer].search(loc, stop, end)
                    stop = end if m is None else m.start()
            yield layer, i, stop - i
            i = stop

    def _resolve_run(self, block: int, end: int) -> int:
        """Resolve the unknown run starting at ``block`` (not past ``end``); return its layer."""
        loc = self.loc
        end = min(end, block + _MAX_RESOLVE)
        m = _NOT[0].search(loc, block, end)
        limit = (end if m is None else m.start()) - block
        layer, count = self.resolve(block, limit)
        if not 1 <= layer <= self.layers or not 1 <= count <= limit:
            raise AssertionError(
                f"resolver answered ({layer}, {count}) for block {block} with limit {limit} "
                f"and {self.layers} layers"
            )
        if count == 1:
            loc[block] = layer
        else:
            loc[block : block + count] = bytes([layer]) * count
        return layer

    # -- structure changes ------------------------------------------------------------------------

    def add_layer(self) -> None:
        """A snapshot was taken: a new, empty head sits on top of the old one."""
        _check_layer_count(self.layers + 1)
        self.layers += 1
        self._fill = bytes([self.layers]) * _FILL

    def remove_layer(self, layer: int) -> None:
        """Layer ``layer`` left the chain: its entries become unknown, those above move down."""
        if not 1 <= layer <= self.layers or self.layers == 1:
            raise InvalidArgumentError(
                f"cannot remove layer {layer} from an index of {self.layers} layers"
            )
        table = bytes(v if v < layer else 0 if v == layer else v - 1 for v in range(256))
        self.loc[:] = self.loc.translate(table)
        self.layers -= 1
        self._fill = bytes([self.layers]) * _FILL

    def merge_down(self, layer: int) -> None:
        """Layers ``layer`` and ``layer+1`` became one file (coalesce + replace).

        Entries of both now point at the merged file, which takes position ``layer``; entries above
        move down. Nothing needs resolving again.
        """
        if not 1 <= layer < self.layers:
            raise InvalidArgumentError(
                f"cannot merge layer {layer} into the next in an index of {self.layers} layers"
            )
        table = bytes(v if v <= layer else v - 1 for v in range(256))
        self.loc[:] = self.loc.translate(table)
        self.layers -= 1
        self._fill = bytes([self.layers]) * _FILL

    def reset(self, layers: int) -> None:
        """Forget everything: the chain was replaced (revert)."""
        _check_layer_count(layers)
        self.loc[:] = bytes(self.blocks)
        self.layers = layers
        self._fill = bytes([self.layers]) * _FILL

    def expand(self, blocks: int) -> None:
        """The volume grew to ``blocks`` blocks; the new entries are unknown."""
        if blocks < self.blocks:
            raise OutOfRangeError(f"cannot shrink an index from {self.blocks} to {blocks} blocks")
        self.loc.extend(bytes(blocks - self.blocks))
        self.blocks = blocks

    def shrink(self, blocks: int) -> None:
        """Undo an :meth:`expand` to ``blocks`` blocks (an expansion that did not commit)."""
        if not 0 <= blocks <= self.blocks:
            raise OutOfRangeError(f"cannot shrink an index of {self.blocks} blocks to {blocks}")
        del self.loc[blocks:]
        self.blocks = blocks


def _check_layer_count(layers: int) -> None:
    if not 1 <= layers <= MAX_LAYERS:
        raise InvalidArgumentError(f"a chain has 1 to {MAX_LAYERS} layers, got {layers}")
