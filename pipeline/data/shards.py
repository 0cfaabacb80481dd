"""HDF5 graph shards: streaming writer, random-access reader and ``collate`` into :class:`~pipeline.data.batch.GraphBatch`.

Shard layout (``results/graphs/{split}/shard-{i}.h5``, format_version 1). Graph arrays of all materials are
concatenated; graph ``g`` owns rows ``*_offsets[g] : *_offsets[g+1]``; indices inside a graph are *local*
(atoms 0..n-1, bonds 0..E-1), exactly the arrays of :class:`pipeline.data.graphs.Graph`:

=====================  ====================  =================================================================
dataset                shape, dtype          meaning
=====================  ====================  =================================================================
ids                    (B,) utf-8 str        JARVIS id of each graph
targets (optional)     (B, 66) float32       66-bin DOS (absent for the unlabelled pool)
search_radius          (B,) float32          neighbour search radius used, Angstrom (> cutoff when enlarged)
node_offsets           (B+1,) int64          atom rows of graph g
edge_offsets           (B+1,) int64          bond rows of graph g
line_offsets           (B+1,) int64          line-graph rows of graph g
atomic_number          (N,) uint8            Z of each atom
edge_src, edge_dst     (E,) int32            bond i -> j (local atom indices), sorted by source
edge_image             (E, 3) int16          lattice translation of j
bond_vec               (E, 3) float32        r_j + image - r_i, Angstrom
line_src, line_dst     (T,) int32            bond pair a = (i -> j), b = (j -> m) (local bond indices)
angle_cos              (T,) float32          cos of the angle at j between j -> i and j -> m
atom_feature_table     (101, 92) float32     CGCNN features, row Z (jarvis-tools atom_init.json)
=====================  ====================  =================================================================

File attributes: ``format_version``, ``n_graphs``, ``n_atoms``, ``n_edges``, ``n_triplets``, the input
provenance of :mod:`pipeline.data.provenance` (always the atom-feature table and DOS grid keys; ``k`` and ``cutoff``
from the writer's ``meta``, which the featurize stage fills) and the rest of ``meta`` (e.g. split, shard,
n_shards, min_distance). A writer whose ``meta`` names ``k`` refuses graphs without exactly k bonds per atom. Datasets are chunked and gzip+shuffle compressed, so a reader
touches only the chunks of the graphs it asks for. Files are written to a temporary name and renamed on success.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import h5py
import numpy as np

from pipeline.data.graphs import Graph, cgcnn_table
from pipeline.data.provenance import InputProvenance, static_attrs
from pipeline.grid import N_BINS
from pipeline.io import atomic_path

if TYPE_CHECKING:  # torch is imported by collate only, so writing shards does not load it (~200 MB)
    from pipeline.data.batch import GraphBatch

FORMAT_VERSION = 1
#: (dataset, row shape, dtype) of the per-row graph arrays, and which offsets index them
_NODE = {"atomic_number": ((), np.uint8)}
_EDGE = {
    "edge_src": ((), np.int32),
    "edge_dst": ((), np.int32),
    "edge_image": ((3,), np.int16),
    "bond_vec": ((3,), np.float32),
}
_LINE = {"line_src": ((), np.int32), "line_dst": ((), np.int32), "angle_cos": ((), np.float32)}
_GROUPS = (("node_offsets", _NODE), ("edge_offsets", _EDGE), ("line_offsets", _LINE))
#: rows per HDF5 chunk: small enough that reading one random graph decompresses little (benchmarks/featurize.py)
_CHUNK_ROWS = 1 << 13
#: gzip (readable by any HDF5 tool) at level 1: higher levels write slower for few bytes saved
_COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True}


class ShardRecord(NamedTuple):
    id: str
    graph: Graph
    target: np.ndarray | None  # (66,) float32, or None for unlabelled shards


# ------------------------------------------------------------------------------------------ writing -----------
class ShardWriter:
    """Append graphs one by one; buffered, flushed every ``flush_every`` graphs (memory stays flat).

    Use as a context manager; the file appears at ``path`` only when the block exits without error.
    """

    def __init__(self, path: str | os.PathLike, labelled: bool, meta: Mapping[str, Any] | None = None,
                 flush_every: int = 512) -> None:  # fmt: skip
        self.path = path
        self.labelled = labelled
        self.meta = dict(meta or {})
        self.k = None if self.meta.get("k") is None else int(self.meta["k"])
        self.flush_every = flush_every
        self._buffer: list[tuple[str, Graph, np.ndarray | None]] = []
        self._totals = {"node_offsets": 0, "edge_offsets": 0, "line_offsets": 0}
        self.n_graphs = 0

    def __enter__(self) -> ShardWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._h5 = h5py.File(tmp, "w")
        f = self._h5
        f.create_dataset(
            "ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(1024,), **_COMPRESSION
        )
        if self.labelled:
            f.create_dataset("targets", shape=(0, N_BINS), maxshape=(None, N_BINS), dtype=np.float32,
                             chunks=(1024, N_BINS), **_COMPRESSION)  # fmt: skip
        f.create_dataset(
            "search_radius", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=(1024,), **_COMPRESSION
        )
        for offsets, group in _GROUPS:
            f.create_dataset(
                offsets, data=np.zeros(1, np.int64), maxshape=(None,), chunks=(1024,), **_COMPRESSION
            )
            for name, (row_shape, dtype) in group.items():
                f.create_dataset(name, shape=(0, *row_shape), maxshape=(None, *row_shape), dtype=dtype,
                                 chunks=(_CHUNK_ROWS, *row_shape), **_COMPRESSION)  # fmt: skip
        f.create_dataset("atom_feature_table", data=cgcnn_table())
        return self

    def append(self, jid: str, graph: Graph, target: np.ndarray | None = None) -> None:
        if self.labelled and target is None:
            raise ValueError(f"{jid}: labelled shard needs a target")
        if self.k is not None and graph.n_edges != self.k * graph.n_atoms:
            raise ValueError(
                f"{jid}: graph has {graph.n_edges} bonds for {graph.n_atoms} atoms, not k={self.k} per atom "
                f"as {self.path} records"
            )
        if target is not None:
            target = np.asarray(target, dtype=np.float32)
            if target.shape != (N_BINS,):
                raise ValueError(f"{jid}: target has shape {target.shape}, expected ({N_BINS},)")
        self._buffer.append((jid, graph, target if self.labelled else None))
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        f, buf = self._h5, self._buffer
        _extend(f["ids"], np.array([jid for jid, _, _ in buf], dtype=object))
        _extend(f["search_radius"], np.array([g.search_radius for _, g, _ in buf], dtype=np.float32))
        if self.labelled:
            _extend(f["targets"], np.stack([t for _, _, t in buf]))
        for offsets, group in _GROUPS:
            for name in group:
                _extend(f[name], np.concatenate([getattr(g, name) for _, g, _ in buf]))
            sizes = np.array([getattr(g, next(iter(group))).shape[0] for _, g, _ in buf], dtype=np.int64)
            ends = self._totals[offsets] + np.cumsum(sizes)
            _extend(f[offsets], ends)
            self._totals[offsets] = int(ends[-1])
        self.n_graphs += len(buf)
        self._buffer = []

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.flush()
                attrs = self._h5.attrs
                attrs["format_version"] = FORMAT_VERSION
                attrs["n_graphs"] = self.n_graphs
                attrs["n_atoms"] = self._totals["node_offsets"]
                attrs["n_edges"] = self._totals["edge_offsets"]
                attrs["n_triplets"] = self._totals["line_offsets"]
                attrs["labelled"] = self.labelled
                for key, value in static_attrs().items():  # what this writer's table and grid are
                    attrs[key] = value
                for key, value in self.meta.items():
                    attrs[key] = value
        finally:
            self._h5.close()
            self._atomic.__exit__(exc_type, exc, tb)


def _extend(ds: h5py.Dataset, rows: np.ndarray) -> None:
    n = ds.shape[0]
    ds.resize(n + rows.shape[0], axis=0)
    ds[n:] = rows


def write_shard(
    path: str | os.PathLike,
    ids: Iterable[str],
    graphs: Iterable[Graph],
    targets: Iterable[np.ndarray] | np.ndarray | None,
    meta: Mapping[str, Any] | None = None,
) -> int:
    """Write one shard from parallel iterables (consumed lazily); ``targets=None`` for an unlabelled shard.

    Returns the number of graphs written.
    """
    labelled = targets is not None
    with ShardWriter(path, labelled=labelled, meta=meta) as w:
        target_iter = iter(targets) if labelled else None
        for jid, graph in zip(ids, graphs, strict=True):
            w.append(jid, graph, next(target_iter) if target_iter is not None else None)
    return w.n_graphs


# ------------------------------------------------------------------------------------------ reading -----------
class ShardReader:
    """Random access to the graphs of one shard.

    Per-graph data (ids, offsets, targets, search radii: a few hundred bytes per graph) is read at construction;
    the atom/bond/line-graph rows are read on demand (``in_memory=False``, the default: memory does not grow with
    the shard; :meth:`read_range` streams contiguous blocks fast) or all at once (``in_memory=True`` or
    :meth:`load`: decompressed once, then random access and batching at numpy speed; memory then grows with the
    number of atoms x k).

    The HDF5 file is opened lazily per process, so a reader can be handed to DataLoader workers (the handle is
    dropped when pickling).
    """

    def __init__(self, path: str | os.PathLike, in_memory: bool = False) -> None:
        self.path = os.fspath(path)
        with h5py.File(self.path, "r") as f:
            version = int(f.attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{self.path}: shard format_version {version}, this reader knows {FORMAT_VERSION}"
                )
            self.ids: list[str] = [s.decode() if isinstance(s, bytes) else s for s in f["ids"][:]]
            self.offsets = {name: f[name][:] for name, _ in _GROUPS}
            self.labelled = "targets" in f
            self.targets: np.ndarray | None = f["targets"][:] if self.labelled else None
            self.search_radius: np.ndarray = f["search_radius"][:]
            self.meta: dict[str, Any] = {k: _plain(v) for k, v in f.attrs.items()}
            self.atom_feature_table: np.ndarray = f["atom_feature_table"][:]
        self._h5: h5py.File | None = None
        self._rows: dict[str, Any] | None = None  # name -> h5py.Dataset, or np.ndarray once loaded
        self.in_memory = False
        if in_memory:
            self.load()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def provenance(self) -> InputProvenance:
        """How this shard's graphs were built (:mod:`pipeline.data.provenance`; unrecorded keys are None)."""
        return InputProvenance.from_mapping(self.meta)

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "_h5": None}
        if not self.in_memory:
            state["_rows"] = None
        return state

    @property
    def file(self) -> h5py.File:
        """The open HDF5 file (opened on first use in this process)."""
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        return self._h5

    def _row_arrays(self) -> dict[str, Any]:
        if self._rows is None:
            f = self.file
            self._rows = {name: f[name] for _, group in _GROUPS for name in group}
        return self._rows

    def load(self) -> ShardReader:
        """Read every row array into memory (and close the file); returns self."""
        self._rows = {name: ds[:] for name, ds in self._row_arrays().items()}
        self.in_memory = True
        self.close()
        return self

    def close(self) -> None:
        if self._h5 is not None:
            if not self.in_memory:
                self._rows = None
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def graph(self, i: int) -> Graph:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"graph {i} out of range for {self.path} with {n} graphs")
        i %= n
        rows, arrays = self._row_arrays(), {}
        for offsets, group in _GROUPS:
            lo, hi = self.offsets[offsets][i], self.offsets[offsets][i + 1]
            for name in group:
                arrays[name] = rows[name][lo:hi]
        return Graph(**arrays, search_radius=float(self.search_radius[i]))

    def read_range(self, lo: int, hi: int) -> list[ShardRecord]:
        """Graphs ``lo .. hi-1`` with one contiguous read per array (each compressed chunk decoded once):
        the fast way to stream a shard block by block without loading all of it."""
        lo, hi = max(0, lo), min(hi, len(self))
        rows, per_graph = self._row_arrays(), [{} for _ in range(max(0, hi - lo))]
        for offsets, group in _GROUPS:
            off = self.offsets[offsets]
            start = int(off[lo]) if hi > lo else 0
            local = off[lo : hi + 1] - start
            for name in group:
                block = rows[name][start : int(off[hi])] if hi > lo else None
                for g, arrays in enumerate(per_graph):
                    arrays[name] = block[local[g] : local[g + 1]]
        return [
            ShardRecord(
                self.ids[lo + g],
                Graph(**arrays, search_radius=float(self.search_radius[lo + g])),
                None if self.targets is None else self.targets[lo + g],
            )
            for g, arrays in enumerate(per_graph)
        ]

    def __getitem__(self, i: int) -> ShardRecord:
        graph = self.graph(i)
        target = self.targets[i] if self.targets is not None else None
        return ShardRecord(self.ids[i], graph, target)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def batch(self, indices: Sequence[int]) -> GraphBatch:
        """The graphs at ``indices`` (in that order) as one :class:`GraphBatch`."""
        return collate([self[int(i)] for i in indices], atom_table=self.atom_feature_table)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ------------------------------------------------------------------------------------------ batching ----------
