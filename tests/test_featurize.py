"""featurize stage: scatter into shards, rejects, gather manifest, CLI."""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Structure

from pipeline.data.featurize import gather, run_shard, shard_of
from pipeline.data.shards import ShardReader
from pipeline.grid import N_BINS
from pipeline.schemas import GRAPH_MANIFEST, MATERIALS, REJECTS
from pipeline.stages.featurize import main
from tests.helpers import featurize_settings


def _row(jid: str, split: str, lattice, frac, elements, dos=True) -> dict:
    rng = np.random.default_rng(int(jid.split("-")[1]))
    return {
        "jid": jid,
        "split": split,
        "dos": rng.random(N_BINS).astype(np.float32).tolist() if dos else None,
        "lattice_mat": np.asarray(lattice, dtype=float).tolist(),
        "frac_coords": np.asarray(frac, dtype=float).tolist(),
        "elements": list(elements),
    }


def _good(jid: str, split: str, s: Structure) -> dict:
    return _row(jid, split, s.lattice.matrix, s.frac_coords, [e.symbol for e in s.species])


ROCKSALT_FRAC = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]] + [
    [0.5, 0, 0],
    [0, 0.5, 0],
    [0, 0, 0.5],
    [0.5, 0.5, 0.5],
]


@functools.cache
def _good_structures() -> tuple[Structure, ...]:
    """fcc Cu and rocksalt NaCl (conventional cell) at six lattice constants."""
    out = []
    for a in np.linspace(3.4, 4.2, 6):
        out.append(Structure(Lattice.cubic(a), ["Cu"], [[0, 0, 0]]))
        out.append(Structure(Lattice.cubic(1.5 * a), ["Na"] * 4 + ["Cl"] * 4, ROCKSALT_FRAC))
    return tuple(out)


BAD = {
    "JVASP-9001": ("overlapping atoms", np.eye(3) * 5, [[0, 0, 0], [0.01, 0, 0]], ["Na", "Cl"]),
    "JVASP-9002": ("volume", [[1, 0, 0], [0, 1, 0], [2, 2, 0]], [[0, 0, 0]], ["Cu"]),
    "JVASP-9003": ("no neighbour within the cutoff", np.eye(3) * 20, [[0, 0, 0], [0.5, 0, 0]], ["Ar", "Ar"]),
    "JVASP-9004": ("unknown element 'Qq'", np.eye(3) * 4, [[0, 0, 0]], ["Qq"]),
}


def write_materials(path: Path, rows: list[dict]) -> None:
    cols = {name: [r.get(name) for r in rows] for name in MATERIALS.names}
    pq.write_table(pa.table(cols, schema=MATERIALS), path)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rows = [_good(f"JVASP-{100 + i}", "train", s) for i, s in enumerate(_good_structures())]
    rows += [_row(jid, "train", lat, frac, el) for jid, (_, lat, frac, el) in BAD.items()]
    rows.append(_good("JVASP-9005", "train", _good_structures()[0]) | {"dos": None})
    rows += [_good(f"JVASP-{200 + i}", "val", s) for i, s in enumerate(_good_structures()[:3])]
    rows = [rows[i] for i in np.random.default_rng(3).permutation(len(rows))]  # input order must not matter
    path = tmp_path / "dataset.parquet"
    write_materials(path, rows)
    return path


def test_shards_partition_the_split_and_bad_rows_become_rejects(tmp_path: Path, dataset: Path) -> None:
    n = 3
    shards, rejects = [], []
    for i in range(n):
        shards.append(tmp_path / f"train/shard-{i}.h5")
        rejects.append(tmp_path / f"train/rejects-{i}.parquet")
        run_shard(
            dataset, "train", i, shards[-1], rejects[-1], featurize_settings(n_shards=n), progress=False
        )
    ids = [jid for s in shards for jid in ShardReader(s).ids]
    rej = pd.concat([pd.read_parquet(r) for r in rejects])
    train_ids = {f"JVASP-{100 + i}" for i in range(12)}
    assert sorted(ids) == sorted(train_ids) and len(ids) == len(set(ids))  # every good one exactly once
    assert set(rej["jid"]) == set(BAD) | {"JVASP-9005"} and (rej["stage"] == "featurize").all()
    for jid, (reason, *_) in BAD.items():
        assert reason in rej.set_index("jid").loc[jid, "reason"]
    assert rej.set_index("jid").loc["JVASP-9005", "reason"] == "labelled material without a DOS"
    input_order = pd.read_parquet(dataset)["jid"].tolist()
    for s in shards:  # materials sit in the shard their jid hashes to, in input order
        r = ShardReader(s)
        assert all(shard_of(j, n) == r.meta["shard_index"] for j in r.ids)
        assert r.ids == sorted(r.ids, key=input_order.index)

    manifest = gather(shards, rejects, tmp_path / "manifest.parquet", tmp_path / "rejects.parquet")
    assert pq.read_schema(tmp_path / "manifest.parquet").equals(GRAPH_MANIFEST)
    assert manifest["n_graphs"].sum() == 12 and manifest["n_rejected"].sum() == 5
    assert (manifest["n_edges"] == manifest["n_atoms"] * 12).all()
    assert (manifest["n_triplets"] == manifest["n_atoms"] * 144).all()
    assert pq.read_schema(tmp_path / "rejects.parquet").equals(REJECTS)
    assert len(pd.read_parquet(tmp_path / "rejects.parquet")) == 5


