"""screen: any structure files -> predicted DOS, properties with ensemble uncertainties, flags, rejects, summary.

The model is a two-member ensemble trained here through the train and ensemble CLIs on strained NaCl/Si/MgO
(tests/test_train.py), so the members differ and every standard deviation is > 0. Structures are the textbook
example CIFs of pipeline.data.examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.data import examples
from pipeline.data.readers import read_paths
from pipeline.data.shards import write_shard
from pipeline.grid import FREQ_CM
from pipeline.nn import ensemble
from pipeline.nn.inference import load_model
from pipeline.nn.pretrained import (
    default_model_path,
    half_precision_copy,
    load_for_screening,
    sidecar_path,
    write_sidecar,
)
from pipeline.physics import thermo
from pipeline.physics.properties import compute_properties
from pipeline.schemas import SCREEN, SCREEN_SUMMARY
from pipeline.screening import screen, summary
from pipeline.stages import screen as screen_stage
from tests.helpers import graph_of, graph_settings, strained_crystals, train_members

SETTINGS = json.dumps(
    {
        "model": {"preset": "demo", "hidden_features": 16, "embedding_features": 16},
        "train": {"epochs": 3, "batch_size": 3, "seed": 11},
    }
)
ACCEPTANCE = ["NaCl", "Si", "MgO", "LiH"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A two-member ensemble model.pt (the train stage, then the ensemble library) and its training-elements
    sidecar."""
    return _ensemble_file(tmp_path_factory.mktemp("screen_model"), SETTINGS)


def _ensemble_file(tmp: Path, settings: str) -> Path:
    items = strained_crystals(9)
    meta = {"k": 12, "cutoff": 8.0}  # as the featurize stage records them
    tr, va = (
        write_shard(
            tmp / f"{name}.h5",
            [i for i, _, _ in part],
            [g for _, g, _ in part],
            [t for _, _, t in part],
            meta,
        )
        and tmp / f"{name}.h5"
        for name, part in (("train", items[:6]), ("val", items[6:]))
    )
    dirs = train_members(tr, va, tmp, settings)
    combined = tmp / "ensemble"
    models = [str(d / "model.pt") for d in dirs]
    histories = [str(d / "history.parquet") for d in dirs]
    ensemble.combine(models, histories, combined)
    dataset = pd.DataFrame({"split": ["train"] * 3, "elements": [["Na", "Cl"], ["Si", "Si"], ["Mg", "O"]]})
    dataset.to_parquet(tmp / "dataset.parquet")
    write_sidecar(combined / "model.pt", tmp / "dataset.parquet")
    return combined / "model.pt"


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("examples")
    examples.write(d)
    return d


def _folder(tmp: Path, example_dir: Path, names: list[str]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    for n in names:
        (tmp / f"{n}.cif").write_text((example_dir / f"{n}.cif").read_text())
    return tmp


def _screen(paths, out: Path, model: Path, *extra: str) -> int:
    return screen_stage.main(
        [*map(str, paths), "--out", str(out), "--model", str(model), "--no-progress", *extra]
    )


@pytest.fixture(scope="module")
def accepted(tmp_path_factory, model_file, example_dir):
    """The issue's acceptance run: NaCl, Si, MgO, LiH and one garbage file."""
    tmp = tmp_path_factory.mktemp("acceptance")
    folder = _folder(tmp / "in", example_dir, ACCEPTANCE)
    (folder / "garbage.cif").write_text("this is not a crystal\n{}[]\n")
    assert _screen([folder], tmp / "out", model_file) == 0
    return tmp / "out"


# ------------------------------------------------------------------------------------------ acceptance --------
def test_mixed_folder_gives_four_rows_one_reject_and_flags_the_hydride(accepted):
    df = pd.read_parquet(accepted / "screen.parquet")
    rejects = pd.read_parquet(accepted / "rejects.parquet")
    assert sorted(df.material_id) == sorted(ACCEPTANCE)
    assert rejects.jid.tolist() == ["garbage"] and rejects.stage.tolist() == ["screen"]
    assert (
        "unreadable cif file" in rejects.reason[0] and "no structures" in rejects.reason[0]
    )  # pymatgen's words
    by_id = df.set_index("material_id")
    assert by_id.loc["LiH", "beyond_grid"] and "contains H" in by_id.loc["LiH", "beyond_grid_reason"]
    assert list(by_id.loc["LiH", "unseen_elements"]) == ["H", "Li"]  # the model was trained on Na Cl Si Mg O
    assert all(len(by_id.loc[m, "unseen_elements"]) == 0 for m in ("NaCl", "Si", "MgO"))
    assert by_id.loc["NaCl", "formula"] == "NaCl" and by_id.loc["Si", "n_atoms_per_fu"] == 1
    assert df.negative_fraction_head.isna().all() and (df.stability_source == "spectrum").all()  # no head
    std_cols = [
        f.name
        for f in SCREEN
        if "_std" in f.name
        and f.name not in ("dos_abs_std_states_per_cm1_per_fu", "negative_fraction_head_std")
    ]
    for col in std_cols:
        values = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in df[col]])
        if col.startswith("dos_"):
            assert np.isfinite(values).all() and values.max() > 0, col
        elif col not in (
            "negative_fraction_std",
            "top_bins_weight_std",
        ):  # these may be 0 exactly (no weight)
            assert np.isfinite(values).all() and (values > 0).all(), col
    assert (df.n_members == 2).all() and np.isfinite(df.ood_score).all() and (df.ood_score > 0).all()
    assert pq.read_schema(accepted / "screen.parquet").names == SCREEN.names


