"""dos stage: joins, metadata, splits and rejects, on real data and on deliberately broken inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.data import dos, fetch
from pipeline.data.demo_data import records as demo_records
from pipeline.grid import FREQ_CM, N_BINS
from pipeline.schemas import MATERIALS
from tests.helpers import evaluate_settings, featurize_settings, figshare_settings, graph_of, split_settings

#: the other settings the dos stage reads, at their schema defaults: featurize.min_distance, evaluate.duplicate_mae
MIN_DISTANCE = featurize_settings().min_distance
DUPLICATE_MAE = evaluate_settings().duplicate_mae


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
    fetch.run(
        "local", "leaderboard", str(shared_zip), figshare_settings(), tmp_path / "fetch", tmp_path / "raw"
    )
    counts = dos.run(
        tmp_path / "fetch",
        tmp_path / "dos",
        split_settings(method="official", seed=42),
        MIN_DISTANCE,
        DUPLICATE_MAE,
    )
    assert counts == {"labelled": 1561, "train": 1186, "val": 190, "test": 185, "pool": 786, "rejects": 12682}
    table = pq.read_table(tmp_path / "dos/dataset.parquet")
    assert table.schema.equals(MATERIALS, check_metadata=False)
    df = table.to_pandas()
    assert np.allclose(np.stack(df.dos).max(axis=1), 1.0)
    # the leaderboard spectra are given on the grid itself, so the re-binning clips nothing
    assert (df.area_below_grid_fraction == 0).all() and (df.area_above_grid_fraction == 0).all()
    # the subset's records carry no moduli: the jarvis-leaderboard Voigt moduli fill 184 of the 185 test ids
    test = df[df.split == "test"]
    assert test.bulk_modulus_gpa.notna().sum() == 184 and set(test.moduli_source.dropna()) == {"leaderboard"}
    assert df.bulk_modulus_gpa.notna().sum() == 1543 and (df.shear_modulus_gpa.dropna() > 0).all()
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
    labelled, pool, rejects = dos.build(
        structures, dos_raw, split_settings(method="official"), MIN_DISTANCE, DUPLICATE_MAE
    )
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
        min_distance=MIN_DISTANCE,
    )
    assert gaas["formula"] == "GaAs" and gaas["n_atoms_per_fu"] == 2 and gaas["spacegroup_number"] == 216
    assert gaas["volume_per_atom"] == pytest.approx(5.653**3 / 8, rel=1e-9)
    sto = by_id["JVASP-8082"]
    meta = dos.structure_metadata(sto["lattice_mat"], sto["coords"], sto["elements"], MIN_DISTANCE)
    assert (meta["formula"], meta["n_atoms_per_fu"], meta["crystal_system"]) == ("SrTiO3", 5, "cubic")


def test_a_broken_first_copy_does_not_throw_away_a_good_second_one():
    """Duplicates are validated before de-duplication: the first usable copy is kept, and the rejects rows say
    which copy was kept and why each other copy was not."""
    recs = demo_records()[:3]
    si, gaas, third = recs[0]["jid"], recs[1]["jid"], recs[2]["jid"]
    broken_si = {**recs[0], "atoms": {**recs[0]["atoms"], "coords": [[0, 0, 0], [0.01, 0, 0]]}}
    records = [broken_si, recs[0], recs[1], recs[1], recs[2]]
    good = np.linspace(0, 1, N_BINS)
    other = np.linspace(1, 0.5, N_BINS)
    spectra = [
        _spectrum(si, good),
        _spectrum(gaas, np.full(N_BINS, np.nan)),  # broken first copy of the spectrum
        _spectrum(gaas, other),
        _spectrum(gaas, good),  # a third, good copy: a plain duplicate of the kept second one
        _spectrum(third, good),
    ]
    structures, dos_raw = _tables(records, spectra)
    labelled, pool, rejects = dos.build(
        structures, dos_raw, split_settings(method="official"), MIN_DISTANCE, DUPLICATE_MAE
    )
    assert sorted(labelled.jid) == sorted([si, gaas, third]) and pool.empty
    np.testing.assert_allclose(labelled.set_index("jid").loc[gaas, "dos"], other / other.max(), rtol=1e-6)
    assert sorted(rejects) == sorted(
        [
            (
                si,
                "dos",
                "duplicate id in structures: copy 1 of 2 rejected: unusable structure: overlapping atoms: "
                "atom 0 (Si) and atom 1 (Si) are 0.038 A apart (< 0.5 A) (copy 2 kept)",
            ),
            (gaas, "dos", "duplicate id in structures: copy 2 of 2 is a duplicate of copy 1 (kept)"),
            (
                gaas,
                "dos",
                "duplicate id in spectra: copy 1 of 3 rejected: DOS contains NaN or infinite values (copy 2 kept)",
            ),
            (gaas, "dos", "duplicate id in spectra: copy 3 of 3 is a duplicate of copy 2 (kept)"),
        ]
    )


def test_duplicates_without_a_usable_copy_are_all_rejected_with_their_reasons():
    recs = demo_records()[:1]
    jid = recs[0]["jid"]
    flat = {**recs[0], "atoms": {**recs[0]["atoms"], "lattice_mat": [[1, 0, 0], [0, 1, 0], [1, 1, 0]]}}
    structures, dos_raw = _tables([flat, flat], [_spectrum(jid, np.zeros(N_BINS))])
    labelled, pool, rejects = dos.build(
        structures, dos_raw, split_settings(method="official"), MIN_DISTANCE, DUPLICATE_MAE
    )
    assert labelled.empty and pool.empty
    reasons = sorted(r for _, _, r in rejects)
    assert reasons[0] == "DOS is all zero"
    assert [r.split(": ")[1] for r in reasons[1:]] == ["copy 1 of 2 rejected", "copy 2 of 2 rejected"]
    assert all("cell volume" in r and r.endswith("(no copy usable)") for r in reasons[1:])


def _rocksalt_nacl(a: float = 5.64) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Conventional rock-salt NaCl from its lattice constant (pymatgen's space-group expansion of Fm-3m)."""
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return s.lattice.matrix, s.frac_coords, [sp.symbol for sp in s.species]