def test_targets_follow_their_material(tmp_path: Path, dataset: Path) -> None:
    run_shard(
        dataset,
        "val",
        0,
        tmp_path / "v.h5",
        tmp_path / "v.parquet",
        featurize_settings(n_shards=1),
        progress=False,
    )
    table = pd.read_parquet(dataset).set_index("jid")
    r = ShardReader(tmp_path / "v.h5")
    assert sorted(r.ids) == ["JVASP-200", "JVASP-201", "JVASP-202"]
    for rec in r:
        np.testing.assert_array_equal(rec.target, np.asarray(table.loc[rec.id, "dos"], dtype=np.float32))


def test_rerun_is_byte_for_byte_deterministic_in_content(tmp_path: Path, dataset: Path) -> None:
    for name in ("a", "b"):
        run_shard(
            dataset,
            "train",
            1,
            tmp_path / f"{name}.h5",
            tmp_path / f"{name}.parquet",
            featurize_settings(n_shards=2),
            progress=False,
        )
    a, b = ShardReader(tmp_path / "a.h5"), ShardReader(tmp_path / "b.h5")
    assert a.ids == b.ids and all(a[i].graph.equals(b[i].graph) for i in range(len(a)))


def test_gather_refuses_an_incomplete_shard(tmp_path: Path, dataset: Path) -> None:
    run_shard(
        dataset,
        "train",
        0,
        tmp_path / "s.h5",
        tmp_path / "r.parquet",
        featurize_settings(n_shards=1),
        progress=False,
    )
    pq.write_table(pa.Table.from_pylist([], schema=REJECTS), tmp_path / "empty.parquet")
    with pytest.raises(ValueError, match="rejects != .* materials assigned"):
        gather(
            [tmp_path / "s.h5"], [tmp_path / "empty.parquet"], tmp_path / "m.parquet", tmp_path / "x.parquet"
        )


