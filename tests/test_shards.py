"""HDF5 shards: exact round trip, random access, batching into GraphBatch, atomic writes."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from pipeline.data.graphs import Graph
from pipeline.data.shards import ShardReader, ShardWriter, collate, write_shard
from pipeline.grid import N_BINS
from tests.helpers import graph_of


def _structures() -> list[Structure]:
    return [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]),
        Structure.from_spacegroup(
            "P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]
        ),
        Structure(
            Lattice.from_parameters(4.1, 4.7, 5.3, 79, 86, 97),
            ["Ga", "As", "Li"],
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.2, 0.7, 0.1]],
        ),
    ]


@pytest.fixture(scope="module")
def graphs() -> list[Graph]:
    return [
        graph_of(s.lattice.matrix, s.frac_coords, [e.symbol for e in s.species], k=12) for s in _structures()
    ]


@pytest.fixture(scope="module")
def targets() -> np.ndarray:
    return np.random.default_rng(0).random((4, N_BINS), dtype=np.float32)


IDS = ["JVASP-1", "JVASP-22", "JVASP-333", "JVASP-4444"]


def test_round_trip_is_exact(tmp_path: Path, graphs: list[Graph], targets: np.ndarray) -> None:
    path = tmp_path / "s.h5"
    assert write_shard(path, IDS, graphs, targets, {"split": "train", "k": 12, "cutoff": 8.0}) == 4
    with ShardReader(path) as r:
        assert len(r) == 4 and r.ids == IDS and r.labelled
        assert r.meta["split"] == "train" and r.meta["n_atoms"] == sum(g.n_atoms for g in graphs)
        for i in [2, 0, 3, 1, -1]:
            rec = r[i]
            assert rec.id == IDS[i]
            assert rec.graph.equals(graphs[i])
            np.testing.assert_array_equal(rec.target, targets[i])
            assert rec.target.dtype == np.float32
        with pytest.raises(IndexError, match="graph 4 out of range"):
            r[4]


def test_unlabelled_shard_has_no_targets(tmp_path: Path, graphs: list[Graph]) -> None:
    write_shard(tmp_path / "p.h5", IDS, graphs, None)
    r = ShardReader(tmp_path / "p.h5")
    assert not r.labelled and r[1].target is None
    assert r.batch([0, 1]).targets is None


def test_flushes_in_pieces_give_the_same_file_contents(tmp_path: Path, graphs: list[Graph], targets) -> None:
    """Offsets stay right across buffer flushes (the writer streams; it never holds a whole shard)."""
    with ShardWriter(tmp_path / "f.h5", labelled=True, flush_every=3) as w:
        for _ in range(3):
            for jid, g, t in zip(IDS, graphs, targets, strict=True):
                w.append(jid, g, t)
    r = ShardReader(tmp_path / "f.h5")
    assert len(r) == 12
    for i in range(12):
        assert r[i].graph.equals(graphs[i % 4]) and r[i].id == IDS[i % 4]


def test_empty_shard(tmp_path: Path) -> None:
    write_shard(tmp_path / "e.h5", [], [], [], {"split": "val"})
    r = ShardReader(tmp_path / "e.h5")
    assert len(r) == 0 and r.meta["n_graphs"] == 0


def test_failed_write_leaves_no_file(tmp_path: Path, graphs: list[Graph]) -> None:
    path = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match="target has shape"):
        write_shard(path, IDS[:2], graphs[:2], [np.zeros(N_BINS), np.zeros(3)])
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_schema_is_chunked_compressed_and_documented_dtypes(tmp_path: Path, graphs, targets) -> None:
    write_shard(tmp_path / "s.h5", IDS, graphs, targets)
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["line_src"].compression == "gzip" and f["line_src"].chunks is not None
        assert f["bond_vec"].dtype == np.float32 and f["edge_src"].dtype == np.int32
        assert f["atom_feature_table"].shape == (101, 92)
        np.testing.assert_array_equal(f["edge_offsets"][:], np.cumsum([0] + [g.n_edges for g in graphs]))


def test_reader_pickles_for_dataloader_workers(tmp_path: Path, graphs, targets) -> None:
    write_shard(tmp_path / "s.h5", IDS, graphs, targets)
    r = ShardReader(tmp_path / "s.h5")
    r[0]  # opens the file handle
    r2 = pickle.loads(pickle.dumps(r))
    assert r2[3].graph.equals(graphs[3])


def test_collate_offsets_features_and_targets(tmp_path: Path, graphs: list[Graph], targets) -> None:
    from jarvis.core.specie import get_node_attributes

    write_shard(tmp_path / "s.h5", IDS, graphs, targets)
    order = [3, 0, 2]
    b = ShardReader(tmp_path / "s.h5").batch(order)
    chosen = [graphs[i] for i in order]
    n_atoms = [g.n_atoms for g in chosen]
    assert b.n_graphs == 3 and b.ids == [IDS[i] for i in order]
    assert b.atom_features.shape == (sum(n_atoms), 92) and b.atom_features.dtype == torch.float32
    np.testing.assert_allclose(b.atom_features[0].numpy(), get_node_attributes("Ga", atom_features="cgcnn"))
    np.testing.assert_array_equal(b.node_graph.numpy(), np.repeat([0, 1, 2], n_atoms))
    # every bond stays inside its own graph, and line-graph pairs still share the middle atom
    assert (b.node_graph[b.edge_src] == b.node_graph[b.edge_dst]).all()
    assert (b.edge_dst[b.line_src] == b.edge_src[b.line_dst]).all()
    assert b.edge_src.dtype == torch.int64 and b.line_src.dtype == torch.int64
    # graph 1 of the batch, un-offset, is the original graph
    e0, t0 = chosen[0].n_edges, chosen[0].n_triplets
    np.testing.assert_array_equal(
        b.edge_src[e0 : e0 + chosen[1].n_edges].numpy() - n_atoms[0], chosen[1].edge_src
    )
    np.testing.assert_array_equal(b.line_dst[t0 : t0 + chosen[1].n_triplets].numpy() - e0, chosen[1].line_dst)
    np.testing.assert_array_equal(b.bond_vec.numpy(), np.concatenate([g.bond_vec for g in chosen]))
    np.testing.assert_array_equal(b.targets.numpy(), targets[order])


def test_collate_plain_graphs() -> None:
    s = Structure(Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    g = graph_of(s.lattice.matrix, s.frac_coords, ["Cu"])
    b = collate([g, g], ids=["a", "b"])
    assert b.n_graphs == 2 and b.targets is None and b.edge_dst.max() == 1
    with pytest.raises(ValueError, match="at least one graph"):
        collate([])


def test_in_memory_reader_gives_the_same_graphs(tmp_path: Path, graphs: list[Graph], targets) -> None:
    write_shard(tmp_path / "s.h5", IDS, graphs, targets)
    disk, mem = ShardReader(tmp_path / "s.h5"), ShardReader(tmp_path / "s.h5", in_memory=True)
    assert mem.in_memory and not disk.in_memory
    for i in range(4):
        assert mem[i].graph.equals(disk[i].graph) and mem[i].id == disk[i].id
        np.testing.assert_array_equal(mem[i].target, disk[i].target)
    again = pickle.loads(pickle.dumps(mem))  # in-memory rows travel with the pickle
    assert again.in_memory and again[2].graph.equals(graphs[2])


def test_read_range_equals_single_reads(tmp_path: Path, graphs: list[Graph], targets) -> None:
    with ShardWriter(tmp_path / "f.h5", labelled=True, flush_every=3) as w:
        for _ in range(3):
            for jid, g, t in zip(IDS, graphs, targets, strict=True):
                w.append(jid, g, t)
    for reader in (ShardReader(tmp_path / "f.h5"), ShardReader(tmp_path / "f.h5", in_memory=True)):
        block = reader.read_range(2, 9)
        assert [rec.id for rec in block] == [reader[i].id for i in range(2, 9)]
        for i, rec in zip(range(2, 9), block, strict=True):
            assert rec.graph.equals(reader[i].graph)
            np.testing.assert_array_equal(rec.target, reader[i].target)
        assert reader.read_range(5, 5) == [] and len(reader.read_range(10, 99)) == 2