def test_left_handed_cell_is_accepted_with_the_same_metadata():
    lattice, frac, elements = _rocksalt_nacl()
    left = (lattice[[1, 0, 2]], frac[:, [1, 0, 2]], elements)  # rows 0 and 1 swapped: det < 0, same crystal
    assert np.linalg.det(left[0]) < 0
    right_meta, left_meta = (
        dos.structure_metadata(lattice, frac, elements, MIN_DISTANCE),
        dos.structure_metadata(*left, MIN_DISTANCE),
    )
    assert left_meta == right_meta
    assert (left_meta["formula"], left_meta["spacegroup_number"], left_meta["n_atoms"]) == ("NaCl", 225, 8)
    assert left_meta["volume_per_atom"] == pytest.approx(5.64**3 / 8, rel=1e-12)
    records = [
        {"jid": jid, "atoms": {"lattice_mat": lat.tolist(), "coords": f.tolist(), "elements": elements}}
        for jid, (lat, f) in (("RIGHT", (lattice, frac)), ("LEFT", left[:2]))
    ]
    spectrum = np.exp(-(((FREQ_CM - 200) / 60) ** 2))
    structures, dos_raw = _tables(records, [_spectrum("RIGHT", spectrum), _spectrum("LEFT", spectrum)])
    labelled, _, rejects = dos.build(
        structures, dos_raw, split_settings(method="official"), MIN_DISTANCE, DUPLICATE_MAE
    )
    assert rejects == [] and sorted(labelled.jid) == ["LEFT", "RIGHT"]