def test_cli_pool_split_and_gather(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = tmp_path / "pool.parquet"
    rows = [
        _good(f"JVASP-{300 + i}", "pool", s) | {"dos": None} for i, s in enumerate(_good_structures()[:4])
    ]
    write_materials(pool, rows)
    out, rej = tmp_path / "graphs/pool/shard-0.h5", tmp_path / "graphs/pool/rejects-0.parquet"
    argv = [
        "--split",
        "pool",
        "--input",
        str(pool),
        "--out",
        str(out),
        "--rejects",
        str(rej),
        "--no-progress",
    ]
    assert (
        main(
            argv + ["--set", "featurize.k=8", "--set", "featurize.cutoff=6", "--set", "featurize.n_shards=1"]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_graphs"] == 4 and summary["k"] == 8
    r = ShardReader(out)
    assert not r.labelled and r[0].graph.n_edges == 8 * r[0].graph.n_atoms and r.meta["cutoff"] == 6.0
    m = tmp_path / "graphs/manifest.parquet"
    assert (
        main(
            ["gather", "--shards", str(out), "--shard-rejects", str(rej), "--manifest", str(m)]
            + ["--rejects", str(tmp_path / "r.parquet")]
        )
        == 0
    )
    assert pd.read_parquet(m).loc[0, "labelled"] == False  # noqa: E712


def test_bad_shard_index_is_a_clear_error(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(ValueError, match="shard index 3 not in 0..2"):
        run_shard(
            dataset, "train", 3, tmp_path / "s.h5", tmp_path / "r.parquet", featurize_settings(n_shards=3)
        )


def test_shard_assignment_is_stable_and_roughly_balanced() -> None:
    assert shard_of("JVASP-1002", 8) == shard_of("JVASP-1002", 8)
    counts = np.bincount([shard_of(f"JVASP-{i}", 4) for i in range(4000)], minlength=4)
    assert counts.min() > 900


@pytest.mark.shared
def test_real_jarvis_structures_featurise_without_rejects(tmp_path: Path, shared_zip: Path) -> None:
    with zipfile.ZipFile(shared_zip) as z:
        records = json.loads(z.read(z.namelist()[0]))[::20]
    rows = [
        _row(f"JVASP-{i}", "test", r["atoms"]["lattice_mat"], r["atoms"]["coords"], r["atoms"]["elements"])
        for i, r in enumerate(records)
    ]
    write_materials(tmp_path / "d.parquet", rows)
    s = run_shard(
        tmp_path / "d.parquet",
        "test",
        0,
        tmp_path / "s.h5",
        tmp_path / "r.parquet",
        featurize_settings(n_shards=1),
        progress=False,
    )
    assert s["n_graphs"] == len(rows) and s["n_rejected"] == 0
    b = ShardReader(tmp_path / "s.h5").batch(range(len(rows)))
    assert b.edge_src.shape[0] == 12 * b.atom_features.shape[0]


def test_an_unexpected_error_is_isolated_to_its_row(tmp_path: Path, dataset: Path, monkeypatch) -> None:
    """A bug-like exception in the chunked builder: the chunk is redone row by row and only the row that still
    fails is rejected (with the exception type), the others are written."""
    import pipeline.data.featurize as fz

    def broken_chunk(*args, **kwargs):
        raise RuntimeError("chunk exploded")

    real_build = fz.build_graph

    def build_failing_for_cu(lattice, frac, elements, *args):
        if list(elements) == ["Cu"] and abs(lattice[0][0] - 3.4) < 1e-9:
            raise RuntimeError("boom")
        return real_build(lattice, frac, elements, *args)

    monkeypatch.setattr(fz, "build_graphs", broken_chunk)
    monkeypatch.setattr(fz, "build_graph", build_failing_for_cu)
    s = run_shard(
        dataset,
        "train",
        0,
        tmp_path / "s.h5",
        tmp_path / "r.parquet",
        featurize_settings(n_shards=1),
        progress=False,
    )
    rej = pd.read_parquet(tmp_path / "r.parquet").set_index("jid")
    assert rej.loc["JVASP-100", "reason"] == "unexpected error RuntimeError: boom"
    assert s["n_graphs"] == 11 and s["n_rejected"] == 6


def test_left_handed_cell_is_featurised_like_the_right_handed_one(tmp_path: Path) -> None:
    """Rock-salt NaCl and diamond Si from their lattice constants, each also with lattice rows 0 and 1 swapped
    (det < 0, fractional columns swapped: the same crystal). Every one is featurised, none rejected, with the same
    bond lengths atom by atom at the default k; at a k that closes a neighbour shell (18 for rock salt, 16 for
    diamond; k=12 cuts through one, so which bonds of it are kept may differ) the same angles too."""
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    a = 5.431
    si = Structure(
        Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Si"] * 2, [[0] * 3, [0.25] * 3]
    )
    for i, (s, shell_k) in enumerate(((nacl, 18), (si, 16))):
        elements = [e.symbol for e in s.species]
        lattice, frac = s.lattice.matrix, s.frac_coords
        assert np.linalg.det(lattice) > 0 > np.linalg.det(lattice[[1, 0, 2]])
        rows = [
            _row(f"JVASP-{700 + i}", "test", lattice, frac, elements),
            _row(f"JVASP-{710 + i}", "test", lattice[[1, 0, 2]], frac[:, [1, 0, 2]], elements),
        ]
        write_materials(tmp_path / "d.parquet", rows)
        for k in (12, shell_k):
            out, rej = tmp_path / f"s{i}-{k}.h5", tmp_path / f"r{i}-{k}.parquet"
            summary = run_shard(
                tmp_path / "d.parquet",
                "test",
                0,
                out,
                rej,
                featurize_settings(n_shards=1, k=k),
                progress=False,
            )
            assert summary["n_graphs"] == 2 and summary["n_rejected"] == 0
            g, h = (rec.graph for rec in ShardReader(out))
            assert g.n_edges == h.n_edges == k * g.n_atoms and g.n_triplets == h.n_triplets
            np.testing.assert_array_equal(g.atomic_number, h.atomic_number)
            dist = [np.sort(np.linalg.norm(x.bond_vec, axis=1).reshape(x.n_atoms, k), axis=1) for x in (g, h)]
            np.testing.assert_allclose(dist[1], dist[0], atol=1e-5)
            if k == shell_k:
                centre = [x.edge_src[x.line_dst] for x in (g, h)]
                for atom in range(g.n_atoms):
                    np.testing.assert_allclose(
                        np.sort(h.angle_cos[centre[1] == atom]),
                        np.sort(g.angle_cos[centre[0] == atom]),
                        atol=1e-5,
                    )
