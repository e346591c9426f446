"""The memory store's own bookkeeping: its names in order and its label index agree with its
objects after any run of changes (the conformance suite checks the contract; this, at random,
that no change leaves the index behind)."""

from __future__ import annotations

import random

from lhtrio.errors import NotFoundError
from lhtrio.manager.store.api import Document
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.manager.store.rules import selects

KINDS = ("Replica", "Engine")
KEYS = ("lhtrio.io/volume", "lhtrio.io/node")
VALUES = ("x", "y", "z")


def _labels(rng: random.Random) -> dict[str, str]:
    return {k: rng.choice(VALUES) for k in KEYS if rng.random() < 0.7}


def _name(document: Document) -> str:
    meta = document["metadata"]
    assert isinstance(meta, dict)
    return str(meta["name"])


async def test_selections_agree_with_filtering_every_object_after_random_changes() -> None:
    rng = random.Random(21)
    store = MemoryStore()
    for _ in range(600):
        kind, name = rng.choice(KINDS), f"o{rng.randrange(30)}"
        try:
            current = await store.get(kind, name)
        except NotFoundError:
            new: dict[str, object] = {"name": name, "labels": _labels(rng)}
            new["finalizers"] = ["f"] if rng.random() < 0.2 else []
            await store.create({"kind": kind, "metadata": new, "spec": {}})
            continue
        old = current["metadata"]
        assert isinstance(old, dict)
        if rng.random() < 0.3:
            await store.delete(kind, name)
        else:
            changed = {**old, "labels": _labels(rng)}
            if rng.random() < 0.3:
                changed["finalizers"] = []  # (if being deleted: goes)
            await store.update({**current, "metadata": changed})
        for kind in KINDS:
            every = (await store.list(kind)).documents
            names = [_name(d) for d in every]
            assert names == sorted(names)
            for selector in ({KEYS[0]: rng.choice(VALUES)}, {k: rng.choice(VALUES) for k in KEYS}):
                selected = (await store.list(kind, labels=selector)).documents
                assert selected == [d for d in every if selects(selector, d)]