def test_units_table_lists_every_column_with_its_unit(accepted):
    units = pd.read_parquet(accepted / "units.parquet").set_index("column")
    assert list(units.index) == SCREEN.names
    assert units.loc["cv_300k_j_per_kg_k", "unit"] == "J/(kg K)"
    assert units.loc["tau_iso_inv_ghz", "unit"] == "GHz"
    assert units.loc["dos_abs_states_per_cm1_per_fu", "unit"].startswith("states/")
    assert pq.read_schema(accepted / "screen.parquet").field("zpe_kj_per_mol").metadata[b"unit"] == b"kJ/mol"


def test_summary_ranks_like_the_table_and_renders(accepted):
    df = pd.read_parquet(accepted / "screen.parquet")
    s = pd.read_parquet(accepted / "summary.parquet")
    assert pq.read_schema(accepted / "summary.parquet").names == SCREEN_SUMMARY.names
    for column, _, _ in summary.RANKED:
        part = s[s.property == column]
        hi = part[part.end == "highest"].sort_values("rank")
        lo = part[part.end == "lowest"].sort_values("rank")
        assert hi.material_id.tolist() == df.sort_values(column, ascending=False).material_id.tolist()
        assert lo.material_id.tolist() == df.sort_values(column).material_id.tolist()
        assert (part.n_ranked == 4).all()
    hydride_first = s[(s.property == "cv_300k_j_per_kg_k") & (s.end == "highest") & (s["rank"] == 1)]
    assert hydride_first.material_id.item() == "LiH"  # lightest formula unit: highest gravimetric C_V
    md = (accepted / "summary.md").read_text()
    assert "| materials screened | 4 |" in md and "| rejected (rejects.parquet) | 1 |" in md
    assert "## C_V(300 K) [J/(kg K)]" in md and "## tau_iso^-1 [GHz]" in md
    assert "<table" in (accepted / "summary.html").read_text()
    for name in summary.FIGURES:
        assert (accepted / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------ readers -----------
def _nacl_structure(example_dir: Path):
    from pymatgen.io.cif import CifParser

    return CifParser(example_dir / "NaCl.cif").parse_structures(primitive=False)[0]


def test_cif_and_jarvis_json_give_identical_graphs_and_predictions(tmp_path, model_file, example_dir):
    s = _nacl_structure(example_dir)
    atoms = {
        "lattice_mat": s.lattice.matrix.tolist(),
        "coords": s.frac_coords.tolist(),
        "elements": [site.specie.symbol for site in s],
        "cartesian": False,
    }
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "NaCl.cif").write_text((example_dir / "NaCl.cif").read_text())
    (folder / "NaCl_jarvis.json").write_text(json.dumps({"jid": "JVASP-23862", "atoms": atoms}))
    raws = {r.material_id: r for r in read_paths([folder])}
    assert set(raws) == {"NaCl", "JVASP-23862"}  # a JARVIS record keeps its own jid
    a, b = raws["NaCl"], raws["JVASP-23862"]
    ga = graph_of(a.lattice, a.frac_coords, a.elements)
    gb = graph_of(b.lattice, b.frac_coords, b.elements)
    assert ga.equals(gb)
    assert _screen([folder], tmp_path / "out", model_file) == 0
    df = pd.read_parquet(tmp_path / "out" / "screen.parquet").set_index("material_id")
    np.testing.assert_array_equal(df.loc["NaCl", "dos_pred"], df.loc["JVASP-23862", "dos_pred"])
    np.testing.assert_array_equal(df.loc["NaCl", "dos_std"], df.loc["JVASP-23862", "dos_std"])
    assert df.loc["NaCl", "cv_300k_j_per_mol_k"] == df.loc["JVASP-23862", "cv_300k_j_per_mol_k"]


