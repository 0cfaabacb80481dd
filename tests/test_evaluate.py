"""evaluate stage, metrics, leakage analysis/split and the analytic DOS baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.data.leakage import leakage_aware_split, leakage_groups, nearest_mae
from pipeline.grid import FREQ_CM, N_BINS
from pipeline.io import write_parquet
from pipeline.nn.baselines import model_dos
from pipeline.physics import thermo
from pipeline.physics.debye import elastic_debye_temperature, sound_velocities
from pipeline.reports import evaluate
from pipeline.schemas import MATERIALS, PREDICTIONS
from pipeline.stages import evaluate as evaluate_stage
from pipeline.stages import properties
from tests.helpers import evaluate_settings, report_settings

#: evaluate.duplicate_mae at its schema default (the paper's near-duplicate threshold)
DUPLICATE_MAE = evaluate_settings().duplicate_mae

SI_ELASTIC = [[166, 64, 64, 0, 0, 0], [64, 166, 64, 0, 0, 0], [64, 64, 166, 0, 0, 0]] + [
    [0, 0, 0, 80, 0, 0],
    [0, 0, 0, 0, 80, 0],
    [0, 0, 0, 0, 0, 80],
]


# ------------------------------------------------------------------------------------ metrics -----------------
def test_regression_metrics_limits():
    y = np.array([1.0, 2.0, 4.0, 9.0])
    perfect = evaluate.regression_metrics(y, y)
    assert perfect["mae"] == 0 and perfect["r2"] == 1 and perfect["n"] == 4
    mean_predictor = evaluate.regression_metrics(y, np.full_like(y, y.mean()))
    assert mean_predictor["mae_mad"] == pytest.approx(1.0)  # predicting the mean: MAE == MAD
    assert mean_predictor["r2"] == pytest.approx(0.0)
    with_nan = evaluate.regression_metrics(np.append(y, np.nan), np.append(y, 3.0))
    assert with_nan["n"] == 4


def test_confusion_counts_with_stable_as_positive():
    true = np.array([True, True, True, False, False])
    pred = np.array([True, True, False, True, False])
    c = evaluate.confusion(true, pred)
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (2, 1, 1, 1)
    assert c["accuracy"] == pytest.approx(3 / 5)
    assert c["precision"] == pytest.approx(2 / 3) and c["recall"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------ leakage -----------------
def _spectrum(center: float, width: float = 60.0) -> np.ndarray:
    g = np.exp(-0.5 * ((FREQ_CM - center) / width) ** 2)
    return g / g.max()


def test_nearest_mae_finds_duplicates():
    ref = np.stack([_spectrum(200), _spectrum(500)])
    q = np.stack([_spectrum(200) + 0.005, _spectrum(800)])
    d = nearest_mae(q, ref)
    assert d[0] == pytest.approx(0.005, abs=1e-6)
    assert d[1] > 0.05


def _split_frame(n_families: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_families):
        base = _spectrum(100 + 12 * f, 30 + f % 7)
        for k in range(1 + f % 3):  # families of 1-3 near-duplicate spectra
            rows.append({"jid": f"J-{f}-{k}", "dos": (base + rng.uniform(0, 0.004, N_BINS)).tolist()})
        rows.append({"jid": f"S-{f}", "dos": _spectrum(900 - 5 * f, 15).tolist(), "formula": f"X{f}"})
    df = pd.DataFrame(rows)
    df["formula"] = df["formula"].where(df["formula"].notna(), df["jid"])
    df["spacegroup_number"] = 225
    return df


def test_leakage_aware_split_keeps_groups_together():
    df = _split_frame()
    df.loc[df["jid"] == "S-3", ["formula"]] = "X5"  # same composition + space group as S-5: must share a fold
    split = leakage_aware_split(df, [0.6, 0.2, 0.2], seed=3, threshold=DUPLICATE_MAE)
    assert set(split) == {"train", "val", "test"}
    families = df["jid"].str.extract(r"^J-(\d+)-")[0]
    for _, idx in split[families.notna()].groupby(families[families.notna()]):
        assert idx.nunique() == 1
    assert split[df["jid"] == "S-3"].iloc[0] == split[df["jid"] == "S-5"].iloc[0]
    spectra = np.stack(df["dos"].to_numpy())
    test = (split == "test").to_numpy()
    assert nearest_mae(spectra[test], spectra[~test]).min() >= DUPLICATE_MAE
    frac = split.value_counts(normalize=True)
    assert frac["train"] == pytest.approx(0.6, abs=0.05) and frac["test"] == pytest.approx(0.2, abs=0.05)


def test_leakage_aware_split_is_deterministic_and_order_independent():
    df = _split_frame()
    a = leakage_aware_split(df, [0.8, 0.1, 0.1], seed=1, threshold=DUPLICATE_MAE)
    shuffled = df.sample(frac=1.0, random_state=7)
    b = leakage_aware_split(shuffled, [0.8, 0.1, 0.1], seed=1, threshold=DUPLICATE_MAE)
    pd.testing.assert_series_equal(a, b.loc[a.index])
    assert not a.equals(leakage_aware_split(df, [0.8, 0.1, 0.1], seed=2, threshold=DUPLICATE_MAE))


def test_leakage_groups_without_spectra_use_composition():
    df = pd.DataFrame({"jid": ["a", "b", "c"], "dos": [None] * 3, "formula": ["GaAs", "GaAs", "GaAs"]})
    df["spacegroup_number"] = [216, 216, 186]
    g = leakage_groups(df, DUPLICATE_MAE)
    assert g[0] == g[1] != g[2]


def test_leakage_groups_use_the_threshold_they_are_given():
    """The near-duplicate threshold is the caller's (evaluate.duplicate_mae, which the dos stage passes): spectra
    0.005 apart per bin are one group at the default 0.01, two at 0.001."""
    base = _spectrum(300)
    df = pd.DataFrame({"jid": ["a", "b"], "dos": [base.tolist(), (base + 0.005).tolist()]})
    assert DUPLICATE_MAE == 0.01
    assert len(set(leakage_groups(df, DUPLICATE_MAE))) == 1
    assert len(set(leakage_groups(df, 0.001))) == 2


# ------------------------------------------------------------------------------------ baselines ---------------
def test_debye_and_bvk_dos_have_3n_states_and_right_cutoffs():
    v = sound_velocities(SI_ELASTIC, 28.0855, 1, 20.02)
    theta = elastic_debye_temperature(v, 20.02)
    for kind in ("debye", "bvk"):
        g = model_dos(v, 20.02, 2, kind)
        assert g.sum() * 20.0 == pytest.approx(6.0, rel=1e-9)  # 3N states, N = 2
        assert np.all(g[FREQ_CM < 0] == 0)
    # Debye cutoff of the longitudinal branch > Debye-mean cutoff (theta_D) > transverse cutoff
    top_debye = FREQ_CM[model_dos(v, 20.02, 1, "debye") > 0].max()
    assert top_debye > theta / thermo.HC_OVER_KB
    top_bvk = FREQ_CM[model_dos(v, 20.02, 1, "bvk") > 0].max()
    assert top_bvk < top_debye  # sinusoidal dispersion bends down: maximum (2/pi) v q_D


def test_debye_model_heat_capacity_is_near_debye_function():
    """Isotropic solid (v_l = v_t) -> one cutoff nu_D = theta_D / (hc/k_B): binned model C_V ~ Debye function."""
    from pipeline.physics.debye import SoundVelocities

    v = SoundVelocities(5000.0, 5000.0)
    theta = elastic_debye_temperature(v, 20.0)
    g = model_dos(v, 20.0, 1, "debye")
    cv = thermo.thermal_properties(g, 1, [theta])
    # continuum Debye C_V(T = theta_D) = 0.952 * 3R; 20 cm^-1 bins cost < 1 %
    assert cv.cv[0, 0] / (3 * thermo.R_GAS) == pytest.approx(0.952, rel=0.01)


# ------------------------------------------------------------------------------------ stage -------------------
def _material(jid, split, dos, elastic=None, relaxation="jarvis", moduli=(None, None)):
    return {
        "jid": jid,
        "split": split,
        "dos": dos,
        "dos_scale": 1.0,
        "area_below_grid_fraction": 0.0,
        "area_above_grid_fraction": 0.0,
        "formula": jid,
        "n_atoms": 2,
        "n_atoms_per_fu": 2,
        "formula_mass": 60.0,
        "volume_per_atom": 15.0,
        "n_elements": 2,
        "spacegroup_number": 225,
        "crystal_system": "cubic",
        "relaxation": relaxation,
        "mp_id": None,
        "lattice_mat": [[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]],
        "frac_coords": [[0, 0, 0], [0.5, 0.5, 0.5]],
        "elements": ["Si", "C"],
        "elastic_tensor": elastic,
        "bulk_modulus_gpa": moduli[0],
        "shear_modulus_gpa": moduli[1],
        "moduli_source": None if moduli[0] is None else "leaderboard",
    }


def test_stage_end_to_end(tmp_path):
    rows, preds = [], []
    for i in range(12):
        rows.append(_material(f"TR-{i}", "train", _spectrum(150 + 40 * i).tolist()))
    for i in range(6):
        # tests 0-2 duplicate a train spectrum; 3-5 are new. Predictions: exact for even, shifted for odd.
        dft = _spectrum(150 + 40 * i) if i < 3 else _spectrum(170 + 40 * i, 25)
        rows.append(
            _material(
                f"TE-{i}", "test", dft.tolist(), SI_ELASTIC if i == 4 else None, "other" if i else "jarvis"
            )
        )
        pred = dft if i % 2 == 0 else np.roll(dft, 2)
        preds.append({"jid": f"TE-{i}", "split": "test", "dos_pred": pred.tolist(), "model_id": "m"})
    unstable = _spectrum(-200, 40) + 0.2 * _spectrum(300)
    rows.append(_material("TE-U", "test", (unstable / unstable.max()).tolist()))
    preds.append({"jid": "TE-U", "split": "test", "dos_pred": _spectrum(300).tolist(), "model_id": "m"})
    rows.append(_material("TE-NOPRED", "test", _spectrum(400).tolist()))
    ds, pr, props = tmp_path / "ds.parquet", tmp_path / "pred.parquet", tmp_path / "props.parquet"
    write_parquet(pd.DataFrame(rows), ds, MATERIALS)
    write_parquet(pd.DataFrame(preds).assign(negative_fraction_head=None), pr, PREDICTIONS)
    assert (
        properties.main(
            [
                "--dataset",
                str(ds),
                "--predictions",
                str(pr),
                "--out",
                str(props),
                "--rejects",
                str(tmp_path / "prej.parquet"),
            ]
        )
        == 0
    )
    out = tmp_path / "reports"
    assert (
        evaluate_stage.main(
            [
                "--dataset",
                str(ds),
                "--predictions",
                str(pr),
                "--properties",
                str(props),
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )

    spectral = pd.read_parquet(out / "spectral.parquet").set_index("jid")
    assert spectral.loc["TE-0", "mae"] == 0 and spectral.loc["TE-1", "mae"] > 0
    assert list(spectral.loc[["TE-0", "TE-1", "TE-2", "TE-3"], "near_duplicate"]) == [True, True, True, False]
    assert not spectral.loc["TE-U", "stable_dft"] and spectral.loc["TE-U", "stable_pred"]
    assert "TE-NOPRED" in set(pd.read_parquet(out / "rejects.parquet")["jid"])

    m = pd.read_parquet(out / "metrics.parquet").set_index(["subset", "method", "quantity", "metric"])[
        "value"
    ]
    assert m[("all", "alignn_dos", "stability", "fp")] == 1  # TE-U: DFT unstable, predicted stable
    assert m[("all", "alignn_dos", "stability", "recall")] == 1.0
    assert m[("near_duplicate", "alignn_dos", "spectrum", "mae")] == pytest.approx(
        spectral.loc[["TE-0", "TE-1", "TE-2"], "mae"].mean()
    )
    assert m[("all", "alignn_dos", "cv_300k", "mae")] > 0
    assert {"relaxation=jarvis", "relaxation=other", "has_sound_velocity"} <= set(m.index.get_level_values(0))
    assert m[("all", "debye", "sound_velocity", "n_missing")] == 5  # 6 stable-both tests, one with a tensor
    thermal = pd.read_parquet(out / "thermal.parquet").set_index("jid")
    assert np.isfinite(thermal.loc["TE-4", "cv_300k_debye_model"]) and np.isnan(
        thermal.loc["TE-3", "cv_300k_bvk_model"]
    )
    # identical spectra give identical C_V at every fraction of T_D
    assert np.allclose(thermal.loc["TE-0", "cv_at_fraction_dft"], thermal.loc["TE-0", "cv_at_fraction_pred"])


def test_report_figures_from_stage_outputs(tmp_path):
    """The report stage turns the evaluate outputs into every promised PNG (smoke test on the e2e fixture)."""
    from pipeline.reports import figures as report

    test_stage_end_to_end(tmp_path)
    figs = report.run(
        str(tmp_path / "reports"),
        str(tmp_path / "ds.parquet"),
        str(tmp_path / "pred.parquet"),
        str(tmp_path / "figs"),
        report_settings(),
        DUPLICATE_MAE,
    )
    assert [f.name for f in figs] == report.FIGURES
    for f in figs:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 10_000


# ------------------------------------------------------------------------------------ direct scalar models -----
def test_direct_scalar_baseline_learns_cv_scale(tmp_path):
    """pipeline.nn.baselines trains the project's ALIGNN with a one-value head on DFT C_V / S_vib and predicts test
    shards in physical units (standardisation undone): predictions land in the range of the targets."""
    import json

    from pipeline.data.shards import write_shard
    from pipeline.schemas import DIRECT_PREDICTIONS, PROPERTIES
    from pipeline.stages import baselines
    from tests.helpers import graph_of

    fcc = 0.5 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    protos = [("NaCl", 5.64, ["Na", "Cl"], 0.5, 260.0), ("Si", 5.43, ["Si", "Si"], 0.25, 520.0)]
    items, prop_rows = [], []
    for i in range(12):
        name, a, els, x, nu_d = protos[i % 2]
        scale = 0.96 + 0.01 * (i // 2)
        g = np.where((FREQ_CM > 0) & (FREQ_CM <= nu_d * scale**-3), FREQ_CM**2, 0.0)
        jid = f"{name}-{i}"
        graph = graph_of(fcc * a * scale, np.array([[0, 0, 0], [x, x, x]], float), els)
        items.append((jid, graph, (g / g.max()).astype(np.float32)))
        p = thermo.thermal_properties(g, 2, [300.0])
        prop_rows.append({"jid": jid, "source": "dft", "cv_300k": p.cv[0, 0], "s_vib_300k": p.s_vib[0, 0]})
    props = pd.DataFrame(prop_rows)
    for col in PROPERTIES.names:
        if col not in props:
            props[col] = None
    write_parquet(props, tmp_path / "props.parquet", PROPERTIES)
    shards = {}
    for split, part in (("train", items[:8]), ("val", items[8:10]), ("test", items[10:])):
        shards[split] = str(tmp_path / f"{split}.h5")
        write_shard(shards[split], [i for i, _, _ in part], [g for _, g, _ in part], [t for _, _, t in part])
    tiny = {"preset": "demo", "hidden_features": 16, "embedding_features": 16}
    out = tmp_path / "direct.parquet"
    args = ["--properties", str(tmp_path / "props.parquet"), "--train-shards", shards["train"]]
    args += ["--val-shards", shards["val"], "--test-shards", shards["test"], "--out", str(out)]
    settings = json.dumps({"model": tiny, "train": {"epochs": 3, "batch_size": 4}})
    args += ["--work-dir", str(tmp_path / "work"), "--settings", settings]
    assert baselines.main(args) == 0
    pred = pd.read_parquet(out)
    assert list(pred.columns) == DIRECT_PREDICTIONS.names
    assert sorted(pred["jid"]) == ["NaCl-10", "Si-11"]
    cv = props["cv_300k"].to_numpy(float)
    spread = cv.max() - cv.min()
    assert pred["cv_300k_direct"].between(cv.min() - 3 * spread, cv.max() + 3 * spread).all()
    assert (pred["cv_300k_direct"] > 0).all()  # standardisation undone: physical units, not z-scores
