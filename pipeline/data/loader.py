"""Batches of graphs streamed from HDF5 shards with bounded memory (used by train and predict).

Shards are read in contiguous blocks of ``block_graphs`` graphs (one HDF5 slice per array, so every compressed
chunk is decoded once), and shuffling permutes the order of the (shard, block) pairs and the graphs inside each
block. At most one block is decoded at a time, so memory does not grow with the dataset. The order depends only on
the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from pipeline.data.batch import GraphBatch
from pipeline.data.graphs import Graph
from pipeline.data.shards import _GROUPS, ShardReader, ShardRecord, collate

#: graphs decoded per block; ~1k graphs of a few atoms is a few MB
DEFAULT_BLOCK_GRAPHS = 1024


def read_block(reader: ShardReader, lo: int, hi: int) -> list[ShardRecord]:
    """Graphs ``lo .. hi-1`` of a shard with one contiguous read per array (instead of one read per graph)."""
    f = reader.file
    graphs_arrays: list[dict[str, np.ndarray]] = [{} for _ in range(hi - lo)]
    for offsets_name, group in _GROUPS:
        off = reader.offsets[offsets_name]
        start, stop = int(off[lo]), int(off[hi])
        local = off[lo : hi + 1] - start
        for name in group:
            block = f[name][start:stop]
            for g in range(hi - lo):
                graphs_arrays[g][name] = block[local[g] : local[g + 1]]
    radius = f["search_radius"][lo:hi]
    targets = f["targets"][lo:hi] if reader.labelled else None
    return [
        ShardRecord(
            reader.ids[lo + g],
            Graph(**graphs_arrays[g], search_radius=float(radius[g])),
            None if targets is None else targets[g],
        )
        for g in range(hi - lo)
    ]


class ShardGraphs:
    """All graphs of some shards; ``epoch_batches`` yields :class:`GraphBatch` es (see the module docstring).

    ``cache=True`` decodes every graph once and keeps it (small datasets: no re-reading per epoch).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        cache: bool = False,
        block_graphs: int = DEFAULT_BLOCK_GRAPHS,
    ):
        self.readers = [ShardReader(p) for p in paths]
        self.ids: list[str] = [jid for r in self.readers for jid in r.ids]
        self.labelled = all(r.labelled for r in self.readers)
        self.block_graphs = block_graphs
        self.cache = cache
        self._cached: list[list[ShardRecord]] | None = None
        self._blocks = [
            (s, lo, min(lo + block_graphs, len(r)))
            for s, r in enumerate(self.readers)
            for lo in range(0, len(r), block_graphs)
        ]

    def __len__(self) -> int:
        return len(self.ids)

    def _block(self, b: int) -> list[ShardRecord]:
        if self.cache:
            if self._cached is None:
                self._cached = [read_block(self.readers[s], lo, hi) for s, lo, hi in self._blocks]
            return self._cached[b]
        s, lo, hi = self._blocks[b]
        return read_block(self.readers[s], lo, hi)

    def epoch_batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[GraphBatch]:
        """Every graph exactly once; shuffled when ``generator`` is given, in file order otherwise.

        Batches may span block and shard boundaries (only the last batch is short).
        """
        n_blocks = len(self._blocks)
        block_order = torch.randperm(n_blocks, generator=generator).tolist() if generator else range(n_blocks)
        pending: list[ShardRecord] = []
        full: list[ShardRecord] | None = None  # one batch of look-ahead, see below
        for b in block_order:
            records = self._block(b)
            if generator is not None:
                records = [records[i] for i in torch.randperm(len(records), generator=generator).tolist()]
            for rec in records:
                pending.append(rec)
                if len(pending) == batch_size:
                    if full is not None:
                        yield self._collate(full)
                    full, pending = pending, []
        # A last batch of a single graph is merged into the previous one: batch norm cannot train on one atom.
        if full is not None and len(pending) == 1:
            full, pending = full + pending, []
        if full is not None:
            yield self._collate(full)
        if pending:
            yield self._collate(pending)

    def _collate(self, records: list[ShardRecord]) -> GraphBatch:
        return collate(records, atom_table=self.readers[0].atom_feature_table)

    def close(self) -> None:
        for r in self.readers:
            r.close()