def test_every_format_reads_the_same_crystal(tmp_path, model_file, example_dir):
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp import Poscar

    s = _nacl_structure(example_dir)
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.cif").write_text((example_dir / "NaCl.cif").read_text())
    (d / "POSCAR").write_text(Poscar(s).get_str(significant_figures=12))
    (d / "c.vasp").write_text(Poscar(s).get_str(significant_figures=12))
    ase.io.write(d / "d.extxyz", AseAtomsAdaptor.get_atoms(s), format="extxyz")
    (d / "e.json").write_text(json.dumps(s.as_dict()))
    cart = {
        "lattice_mat": s.lattice.matrix.tolist(),
        "coords": s.cart_coords.tolist(),
        "elements": [x.specie.symbol for x in s],
        "cartesian": True,
    }
    (d / "f.json").write_text(json.dumps(cart))  # a bare JARVIS atoms dict, Cartesian
    assert _screen([d], tmp_path / "out", model_file) == 0
    df = pd.read_parquet(tmp_path / "out" / "screen.parquet").set_index("material_id")
    assert sorted(df.index) == ["POSCAR", "a", "c", "d", "e", "f"]
    assert pd.read_parquet(tmp_path / "out" / "rejects.parquet").empty
    ref = np.asarray(df.loc["a", "dos_pred"])
    for mid in df.index:
        np.testing.assert_allclose(df.loc[mid, "dos_pred"], ref, atol=2e-6, err_msg=mid)
        assert df.loc[mid, "formula"] == "NaCl" and df.loc[mid, "n_atoms"] == 8


def test_conventional_and_primitive_cells_predict_the_same(tmp_path, model_file, example_dir):
    """Mean pooling over atoms: the 4-atom conventional and the 1-atom primitive fcc Cu cell are one crystal (with
    k = 12 = its first shell, the kNN graph is the same per atom; rock salt's k = 12 cuts its 12-atom second shell,
    and which half is kept depends on the cell, so it is not used here)."""
    from pymatgen.io.cif import CifParser

    s = CifParser(example_dir / "Cu.cif").parse_structures(primitive=False)[0]
    prim = s.get_primitive_structure()
    assert len(prim) == 1 and len(s) == 4
    d = tmp_path / "in"
    d.mkdir()
    (d / "conv.json").write_text(json.dumps(s.as_dict()))
    (d / "prim.json").write_text(json.dumps(prim.as_dict()))
    assert _screen([d], tmp_path / "out", model_file) == 0
    df = pd.read_parquet(tmp_path / "out" / "screen.parquet").set_index("material_id")
    np.testing.assert_allclose(df.loc["conv", "dos_pred"], df.loc["prim", "dos_pred"], atol=1e-5)
    assert df.loc["conv", "n_atoms_per_fu"] == df.loc["prim", "n_atoms_per_fu"] == 1
    np.testing.assert_allclose(
        df.loc["conv", "cv_300k_j_per_mol_k"], df.loc["prim", "cv_300k_j_per_mol_k"], rtol=1e-4
    )


DISORDERED_CIF = """data_dis
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
_symmetry_Int_Tables_number 225
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na 0 0 0 0.5
K1 K 0 0 0 0.5
Cl1 Cl 0.5 0.5 0.5 1
"""