def test_area_clipped_above_the_grid_is_recorded_per_material(tmp_path):
    """A uniform DOS on 0..2000 cm^-1 (5 cm^-1 bins) has 990/2000 of its area above the grid's top edge
    (1010 cm^-1); one on -500..500 cm^-1 given in THz has 190/1000 below the bottom edge (-310 cm^-1)."""
    from pipeline.grid import THZ_TO_CM

    recs = demo_records()[:3]
    wide = np.arange(2.5, 2000.0, 5.0)
    soft = np.arange(-497.5, 500.0, 5.0)
    spectra = [
        {**_spectrum(recs[0]["jid"], np.ones(wide.size)), "frequencies": wide.tolist()},
        {
            **_spectrum(recs[1]["jid"], np.full(soft.size, 3.0)),
            "frequencies": (soft / THZ_TO_CM).tolist(),
            "unit": "THz",
        },
        _spectrum(recs[2]["jid"], np.linspace(0, 1, N_BINS)),
    ]
    structures, dos_raw = _tables(recs, spectra)
    (tmp_path / "fetch").mkdir()
    pq.write_table(fetch.pa.Table.from_pandas(structures), tmp_path / "fetch/structures.parquet")
    pq.write_table(fetch.pa.Table.from_pandas(dos_raw), tmp_path / "fetch/dos_raw.parquet")
    dos.run(
        tmp_path / "fetch",
        tmp_path / "dos",
        split_settings(method="official", seed=42),
        MIN_DISTANCE,
        DUPLICATE_MAE,
    )
    table = pq.read_table(tmp_path / "dos/dataset.parquet")
    assert b"doc" in table.schema.field("area_above_grid_fraction").metadata
    df = table.to_pandas().set_index("jid")
    assert df.loc[recs[0]["jid"], "area_above_grid_fraction"] == pytest.approx(990 / 2000, rel=1e-12)
    assert df.loc[recs[0]["jid"], "area_below_grid_fraction"] == 0.0
    assert df.loc[recs[1]["jid"], "area_below_grid_fraction"] == pytest.approx(190 / 1000, rel=1e-9)
    assert df.loc[recs[1]["jid"], "area_above_grid_fraction"] == 0.0
    assert df.loc[recs[2]["jid"], ["area_below_grid_fraction", "area_above_grid_fraction"]].tolist() == [0, 0]
    pool = pq.read_table(tmp_path / "dos/pool.parquet")
    assert pool.schema.field("area_above_grid_fraction").nullable


@pytest.mark.parametrize(
    ("lattice", "frac", "elements", "reason"),
    [
        (
            np.diag([0.3, 4.0, 4.0]),
            [[0, 0, 0]],
            ["Cu"],
            "overlapping atoms: atom 0 (Cu) and atom 0 (Cu) are 0.300",
        ),
        (
            np.eye(3) * 5,
            [[0.001, 0.5, 0.5], [0.999, 0.5, 0.5]],
            ["Na", "Cl"],
            "overlapping atoms: atom 0 (Na) and",
        ),
        (np.eye(3) * 4, [[0, 0, 0]], ["Xx"], "unknown element 'Xx'"),
        ([[1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 0, 0]], ["Cu"], "cell volume |det lattice_mat| = 0 A^3"),
        (np.eye(3) * 4, [[0, np.nan, 0]], ["Cu"], "non-finite lattice or coordinates"),
    ],
)
def test_dos_and_featurize_refuse_a_structure_for_the_same_reason(lattice, frac, elements, reason):
    """One validator (pipeline.data.structures) behind both stages. An atom closer than 0.5 A to its own periodic image
    (a 0.3 A lattice vector) used to pass the dos stage, whose overlap check only compared distinct sites."""
    from pipeline.data.graphs import FeaturizationError

    with pytest.raises(ValueError) as dos_error:
        dos.structure_metadata(lattice, frac, elements, MIN_DISTANCE)
    with pytest.raises(FeaturizationError) as featurize_error:
        graph_of(lattice, frac, elements)
    assert str(dos_error.value) == str(featurize_error.value)
    assert str(dos_error.value).startswith(reason)
