"""dos stage: joins, metadata, splits and rejects, on real data and on deliberately broken inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import dos, fetch
from pipeline.demo_data import records as demo_records
from pipeline.grid import FREQ_CM, N_BINS
from pipeline.schemas import MATERIALS


def _tables(records: list[dict], spectra: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    structures, _ = fetch.structures_from_records(records, "test")
    dos_raw = pd.DataFrame(
        spectra, columns=["jid", "frequencies", "values", "unit", "official_split", "dos_source"]
    )
    return structures.to_pandas(), dos_raw


def _spectrum(jid: str, values, split: str | None = "train") -> dict:
    return {
        "jid": jid,
        "frequencies": FREQ_CM.tolist(),
        "values": list(values),
        "unit": "cm-1",
        "official_split": split,
        "dos_source": "test",
    }


def test_shared_subset_gives_the_official_counts(shared_zip, tmp_path):
    fetch.run("local", "leaderboard", tmp_path / "fetch", local_path=str(shared_zip))
    counts = dos.run(tmp_path / "fetch", tmp_path / "dos", "official", [0.8, 0.1, 0.1], 42)
    assert counts == {"labelled": 1561, "train": 1186, "val": 190, "test": 185, "pool": 786, "rejects": 12682}
    table = pq.read_table(tmp_path / "dos/dataset.parquet")
    assert table.schema.equals(MATERIALS, check_metadata=False)
    df = table.to_pandas()
    assert np.allclose(np.stack(df.dos).max(axis=1), 1.0)
    assert df.jid.is_unique and df.n_atoms_per_fu.ge(1).all() and df.volume_per_atom.between(3, 200).all()
    assert set(df.crystal_system.dropna()) <= {
        "triclinic",
        "monoclinic",
        "orthorhombic",
        "tetragonal",
        "trigonal",
        "hexagonal",
        "cubic",
    }
    rejects = pd.read_parquet(tmp_path / "dos/rejects.parquet")
    assert set(rejects.reason) == {"spectrum has no structure in the structure source"}


def test_every_input_id_is_accounted_for_with_a_reason():
    recs = demo_records()[:5]
    overlapping = {
        **recs[0],
        "jid": "OVERLAP",
        "atoms": {**recs[0]["atoms"], "coords": [[0, 0, 0], [0.01, 0, 0]], "elements": ["Si", "Si"]},
    }
    unknown_el = {**recs[1], "jid": "UNKNOWN", "atoms": {**recs[1]["atoms"], "elements": ["Xx", "Xx"]}}
    flat = {
        **recs[2],
        "jid": "FLAT",
        "atoms": {**recs[2]["atoms"], "lattice_mat": [[1, 0, 0], [0, 1, 0], [0, 0, 0]]},
    }
    records = [*recs, recs[0], overlapping, unknown_el, flat]
    good = np.linspace(0, 1, N_BINS)
    spectra = [
        _spectrum(recs[0]["jid"], good),
        _spectrum(recs[0]["jid"], good),  # duplicate spectrum
        _spectrum(recs[1]["jid"], np.full(N_BINS, np.nan)),
        _spectrum(recs[2]["jid"], -good),
        _spectrum(recs[3]["jid"], np.zeros(N_BINS)),
        _spectrum("NO-STRUCTURE", good),
        _spectrum("OVERLAP", good),
        _spectrum(recs[4]["jid"], good, split=None),
    ]
    structures, dos_raw = _tables(records, spectra)
    labelled, pool, rejects = dos.build(structures, dos_raw, "official")
    reasons = {(jid, reason.split(" (")[0].split(":")[0]) for jid, _, reason in rejects}
    assert reasons == {
        (recs[0]["jid"], "duplicate id in structures"),
        (recs[0]["jid"], "duplicate id in spectra"),
        (recs[1]["jid"], "DOS contains NaN or infinite values"),
        (recs[2]["jid"], "DOS has negative values"),
        (recs[3]["jid"], "DOS is all zero"),
        ("NO-STRUCTURE", "spectrum has no structure in the structure source"),
        ("OVERLAP", "unusable structure"),
        ("UNKNOWN", "unusable structure"),
        ("FLAT", "unusable structure"),
        (recs[4]["jid"], "not in the official jarvis-leaderboard split"),
    }
    assert list(labelled.jid) == [recs[0]["jid"]]
    assert pool.empty  # every other structure had a spectrum (rejected ones are in rejects, not in the pool)
    all_ids = {r["jid"] for r in records} | {s["jid"] for s in spectra}
    seen = set(labelled.jid) | set(pool.jid) | {jid for jid, _, _ in rejects}
    assert all_ids == seen


def test_random_split_is_seeded_order_independent_and_sized():
    ids = pd.Series([f"JVASP-{i}" for i in range(1000)])
    a = dos.random_split(ids, [0.8, 0.1, 0.1], seed=1)
    b = dos.random_split(ids.iloc[::-1].reset_index(drop=True), [0.8, 0.1, 0.1], seed=1)
    assert dict(zip(ids, a, strict=True)) == dict(zip(ids.iloc[::-1], b, strict=True))
    assert a.value_counts().to_dict() == {"train": 800, "val": 100, "test": 100}
    assert not a.equals(dos.random_split(ids, [0.8, 0.1, 0.1], seed=2))


def test_metadata_of_textbook_crystals():
    by_id = {r["jid"]: r["atoms"] for r in demo_records()}
    gaas = dos.structure_metadata(
        **{k: by_id["JVASP-1174"][k] for k in ("lattice_mat",)},
        frac_coords=by_id["JVASP-1174"]["coords"],
        elements=by_id["JVASP-1174"]["elements"],
    )
    assert gaas["formula"] == "GaAs" and gaas["n_atoms_per_fu"] == 2 and gaas["spacegroup_number"] == 216
    assert gaas["volume_per_atom"] == pytest.approx(5.653**3 / 8, rel=1e-9)
    sto = by_id["JVASP-8082"]
    meta = dos.structure_metadata(sto["lattice_mat"], sto["coords"], sto["elements"])
    assert (meta["formula"], meta["n_atoms_per_fu"], meta["crystal_system"]) == ("SrTiO3", 5, "cubic")