def test_each_bad_input_is_a_reject_with_its_reason_and_the_rest_completes(tmp_path, model_file, example_dir):
    import ase
    import ase.io
    from pymatgen.core import Lattice, Molecule, Structure

    d = _folder(tmp_path / "in", example_dir, ["NaCl", "MgO"])
    (d / "dis.cif").write_text(DISORDERED_CIF)
    (d / "water.json").write_text(
        json.dumps(Molecule(["O", "H", "H"], [[0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]]).as_dict())
    )
    ase.io.write(d / "gas.xyz", ase.Atoms("N2", positions=[[0, 0, 0], [0, 0, 1.1]]), format="extxyz")
    (d / "og.json").write_text(json.dumps(Structure(Lattice.cubic(4.0), ["Og"], [[0, 0, 0]]).as_dict()))
    (d / "overlap.json").write_text(
        json.dumps(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.02, 0, 0]]).as_dict())
    )
    (d / "notes.txt").write_text("not a structure")
    sub = d / "sub"
    sub.mkdir()
    (sub / "NaCl.cif").write_text((example_dir / "NaCl.cif").read_text())  # same id as ../NaCl.cif
    ase.io.write(
        d / "frames.extxyz",
        [
            ase.Atoms("Cu", cell=np.eye(3) * 2.55, pbc=True, scaled_positions=[[0, 0, 0]]),
            ase.Atoms("Cu", positions=[[0, 0, 0]]),
        ],
        format="extxyz",
    )
    assert _screen([d], tmp_path / "out", model_file, "--set", "screen.max_atoms=7") == 0
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet").groupby("jid")["reason"].agg(" | ".join)
    expected = {
        "NaCl": "too many atoms (8 > screen.max_atoms 7)",
        "MgO": "too many atoms",
        "dis": "partial occupancies or disorder",
        "water": "non-periodic input (a molecule",
        "gas": "non-periodic input (no periodic directions",
        "og": "unknown element 'Og' (no CGCNN features",
        "overlap": "overlapping atoms: atom 0 (Na) and atom 1 (Cl) are 0.080 A apart",
        "notes": "not a structure file",
        "frames#1": "non-periodic input",
    }
    for mid, reason in expected.items():
        assert reason in rejects.loc[mid], (mid, rejects.loc[mid])
    dup = pd.read_parquet(tmp_path / "out" / "rejects.parquet")
    dup = dup[dup.reason.str.contains("duplicate material id")]
    assert (
        dup.jid.tolist() == ["NaCl"] and "already read from" in dup.reason.item()
    )  # sub/NaCl.cif after ../NaCl.cif
    df = pd.read_parquet(tmp_path / "out" / "screen.parquet")
    assert df.material_id.tolist() == ["frames#0"]  # the one usable structure (fcc Cu, 1 atom)


def test_empty_or_hopeless_input_exits_nonzero_with_a_message(tmp_path, model_file, capsys):
    (tmp_path / "empty").mkdir()
    assert _screen([tmp_path / "empty"], tmp_path / "out1", model_file) == 1
    assert "nothing to screen" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.cif").write_text("garbage")
    assert _screen([tmp_path / "bad"], tmp_path / "out2", model_file) == 1
    err = capsys.readouterr().err
    assert "nothing to screen" in err and "x.cif" in err
    assert len(pd.read_parquet(tmp_path / "out2" / "rejects.parquet")) == 1
    assert not (tmp_path / "out2" / "screen.parquet").exists()  # nothing that looks like a result
    assert screen_stage.main(["--out", str(tmp_path / "out3"), "--model", str(model_file)]) == 1
    assert _screen([tmp_path / "empty"], tmp_path / "out4", tmp_path / "missing.pt") == 1
    assert "does not exist" in capsys.readouterr().err


def test_options_are_validated_against_the_config_schema(tmp_path, model_file):
    with pytest.raises(SystemExit) as e:
        _screen([tmp_path], tmp_path / "out", model_file, "--set", "screen.max_atoms=0")
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        _screen([tmp_path], tmp_path / "out", model_file, "--set", "properties.temperatures=[-5]")
    assert e.value.code == 2


