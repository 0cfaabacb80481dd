"""properties stage end to end on small, physically meaningful inputs (no Snakemake)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.grid import FREQ_CM, N_BINS
from pipeline.io import write_parquet
from pipeline.physics import thermo
from pipeline.physics.debye import elastic_debye_temperature, sound_velocities
from pipeline.schemas import MATERIALS, PREDICTIONS, PROPERTIES
from pipeline.stages import properties

SI_ELASTIC = [  # silicon, GPa (C11, C12, C44 at room temperature)
    [166, 64, 64, 0, 0, 0],
    [64, 166, 64, 0, 0, 0],
    [64, 64, 166, 0, 0, 0],
    [0, 0, 0, 80, 0, 0],
    [0, 0, 0, 0, 80, 0],
    [0, 0, 0, 0, 0, 80],
]


def peak(at_cm: float) -> list[float]:
    return np.where(FREQ_CM == at_cm, 1.0, 0.0).tolist()


def material(jid, dos, n=1, mass=28.0855, elements=("Si", "Si"), elastic=None, split="test"):
    return {
        "jid": jid,
        "split": split,
        "dos": dos,
        "dos_scale": 1.0,
        "area_below_grid_fraction": 0.0,
        "area_above_grid_fraction": 0.0,
        "formula": "X",
        "n_atoms": len(elements),
        "n_atoms_per_fu": n,
        "formula_mass": mass,
        "volume_per_atom": 20.02,
        "n_elements": len(set(elements)),
        "spacegroup_number": 227,
        "crystal_system": "cubic",
        "relaxation": "jarvis",
        "mp_id": None,
        "lattice_mat": [[0.0, 2.7, 2.7], [2.7, 0.0, 2.7], [2.7, 2.7, 0.0]],
        "frac_coords": [[0.0, 0.0, 0.0]] * len(elements),
        "elements": list(elements),
        "elastic_tensor": elastic,
        "bulk_modulus_gpa": None,
        "shear_modulus_gpa": None,
        "moduli_source": None,
    }


@pytest.fixture
def inputs(tmp_path):
    unstable = np.array(peak(300.0)) + 0.5 * np.array(peak(-100.0))
    rows = [
        material("JVASP-1", peak(400.0), elastic=SI_ELASTIC),
        material("JVASP-2", peak(200.0), n=2, mass=144.6, elements=("Ga", "As")),
        material("JVASP-3", unstable.tolist(), elements=("Na", "F"), mass=41.99, n=2),
        material("JVASP-4", None),  # labelled row without spectrum -> reject
        material("JVASP-5", peak(-200.0)),  # entirely imaginary: kept (unstable), no thermal properties
        material("JVASP-6", peak(400.0), n=0),  # bad N -> reject
        material("JVASP-7", [0.0] * N_BINS),  # all zeros -> reject
    ]
    dataset = tmp_path / "dataset.parquet"
    write_parquet(pd.DataFrame(rows), dataset, MATERIALS)
    pool = tmp_path / "pool.parquet"
    write_parquet(pd.DataFrame([material("JVASP-9", None, split="pool")]), pool, MATERIALS)
    preds = pd.DataFrame(
        {
            "jid": ["JVASP-1", "JVASP-9", "JVASP-404"],
            "split": ["test", "pool", "pool"],
            "dos_pred": [peak(420.0), peak(500.0), peak(500.0)],
            "model_id": ["abc"] * 3,
            "negative_fraction_head": [None] * 3,  # a model without a stability head
        }
    )
    pred = tmp_path / "pred.parquet"
    write_parquet(preds, pred, PREDICTIONS)
    return dataset, pool, pred


def test_stage_without_predictions(inputs, tmp_path):
    dataset, _, _ = inputs
    out, rej = tmp_path / "p.parquet", tmp_path / "r.parquet"
    assert properties.main(["--dataset", str(dataset), "--out", str(out), "--rejects", str(rej)]) == 0
    df = pd.read_parquet(out)
    assert pq.read_schema(out).names == PROPERTIES.names
    assert sorted(df["jid"]) == ["JVASP-1", "JVASP-2", "JVASP-3", "JVASP-5"]
    assert set(df["source"]) == {"dft"}
    rejects = pd.read_parquet(rej)
    assert sorted(rejects["jid"]) == ["JVASP-4", "JVASP-6", "JVASP-7"]
    assert all(rejects["stage"] == "properties")
    reasons = dict(zip(rejects["jid"], rejects["reason"], strict=True))
    assert (
        "missing" in reasons["JVASP-4"]
        and "formula unit" in reasons["JVASP-6"]
        and "zeros" in reasons["JVASP-7"]
    )
    imaginary = df.set_index("jid").loc["JVASP-5"]
    assert not imaginary["stable"] and imaginary["negative_fraction"] == 1.0
    assert np.isnan(imaginary["cv_300k"]) and np.all(np.isnan(imaginary["cv"]))

    by = df.set_index("jid")
    # Einstein solid at 400 cm^-1, N=1: closed form at 300 K
    x = thermo.HC_OVER_KB * 400.0 / 300.0
    assert by.loc["JVASP-1", "cv_300k"] == pytest.approx(
        3 * thermo.R_GAS * x**2 * np.exp(x) / np.expm1(x) ** 2
    )
    assert by.loc["JVASP-1", "cv_300k_gravimetric"] == pytest.approx(by.loc["JVASP-1", "cv_300k"] / 0.0280855)
    assert by.loc["JVASP-1", "debye_source"] == "elastic"
    assert by.loc["JVASP-2", "debye_source"] == "dos_moment"
    assert by.loc["JVASP-2", "debye_temperature"] == pytest.approx(thermo.HC_OVER_KB * 200 * np.sqrt(5 / 3))
    assert not by.loc["JVASP-3", "stable"] and by.loc["JVASP-1", "stable"]
    assert by.loc["JVASP-3", "isotope_flag"] == "no_isotope_variance"
    assert by.loc["JVASP-3", "tau_iso_inv"] == 0.0
    assert by.loc["JVASP-2", "tau_iso_inv"] > 0
    # default grid includes 300 K and the list column agrees with the scalar
    temps = list(by.loc["JVASP-2", "temperatures_k"])
    assert by.loc["JVASP-2", "cv"][temps.index(300.0)] == pytest.approx(by.loc["JVASP-2", "cv_300k"])


def test_stage_with_predictions_and_pool(inputs, tmp_path):
    dataset, pool, pred = inputs
    out, rej = tmp_path / "p.parquet", tmp_path / "r.parquet"
    args = ["--dataset", str(dataset), "--pool", str(pool), "--predictions", str(pred)]
    assert (
        properties.main(
            args + ["--out", str(out), "--rejects", str(rej), "--set", "properties.temperatures=[100, 300]"]
        )
        == 0
    )
    df = pd.read_parquet(out)
    pred_rows = df[df["source"] == "pred"].set_index("jid")
    assert sorted(pred_rows.index) == ["JVASP-1", "JVASP-9"]
    assert pred_rows.loc["JVASP-9", "split"] == "pool" and pred_rows.loc["JVASP-9", "model_id"] == "abc"
    assert "JVASP-404" in set(pd.read_parquet(rej)["jid"])
    assert list(df["temperatures_k"].iloc[0]) == [100.0, 300.0]
    # deterministic rerun
    out2 = tmp_path / "p2.parquet"
    properties.main(
        args + ["--out", str(out2), "--rejects", str(rej), "--set", "properties.temperatures=[100, 300]"]
    )
    pd.testing.assert_frame_equal(df, pd.read_parquet(out2))


def test_a_stability_head_decides_stable_where_it_has_a_value(inputs, tmp_path):
    """Both predicted spectra are stable (no weight below 0 cm^-1); the head calls JVASP-1 unstable (0.3 > the
    head threshold) and JVASP-9 stable; a row without a head value falls back to its spectrum."""
    dataset, pool, pred = inputs
    table = pd.read_parquet(pred)
    table["negative_fraction_head"] = [0.3, 0.01, None]
    write_parquet(table, pred, PREDICTIONS)
    out, rej = tmp_path / "p.parquet", tmp_path / "r.parquet"
    args = ["--dataset", str(dataset), "--pool", str(pool), "--predictions", str(pred)]
    assert properties.main(args + ["--out", str(out), "--rejects", str(rej)]) == 0
    df = pd.read_parquet(out)
    rows = df[df["source"] == "pred"].set_index("jid")
    assert (rows["negative_fraction"] == 0).all()  # by their spectra both would be stable
    assert rows.loc["JVASP-1", "negative_fraction_head"] == pytest.approx(0.3)
    assert not rows.loc["JVASP-1", "stable"] and rows.loc["JVASP-9", "stable"]
    assert set(rows["stability_source"]) == {"head"}
    dft = df[df["source"] == "dft"]
    assert set(dft["stability_source"]) == {"spectrum"} and dft["negative_fraction_head"].isna().all()
    # the threshold is the config's
    assert (
        properties.main(
            args
            + ["--out", str(out), "--rejects", str(rej), "--set", "properties.head_unstable_fraction=0.5"]
        )
        == 0
    )
    assert pd.read_parquet(out).query("source == 'pred'")["stable"].all()


def test_missing_prediction_file_is_a_clear_error(inputs, tmp_path):
    dataset, _, _ = inputs
    with pytest.raises(SystemExit):
        properties.main(["--dataset", str(dataset), "--predictions", str(tmp_path / "nope.parquet")])


def test_silicon_elastic_debye_temperature():
    """Si from its elastic constants: theta_D ~ 640-650 K (literature elastic Debye temperature 645 K)."""
    v = sound_velocities(SI_ELASTIC, 28.0855, 1, 20.02)
    assert v is not None
    assert 8000 < v.longitudinal < 9500 and 5000 < v.transverse < 6000
    assert elastic_debye_temperature(v, 20.02) == pytest.approx(645, rel=0.03)


def test_unphysical_or_missing_tensor_gives_no_velocity():
    assert sound_velocities(None, 28.0, 1, 20.0) is None
    assert sound_velocities([[0.0] * 6] * 6, 28.0, 1, 20.0) is None
    assert sound_velocities([[1.0] * 5] * 6, 28.0, 1, 20.0) is None
    assert sound_velocities((-np.eye(6) * 50).tolist(), 28.0, 1, 20.0) is None
    assert N_BINS == 66


def test_silicon_debye_temperature_from_dft_dos_agrees_with_elastic_one():
    """Two independent routes to theta_D of Si: the second moment of the leaderboard DFT DOS (JVASP-1002) and the
    VRH sound velocity from measured elastic constants agree within 5 % (641 K vs 650 K)."""
    import json
    import zipfile
    from pathlib import Path

    import jarvis_leaderboard

    path = Path(jarvis_leaderboard.__file__).parent / "benchmarks/AI/Spectra/edos_pdos_ph_dos.json.zip"
    with zipfile.ZipFile(path) as z:
        spectra = json.loads(z.read(z.namelist()[0]))
    dos = next(split["JVASP-1002"] for split in spectra.values() if "JVASP-1002" in split)
    theta_dos = thermo.second_moment_debye_temperature(np.array(dos.split(";"), dtype=float))[0]
    v = sound_velocities(
        SI_ELASTIC, 28.0855, 1, 20.45
    )  # diamond Si, a = 5.43 A: 20.0 A^3/atom at 0 K, DFT 20.7
    theta_elastic = elastic_debye_temperature(v, 20.02)
    assert theta_dos == pytest.approx(theta_elastic, rel=0.05)
