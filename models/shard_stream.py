"""Training on more shards than fit in memory: shards loaded on demand, samples in shard blocks.

A 60 s simulator run at stride 5 is a ~100-sample shard of ~60 MB in memory (rasters sparse), so
30,000 samples would need ~19 GB. :class:`LazyShard` reads a shard's arrays only when a sample of
it is used and keeps the most recent ``capacity`` shards (:class:`ShardCache`). For that to stay
cheap, samples are visited in blocks (:func:`block_permutation`): a seeded order of the shards is
cut into blocks of ``block`` shards, and each block's samples are shuffled among themselves, so a
pass over the data loads every shard once (twice at block edges).

The order is a pure function of the generator state, so a resumed run (``TrainState``) continues
the same sequence.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from prescient.models.shards import Shard, load_shard, read_meta


class ShardCache:
    """The ``capacity`` most recently used shards, loaded whole (least recently used dropped)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ShardCache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._shards: OrderedDict[Path, Shard] = OrderedDict()
        self.loads = 0

    def get(self, path: Path) -> Shard:
        shard = self._shards.get(path)
        if shard is None:
            shard = load_shard(path)
            self.loads += 1
            self._shards[path] = shard
            while len(self._shards) > self.capacity:
                self._shards.popitem(last=False)
        else:
            self._shards.move_to_end(path)
        return shard


class LazyShard:
    """A shard whose metadata is read now and whose arrays are read when first needed.

    Behaves as :class:`~prescient.models.shards.Shard` (``path``, ``meta``, ``num_samples``,
    ``branches`` without loading; everything else through the cache).
    """

    def __init__(self, path: Path, cache: ShardCache) -> None:
        self.path = path
        self.meta = read_meta(path)
        self._cache = cache

    @property
    def num_samples(self) -> int:
        return int(self.meta["samples"])

    @property
    def branches(self) -> list[str]:
        return [str(b) for b in self.meta.get("branches", [])]

    def __getattr__(self, name: str) -> Any:  # arrays, raster(), branch_targets(), ...
        return getattr(self._cache.get(self.path), name)


def block_permutation(rng: np.random.Generator, shard_sizes: list[int], block: int) -> np.ndarray:
    """A sample order that visits the shards in seeded blocks of ``block`` shards.

    Args:
        rng: the generator (advanced by the call).
        shard_sizes: samples per shard; sample ids run shard after shard (as ``SimSamples.index``).
        block: shards per block.

    Returns:
        (sum(shard_sizes),) int64: every sample id once.
    """
    starts = np.concatenate([[0], np.cumsum(shard_sizes)]).astype(np.int64)
    order = rng.permutation(len(shard_sizes))
    parts = []
    for k in range(0, len(order), max(block, 1)):
        ids = np.concatenate([np.arange(starts[s], starts[s + 1]) for s in order[k : k + block]])
        parts.append(rng.permutation(ids))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