# ------------------------------------------------------------------------------------------ numbers -----------
def test_ensemble_mean_and_std_are_the_members(accepted, model_file, example_dir):
    df = pd.read_parquet(accepted / "screen.parquet").set_index("material_id")
    raws = {r.material_id: r for r in read_paths([example_dir / f"{n}.cif" for n in ACCEPTANCE])}
    graphs = [graph_of(raws[n].lattice, raws[n].frac_coords, raws[n].elements) for n in ACCEPTANCE]
    from pipeline.data.shards import collate

    ens = load_model(model_file)  # the pipeline's loader: an EnsembleALIGNN averaging the members
    with torch.no_grad():
        batch = collate(graphs)
        mean = ens(batch).numpy()
        each = np.stack([m(batch).numpy() for m in ens.members])
    got = np.stack([df.loc[n, "dos_pred"] for n in ACCEPTANCE])
    np.testing.assert_allclose(got, mean, atol=1e-6)
    np.testing.assert_allclose(
        np.stack([df.loc[n, "dos_std"] for n in ACCEPTANCE]), each.std(0, ddof=1), atol=1e-6
    )
    # a property's std is the spread of that property over the members' own spectra
    n = np.array([2, 1, 2, 2])
    cv = thermo.thermal_properties(each.reshape(-1, 66).astype(float), np.tile(n, 2), [300.0]).cv.reshape(
        2, 4
    )
    np.testing.assert_allclose(
        [df.loc[m, "cv_300k_std_j_per_mol_k"] for m in ACCEPTANCE], cv.std(0, ddof=1), rtol=1e-4
    )


def test_properties_match_the_properties_stage_and_physics(accepted):
    df = pd.read_parquet(accepted / "screen.parquet")
    spectra = np.stack(df.dos_pred).astype(float)
    meta = pd.DataFrame(
        {
            "jid": df.material_id,
            "n_atoms_per_fu": df.n_atoms_per_fu,
            "formula_mass": df.formula_mass_g_per_mol,
            "volume_per_atom": df.volume_per_atom_a3,
            "elements": df.elements,
            "elastic_tensor": None,
        }
    )
    ref = compute_properties(spectra, meta, list(df.temperatures_k[0]), 0.1, "pred")
    np.testing.assert_allclose(df.cv_300k_j_per_mol_k, ref.cv_300k, rtol=1e-6)
    np.testing.assert_allclose(df.s_vib_300k_j_per_kg_k, ref.s_vib_300k_gravimetric, rtol=1e-6)
    np.testing.assert_allclose(df.tau_iso_inv_ghz, ref.tau_iso_inv, rtol=1e-6)
    np.testing.assert_allclose(df.zpe_kj_per_mol, ref.zpe, rtol=1e-6)
    np.testing.assert_allclose(np.stack(df.cv_j_per_mol_k), np.stack(ref.cv), rtol=1e-6)
    assert (df.stable == ref.stable).all()
    three_n = 3 * df.n_atoms_per_fu.to_numpy()
    np.testing.assert_allclose(df.cv_300k_per_oscillator_j_per_mol_k, df.cv_300k_j_per_mol_k / three_n)
    assert (df.cv_300k_per_oscillator_j_per_mol_k < thermo.R_GAS).all()  # at most k_B per oscillator
    np.testing.assert_allclose(
        df.cv_300k_j_per_kg_k, df.cv_300k_j_per_mol_k * 1e3 / df.formula_mass_g_per_mol
    )
    # the absolute DOS integrates to 3N over its non-negative part; C_V at 3000 K is near Dulong-Petit 3NR
    absolute = np.stack(df.dos_abs_states_per_cm1_per_fu).astype(float)
    np.testing.assert_allclose(thermo.positive_area(absolute), three_n, rtol=1e-5)
    hot = thermo.thermal_properties(absolute, df.n_atoms_per_fu.to_numpy(), [3000.0]).cv[:, 0]
    assert np.all(hot <= three_n * thermo.R_GAS) and np.all(hot > 0.9 * three_n * thermo.R_GAS)