def collate(
    items: Sequence[Graph | ShardRecord],
    ids: Sequence[str] | None = None,
    targets: np.ndarray | Sequence[np.ndarray] | None = None,
    atom_table: np.ndarray | None = None,
) -> GraphBatch:
    """Disjoint union of graphs as a :class:`GraphBatch` (atom/bond indices offset per graph).

    ``items`` are :class:`Graph` or :class:`ShardRecord` (then ids and targets come from the records unless given).
    ``targets`` is ``None`` when any item is unlabelled. ``atom_table`` defaults to :func:`cgcnn_table`.
    """
    import torch

    from pipeline.data.batch import GraphBatch

    if not items:
        raise ValueError("collate needs at least one graph")
    graphs = [it.graph if isinstance(it, ShardRecord) else it for it in items]
    if ids is None:
        ids = [it.id if isinstance(it, ShardRecord) else str(n) for n, it in enumerate(items)]
    if targets is None and all(isinstance(it, ShardRecord) and it.target is not None for it in items):
        targets = [it.target for it in items]
    table = cgcnn_table() if atom_table is None else atom_table

    n_atoms = np.array([g.n_atoms for g in graphs], dtype=np.int64)
    n_edges = np.array([g.n_edges for g in graphs], dtype=np.int64)
    node_off = np.repeat(np.cumsum(n_atoms) - n_atoms, [g.n_edges for g in graphs])
    edge_off = np.repeat(np.cumsum(n_edges) - n_edges, [g.n_triplets for g in graphs])
    z = np.concatenate([g.atomic_number for g in graphs])

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(g, name) for g in graphs])

    return GraphBatch(
        atom_features=torch.from_numpy(table[z]),
        edge_src=torch.from_numpy(cat("edge_src").astype(np.int64) + node_off),
        edge_dst=torch.from_numpy(cat("edge_dst").astype(np.int64) + node_off),
        bond_vec=torch.from_numpy(cat("bond_vec")),
        line_src=torch.from_numpy(cat("line_src").astype(np.int64) + edge_off),
        line_dst=torch.from_numpy(cat("line_dst").astype(np.int64) + edge_off),
        angle_cos=torch.from_numpy(cat("angle_cos")),
        node_graph=torch.from_numpy(np.repeat(np.arange(len(graphs), dtype=np.int64), n_atoms)),
        n_graphs=len(graphs),
        ids=list(ids),
        targets=None
        if targets is None
        else torch.from_numpy(np.asarray(np.stack(targets), dtype=np.float32)),
    )