@pytest.mark.filterwarnings(
    "ignore:DOS has non-zero density:UserWarning"
)  # pymatgen on g(0) > 0: expected here
def test_phonon_dos_helper_agrees_with_pymatgen(accepted):
    df = pd.read_parquet(accepted / "screen.parquet")
    for _, row in df.iterrows():
        dos = screen.phonon_dos(row)
        n3 = 3 * row.n_atoms_per_fu
        pos = dos.frequencies >= 0
        np.testing.assert_allclose(np.trapezoid(dos.densities[pos], dos.frequencies[pos]), n3, rtol=1e-5)
        # pymatgen integrates from its first positive frequency (20 cm^-1): the 0-20 cm^-1 interval is the
        # only difference from pipeline.physics.thermo, which counts it with C_V(0) = 0
        assert dos.cv(300) == pytest.approx(row.cv_300k_j_per_mol_k, rel=0.01)
        assert dos.entropy(300) == pytest.approx(row.s_vib_300k_j_per_mol_k, rel=0.03)
        assert dos.zero_point_energy() / 1e3 == pytest.approx(row.zpe_kj_per_mol, rel=0.01)  # J/mol -> kJ/mol
        assert screen.phonon_dos(row, std=True).densities.max() > 0


def test_beyond_grid_criteria():
    from pymatgen.core import Lattice, Structure

    def graph(s: Structure):
        return graph_of(s.lattice.matrix, s.frac_coords, [x.specie.symbol for x in s])

    fcc = Lattice([[0, 1.7835, 1.7835], [1.7835, 0, 1.7835], [1.7835, 1.7835, 0]])  # diamond, a = 3.567 A
    diamond = Structure(fcc, ["C", "C"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    si = Structure(Lattice(fcc.matrix * 5.431 / 3.567), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    assert screen.short_light_bond(graph(diamond)) == "C-C 1.54 A"
    assert screen.short_light_bond(graph(si)) is None
    nacl = Structure(Lattice(fcc.matrix * 5.64 / 3.567), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert screen.short_light_bond(graph(nacl)) is None
    # a V=O bond of 1.60 A (vanadyl) in a large cell: the O/F criterion, any partner
    vo = Structure(Lattice.cubic(6.0), ["V", "O"], [[0, 0, 0], [0, 0, 1.6 / 6.0]])
    assert screen.short_light_bond(graph(vo)) == "O-V 1.60 A"
    mgo = Structure(Lattice(fcc.matrix * 4.212 / 3.567), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert screen.short_light_bond(graph(mgo)) is None  # Mg-O 2.11 A
    assert screen.beyond_grid_reasons(["Si"], 0.001, None, 0.005) == ""
    assert "predicted 0.6 %" in screen.beyond_grid_reasons(["Si"], 0.006, None, 0.005)
    assert "contains H" in screen.beyond_grid_reasons(["H", "Li"], 0.0, None, 0.005)
    g = np.zeros((2, 66))
    g[0, FREQ_CM == 960] = 1.0
    g[0, FREQ_CM == 200] = 3.0
    g[1, FREQ_CM == 200] = 1.0
    np.testing.assert_allclose(screen.top_bins_weight(g), [0.25, 0.0])


def test_chunking_does_not_change_the_result(tmp_path, model_file, example_dir):
    folder = _folder(tmp_path / "in", example_dir, [n for n, _, _ in examples.EXAMPLES])
    assert (
        _screen(
            [folder],
            tmp_path / "a",
            model_file,
            "--chunk",
            "2",
            "--set",
            "screen.batch_size=1",
            "--no-summary",
        )
        == 0
    )
    assert _screen([folder], tmp_path / "b", model_file, "--no-summary") == 0
    a, b = (pd.read_parquet(tmp_path / x / "screen.parquet") for x in ("a", "b"))
    assert len(a) == len(examples.EXAMPLES)
    assert a.material_id.tolist() == b.material_id.tolist()
    for col in a.columns:  # batches of other sizes change float32 rounding in the model, nothing else
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if a[col].dtype.kind == "f" or isinstance(x[0], np.ndarray) and x[0].dtype.kind == "f":
            np.testing.assert_allclose(
                np.stack(x).astype(float), np.stack(y).astype(float), rtol=1e-4, atol=1e-6, err_msg=col
            )
        else:
            assert [str(v) for v in x] == [str(v) for v in y], col


# ------------------------------------------------------------------------------------------ model files -------
def test_float16_model_file_loads_as_float32(tmp_path, model_file, example_dir):
    half = half_precision_copy(model_file, tmp_path / "half.pt")
    assert half.stat().st_size < 0.7 * model_file.stat().st_size
    saved = torch.load(half, weights_only=True)
    assert saved["members"][0]["state_dict"]["head.weight"].dtype == torch.float16
    m = load_for_screening(half)
    assert all(p.dtype == torch.float32 for member in m.members for p in member.parameters())
    # the float32 model with the same float16-rounded weights predicts the same
    ref = load_for_screening(model_file)
    for member in ref.members:
        with torch.no_grad():
            for p in list(member.parameters()) + [b for b in member.buffers() if b.is_floating_point()]:
                p.copy_(p.half().float())
    r = next(iter(read_paths([example_dir / "MgO.cif"])))
    g = [graph_of(r.lattice, r.frac_coords, r.elements)]
    np.testing.assert_allclose(
        screen.predict_members(m.members, g, 4), screen.predict_members(ref.members, g, 4), atol=1e-6
    )
    sidecar_path(half).write_text(sidecar_path(model_file).read_text())
    assert _screen([example_dir / "MgO.cif"], tmp_path / "out", half) == 0


def test_one_model_file_works_with_nan_spread(tmp_path, model_file, example_dir):
    member = model_file.parent.parent / "member-0" / "model.pt"
    assert _screen([example_dir / "Si.cif"], tmp_path / "out", member) == 0
    df = pd.read_parquet(tmp_path / "out" / "screen.parquet")
    assert df.n_members.item() == 1
    assert np.isnan(df.cv_300k_std_j_per_mol_k.item()) and np.isnan(df.ood_score.item())
    assert df.unseen_elements.isna().all()  # this file records no training elements
    assert np.isfinite(df.cv_300k_j_per_mol_k.item())


def test_a_stability_head_ensemble_calls_stability_from_the_head(tmp_path, example_dir):
    """Trained through the train stage with model.stability_head; screen reads the head: the members' mean value,
    clipped to [0, 1], against properties.head_unstable_fraction (the spectrum's own negative fraction is kept)."""
    settings = json.loads(SETTINGS)
    settings["model"]["stability_head"] = "shared"
    model = _ensemble_file(tmp_path / "model", json.dumps(settings))
    names = ["NaCl", "Si", "MgO"]
    folder = _folder(tmp_path / "in", example_dir, names)
    outputs = {}
    for threshold in (0.0, 1.0):
        out = tmp_path / f"out-{threshold}"
        assert _screen([folder], out, model, "--set", f"properties.head_unstable_fraction={threshold}") == 0
        outputs[threshold] = pd.read_parquet(out / "screen.parquet").set_index("material_id").loc[names]
    df = outputs[1.0]
    assert (df.stability_source == "head").all() and df.stable.all()  # nothing is above a fraction of 1
    head = df.negative_fraction_head.to_numpy()
    assert np.isfinite(head).all() and ((head >= 0) & (head <= 1)).all()
    assert np.isfinite(df.negative_fraction_head_std).all()
    # members' own head values: the mean and the spread the table reports
    members = load_model(model).members
    from pipeline.data.graphs import build_graphs

    structures = [
        (r.lattice, r.frac_coords, r.elements) for r in read_paths([folder / f"{n}.cif" for n in names])
    ]
    graphs = build_graphs(structures, 12, 8.0, 0.5)
    values = np.clip(screen.predict_members(members, graphs, 8)[:, :, -1], 0, 1)
    np.testing.assert_allclose(head, values.mean(axis=0), atol=1e-6)
    zero = outputs[0.0]
    np.testing.assert_array_equal(zero.stable.to_numpy(), head <= 0.0)
    np.testing.assert_allclose(np.stack(zero.dos_pred), np.stack(df.dos_pred))  # the spectrum does not move


def test_a_model_built_on_other_atom_features_is_refused(tmp_path, model_file, example_dir, capsys):
    ckpt = torch.load(model_file, weights_only=True)
    ckpt["provenance"]["atom_features_sha256"] = "0" * 16
    torch.save(ckpt, tmp_path / "other.pt")
    assert _screen([example_dir / "Si.cif"], tmp_path / "out", tmp_path / "other.pt") == 1
    assert "atom_features_sha256" in capsys.readouterr().err


def test_graphs_follow_the_model_k_and_cutoff(tmp_path, model_file, example_dir):
    ckpt = torch.load(model_file, weights_only=True)
    assert ckpt["provenance"]["k"] == 12
    m = load_for_screening(model_file)
    assert (m.k, m.cutoff) == (12, 8.0)
    ckpt["provenance"]["k"] = 6
    torch.save(ckpt, tmp_path / "k6.pt")
    assert load_for_screening(tmp_path / "k6.pt").k == 6
    assert _screen([example_dir / "Si.cif"], tmp_path / "out", tmp_path / "k6.pt") == 0


def test_pool_parquet_input_uses_jids(tmp_path, model_file, example_dir):
    from pipeline.data.structures import validate_structure

    rows = []
    for i, name in enumerate(["NaCl", "Si"]):
        r = next(iter(read_paths([example_dir / f"{name}.cif"])))
        validate_structure(r.lattice, r.frac_coords, r.elements, graph_settings()["min_distance"])
        rows.append(
            {
                "jid": f"JVASP-{i}",
                "split": "pool",
                "lattice_mat": r.lattice.tolist(),
                "frac_coords": r.frac_coords.tolist(),
                "elements": r.elements,
            }
        )
    pd.DataFrame(rows).to_parquet(tmp_path / "pool.parquet")
    assert _screen([tmp_path / "pool.parquet"], tmp_path / "out", model_file) == 0
    assert pd.read_parquet(tmp_path / "out" / "screen.parquet").material_id.tolist() == ["JVASP-0", "JVASP-1"]


def test_default_model_is_the_shipped_file():
    assert default_model_path().name == "dos-cpu_small-x5.pt"
    assert default_model_path().parent.name == "models" and default_model_path().parent.parent.name == "nn"


# ------------------------------------------------------------------------------------------ shipped model -----
EXPECTED = Path(__file__).parent / "data" / "shipped_model_expected.json"


@pytest.mark.skipif(not default_model_path().exists(), reason="the shipped model is not in this checkout")
def test_shipped_model_reproduces_its_stored_predictions(tmp_path):
    """The committed model file, read through screen, still predicts what was stored when it was committed
    (python -m pipeline.stages.pretrained expected writes the file)."""
    from pipeline.nn.pretrained import model_card_path
    from pipeline.screening.screen import EXAMPLES_DIR

    repo = Path(__file__).resolve().parents[1]
    expected = json.loads(EXPECTED.read_text())
    assert model_card_path().exists()
    assert default_model_path().stat().st_size <= 5 * 1024 * 1024
    assert (
        screen_stage.main([str(repo / EXAMPLES_DIR), "--out", str(tmp_path), "--no-progress", "--no-summary"])
        == 0
    )
    df = pd.read_parquet(tmp_path / "screen.parquet").set_index("material_id")
    assert df.model_id.unique().tolist() == [expected["model_id"]], "shipped model changed: rerun `expected`"
    assert sorted(df.index) == sorted(expected["materials"])
    for mid, want in expected["materials"].items():
        np.testing.assert_allclose(df.loc[mid, "dos_pred"], want["dos_pred"], atol=1e-5, err_msg=mid)
        np.testing.assert_allclose(df.loc[mid, "dos_std"], want["dos_std"], atol=1e-5, err_msg=mid)
        assert df.loc[mid, "cv_300k_j_per_mol_k"] == pytest.approx(want["cv_300k_j_per_mol_k"], abs=1e-3)
        assert bool(df.loc[mid, "beyond_grid"]) == want["beyond_grid"]
    assert (df.n_members > 1).all() and (np.stack(df.dos_std).max(axis=1) > 0).all()
    assert df.loc["LiH", "beyond_grid"] and df.loc["MgH2", "beyond_grid"]
    assert df.unseen_elements.notna().all()  # the shipped model records its training elements
