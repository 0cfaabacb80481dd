"""crossval stage: MP DFPT phonon documents -> 66-bin spectra and properties, predictions of a model, matching to
JARVIS records, the loopback mp-api path and the rejects of malformed documents.

The MP REST server of the loopback test listens on 127.0.0.1 only, answers at most MAX_REQUESTS requests and stops
itself after LIFETIME_S seconds; the DOS, which mp-api reads from object storage, comes from the test's getter.
"""

from __future__ import annotations

import gzip
import json
import math
import warnings
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from pymatgen.core import Lattice, Structure

from pipeline.data import mp
from pipeline.data.rebin import rebin
from pipeline.grid import FREQ_CM, THZ_TO_CM
from pipeline.physics.thermo import R_GAS
from pipeline.reports import crossval
from pipeline.schemas import CROSSVAL_MP, CROSSVAL_SUMMARY, MATERIALS
from pipeline.stages import crossval as crossval_stage
from tests.helpers import featurize_settings, graph_of
from tests.loopback import LoopbackServer

#: featurize.min_distance at its schema default (overlapping atoms, as the dos and crossval stages check them)
MIN_DISTANCE = featurize_settings().min_distance

MAX_REQUESTS = 60
LIFETIME_S = 60.0
API_KEY = "0123456789abcdef0123456789abcdef"  # 32 characters, as mp-api requires; never a real key


# ------------------------------------------------------------------------------------ crystals ----------------
def rocksalt(a: float = 5.64, species=("Na", "Cl")) -> Structure:
    """Conventional 8-atom rock-salt cell."""
    fcc = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return Structure(
        Lattice.cubic(a), [species[0]] * 4 + [species[1]] * 4, fcc + [[x + 0.5, y, z] for x, y, z in fcc]
    )


def cscl_type(a: float = 3.4) -> Structure:
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def zincblende(a: float = 5.41) -> Structure:
    return Structure(
        Lattice(0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])), ["Zn", "S"], [[0] * 3, [0.25] * 3]
    )


def wurtzite(a: float = 3.82, c: float = 6.26, u: float = 0.375) -> Structure:
    coords = [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]]
    return Structure(Lattice.hexagonal(a, c), ["Zn", "Zn", "S", "S"], coords)


def disguised(s: Structure, seed: int, supercell=(1, 1, 1), volume_scale: float = 1.02) -> Structure:
    """The same crystal: supercell, 2 % larger volume (another functional), atoms permuted, rigidly rotated."""
    rng = np.random.default_rng(seed)
    s = s.copy()
    s.make_supercell(supercell)
    s.scale_lattice(s.volume * volume_scale)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.diag(r))
    if np.linalg.det(rot) < 0:
        rot[:, 0] *= -1
    order = rng.permutation(len(s))
    return Structure(Lattice(s.lattice.matrix @ rot.T), [s[i].specie for i in order], s.frac_coords[order])


# ------------------------------------------------------------------------------------ documents ---------------
def debye_dos(nu_max_thz: float, n_atoms: int, imaginary: float = 0.0, step: float = 0.01):
    """A Debye DOS (g ~ nu^2 up to nu_max) in THz integrating to 3 n_atoms, with ``imaginary`` of that area moved
    into a band of imaginary modes around -3 THz (-100 cm^-1). Returns (frequencies, densities)."""
    f = np.arange(-6.0, nu_max_thz + 1.0, step)
    g = np.where((f > 0) & (f <= nu_max_thz), f**2, 0.0)
    g *= (1 - imaginary) * 3 * n_atoms / (g.sum() * step)
    if imaginary:
        band = np.exp(-(((f + 3.0) / 0.5) ** 2))
        g += imaginary * 3 * n_atoms * band / (band.sum() * step)
    return f, g


def document(mid: str, structure: Structure, freqs, dens, cls: str = "PhononDos") -> dict:
    dos = {
        "@module": "pymatgen.phonon.dos",
        "@class": cls,
        "frequencies": list(map(float, freqs)),
        "densities": list(map(float, dens)),
    }
    return {
        "material_id": mid,
        "formula_pretty": structure.composition.reduced_formula,
        "structure": structure.as_dict(),
        "phonon_dos": dos,
        "source": "test",
    }


def debye_cv(theta_over_t: float) -> float:
    """Debye C_V per mode / R: 3 / x^3 * int_0^x t^4 e^t / (e^t - 1)^2 dt."""
    t = np.linspace(1e-6, theta_over_t, 20001)
    return 3 / theta_over_t**3 * np.trapezoid(t**4 * np.exp(t) / np.expm1(t) ** 2, t)


def jarvis_table(rows: list[dict], path: Path) -> Path:
    """A dataset.parquet (MATERIALS schema) of JARVIS records: jid, structure, split, optional dos and mp_id."""
    from pipeline.data.dos import structure_metadata

    out = []
    for r in rows:
        s: Structure = r["structure"]
        lat, frac, els = s.lattice.matrix.tolist(), s.frac_coords.tolist(), [x.specie.symbol for x in s]
        dos = r.get("dos")
        out.append(
            {
                **structure_metadata(lat, frac, els, MIN_DISTANCE),
                "jid": r["jid"],
                "split": r["split"],
                "mp_id": r.get("mp_id"),
                "lattice_mat": lat,
                "frac_coords": frac,
                "elements": els,
                "dos": None if dos is None else np.asarray(dos, np.float32).tolist(),
            }
        )
    cols = {n: [row.get(n) for row in out] for n in MATERIALS.names}
    pq.write_table(pa.table(cols, schema=MATERIALS), path)
    return path


def tiny_model(path: Path) -> Path:
    from pipeline.nn.model import ALIGNN, ModelConfig

    torch.manual_seed(0)
    model = ALIGNN(
        ModelConfig.from_config(
            {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 16}
        )
    ).eval()
    torch.save(
        {
            "model_config": model.config.to_dict(),
            "train_config": {},
            "state_dict": model.state_dict(),
            "best_epoch": 1,
            "best_val_mae": 0.1,
        },
        path,
    )
    return path


def mp_frame(structures: dict[str, Structure]) -> pd.DataFrame:
    rows = []
    for mid, s in structures.items():
        f, g = debye_dos(6.0, len(s))
        rows.append(crossval.spectrum_row(document(mid, s, f, g), MIN_DISTANCE))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ conversion --------------
def test_thz_to_cm_is_exact_and_band_edges_land_on_the_right_bins():
    assert THZ_TO_CM == pytest.approx(1e12 / 2.99792458e10, rel=1e-15)  # 1 THz / c, c in cm/s (exact SI)
    # a flat band whose edges in THz are exactly the 90 and 290 cm^-1 bin edges of the grid
    lo, hi, n = 90.0 / THZ_TO_CM, 290.0 / THZ_TO_CM, 400
    h = (hi - lo) / n
    f = lo + h * (np.arange(-300, n + 300) + 0.5)
    g = np.where((f > lo) & (f < hi), 6.0 / (hi - lo), 0.0)  # 6 states (2 atoms) per THz band
    binned = rebin(f, g, "THz")
    inside = (FREQ_CM >= 100) & (FREQ_CM <= 280)
    np.testing.assert_allclose(binned[inside], 6.0 / 200.0, rtol=1e-9)  # states per cm^-1
    np.testing.assert_allclose(binned[~inside], 0.0, atol=1e-12)
    assert np.sum(binned) * 20.0 == pytest.approx(6.0, rel=1e-12)


def test_debye_document_gives_the_debye_heat_capacity():
    """C_V(300 K) of a Debye DOS in THz through the stage equals the Debye function within the grid's error."""
    s = rocksalt()
    nu = 6.0  # THz = 200.1 cm^-1, theta_D = 288 K
    f, g = debye_dos(nu, len(s))
    row = crossval.spectrum_row(document("mp-22862", s, f, g), MIN_DISTANCE)
    props = crossval.properties_at_300k(row["dos_mp"][None, :], pd.DataFrame([row]), 0.1).iloc[0]
    theta = nu * 1e12 * 6.62607015e-34 / 1.380649e-23
    assert props["cv_300k"] == pytest.approx(3 * 2 * R_GAS * debye_cv(theta / 300.0), rel=5e-3)
    assert props["stable"] and props["negative_fraction"] == 0.0
    assert row["area_off_grid_mp"] == pytest.approx(0.0, abs=1e-12)
    assert row["n_atoms_per_fu"] == 2 and row["formula"] == "NaCl"


@pytest.mark.parametrize("imaginary, stable", [(0.05, True), (0.25, False)])
def test_imaginary_modes_give_the_right_stability(imaginary, stable):
    s = rocksalt()
    f, g = debye_dos(6.0, len(s), imaginary=imaginary)
    row = crossval.spectrum_row(document("mp-22862", s, f, g), MIN_DISTANCE)
    props = crossval.properties_at_300k(row["dos_mp"][None, :], pd.DataFrame([row]), 0.1).iloc[0]
    assert bool(props["stable"]) is stable
    # bin sums, as the stability rule counts them: the -100 cm^-1 band is imaginary's share of the total area
    assert props["negative_fraction"] == pytest.approx(imaginary, rel=0.02)


# ------------------------------------------------------------------------------------ matching ----------------
def _records(*rows: tuple[str, Structure, str | None]) -> pd.DataFrame:
    out = []
    for jid, s, mp_id in rows:
        out.append(
            {
                "jid": jid,
                "split": "train",
                "dos": None,
                "formula": s.composition.reduced_formula,
                "mp_id": mp_id,
                "lattice_mat": s.lattice.matrix.tolist(),
                "frac_coords": s.frac_coords.tolist(),
                "elements": [x.specie.symbol for x in s],
            }
        )
    return pd.DataFrame(out)


def test_matching_survives_permutation_rotation_and_supercell():
    prim_rocksalt = rocksalt().get_primitive_structure()
    jarvis = _records(
        ("JVASP-ROCKSALT", prim_rocksalt, None),
        ("JVASP-CSCL", cscl_type(), None),  # same composition, other structure: must not match
        ("JVASP-ZB", zincblende(), None),
        ("JVASP-WZ", wurtzite(), None),
    )
    structures = {
        "mp-22862": disguised(rocksalt(), seed=1),  # conventional cell = 4x the primitive
        "mp-560588": disguised(wurtzite(), seed=2, supercell=(2, 1, 1)),
        "mp-10695": disguised(zincblende(), seed=3, supercell=(1, 2, 2)),
        "mp-23193": rocksalt(6.29, ("K", "Cl")),  # KCl: no JARVIS record of this composition
    }
    m = crossval.match_jarvis(mp_frame(structures), jarvis)
    assert m["jid"].tolist()[:3] == ["JVASP-ROCKSALT", "JVASP-WZ", "JVASP-ZB"]
    assert m["match_method"].tolist() == ["structure_matcher"] * 3 + ["none"]
    assert (m["match_rms"].iloc[:3] < 1e-6).all()  # same crystal up to the scaled volume


def test_recorded_mp_id_wins_over_the_structure():
    jarvis = _records(("JVASP-CSCL", cscl_type(), "mp-22862"), ("JVASP-ROCKSALT", rocksalt(), None))
    m = crossval.match_jarvis(mp_frame({"mp-22862": rocksalt()}), jarvis)
    assert m[["jid", "match_method"]].values.tolist() == [["JVASP-CSCL", "mp_id"]]


# ------------------------------------------------------------------------------------ malformed input ---------
def test_malformed_documents_become_rejects_rows(tmp_path):
    s = rocksalt()
    f, g = debye_dos(6.0, len(s))
    good = document("mp-22862", s, f, g)
    bad_len = document("mp-2", s, f, g[:-5])
    nan_dos = document("mp-3", s, f, np.where(f > 2, np.nan, g))
    negative = document("mp-4", s, f, -g)
    overlap = document("mp-5", Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]]), f, g)
    no_id = {k: v for k, v in good.items() if k != "material_id"}
    not_dos = {**document("mp-6", s, f, g), "phonon_dos": {"@class": "ElectronicDos", "energies": [1, 2]}}
    decreasing = document("mp-7", s, f[::-1], g)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps([good, bad_len, nan_dos, negative, overlap]))
    (folder / "b.json.gz").write_bytes(
        gzip.compress(json.dumps({"data": [no_id, not_dos, decreasing, good]}).encode())
    )
    (folder / "c.json").write_text("{not json")
    (folder / "d.json.gz").write_bytes(gzip.compress(json.dumps(good).encode())[:40])  # truncated download
    out = tmp_path / "out"
    assert crossval_stage.main(["--mp", str(folder), "--out", str(out)]) == 0

    table = pd.read_parquet(out / "mp.parquet")
    assert table["material_id"].tolist() == ["mp-22862"]
    assert pq.read_schema(out / "mp.parquet").names == CROSSVAL_MP.names
    rejects = pd.read_parquet(out / "rejects.parquet").set_index("jid")["reason"]
    assert (pd.read_parquet(out / "rejects.parquet")["stage"] == "crossval").all()
    expected = {
        "mp-2": "must be equal 1-d arrays",
        "mp-3": "NaN or infinite",
        "mp-4": "negative values",
        "mp-5": "unusable structure",
        "b.json.gz#0": "no 'material_id'",
        "mp-6": "'ElectronicDos'",
        "mp-7": "strictly increasing",
        "c.json": "cannot read",
        "d.json.gz": "cannot read",
    }
    for jid, text in expected.items():
        assert text in rejects[jid], (jid, rejects.get(jid))
    assert "duplicate material_id" in rejects["mp-22862"]
    assert len(rejects) == len(expected) + 1  # nothing else, nothing silently dropped


def test_no_usable_document_is_an_error_not_an_empty_result(tmp_path, capsys):
    (tmp_path / "x.json").write_text(json.dumps([{"material_id": "mp-1"}]))
    assert crossval_stage.main(["--mp", str(tmp_path / "x.json"), "--out", str(tmp_path / "out")]) == 1
    assert "no usable Materials Project phonon document" in capsys.readouterr().err
    assert not (tmp_path / "out" / "mp.parquet").exists()
    assert "no 'phonon_dos'" in pd.read_parquet(tmp_path / "out" / "rejects.parquet")["reason"].iloc[0]
    with pytest.raises(SystemExit) as exit_:  # a path that is not there is refused at the door
        crossval_stage.main(["--mp", str(tmp_path / "missing.json"), "--out", str(tmp_path / "out2")])
    assert exit_.value.code == 2 and "--mp" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ loopback mp-api ---------
class MPLike(LoopbackServer):
    """Serves heartbeat, materials/summary/ and materials/phonon/ like api.materialsproject.org (REST only)."""

    def __init__(self, materials: dict[str, Structure], dfpt: set[str]):
        self.materials, self.dfpt = materials, dfpt
        self.requests: list[tuple[str, dict, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                outer.requests.append((url.path, query, self.headers.get("x-api-key")))
                if len(outer.requests) > MAX_REQUESTS:
                    self.send_error(403)
                    return
                body = outer.answer(url.path, query)
                if body is None:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler, LIFETIME_S)

    def answer(self, path: str, q: dict) -> dict | None:
        if path == "/heartbeat":
            return {"db_version": "2025.09.25", "access_controlled_batch_ids": [], "version": "0.87.3"}
        if path == "/materials/summary/":
            ids = q.get("material_ids", "").split(",")
            docs = [
                {
                    "material_id": m,
                    "formula_pretty": self.materials[m].composition.reduced_formula,
                    "structure": self.materials[m].as_dict(),
                    "phonon_IDs": {"dfpt": [m]} if m in self.dfpt else {"pheasy": [m]},
                }
                for m in ids
                if m in self.materials
            ]
            return {"data": docs, "meta": {"total_doc": len(docs)}}
        if path == "/materials/phonon/" and q.get("phonon_method") == "dfpt":
            docs = [
                {
                    "identifier": m,
                    "formula_pretty": self.materials[m].composition.reduced_formula,
                    "structure": self.materials[m].as_dict(),
                }
                for m in q.get("identifiers", "").split(",")
            ]
            return {"data": docs, "meta": {"total_doc": len(docs)}}
        return None


@pytest.fixture()
def mp_server(monkeypatch):
    pytest.importorskip("mp_api.client")
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("MP_API_ENDPOINT", raising=False)
    materials = {
        "mp-22862": rocksalt(),
        "mp-560588": wurtzite(),
        "mp-10695": zincblende(),
        "mp-23193": rocksalt(6.29, ("K", "Cl")),
    }
    with MPLike(materials, dfpt={"mp-22862", "mp-560588", "mp-10695"}) as srv:
        yield srv


def _dos_getter(calls: list[str]):
    def get(mpr, identifier: str) -> dict:  # stands in for object storage (the one part no endpoint reaches)
        calls.append(identifier)
        if identifier == "mp-10695":
            from mp_api.client.core import MPRestError

            raise MPRestError("Failed to retrieve object due to: timeout")
        f, g = debye_dos(6.0, 8 if identifier == "mp-22862" else 4)
        return {"identifier": identifier, "frequencies": f.tolist(), "densities": g.tolist()}

    return get


def test_mp_api_path_end_to_end_on_a_loopback_server(mp_server, tmp_path):
    from pipeline.data.shards import collate
    from pipeline.nn.inference import load_model

    model = tiny_model(tmp_path / "model.pt")
    dataset = jarvis_table(
        [
            {
                "jid": "JVASP-ROCKSALT",
                "structure": disguised(rocksalt(), 5).get_primitive_structure(),
                "split": "train",
                "dos": rebin(*debye_dos(6.3, 2), "THz") / rebin(*debye_dos(6.3, 2), "THz").max(),
            },
            {"jid": "JVASP-WZ", "structure": wurtzite(), "split": "test", "mp_id": "mp-560588"},
        ],
        tmp_path / "dataset.parquet",
    )
    calls: list[str] = []
    cache = tmp_path / "raw"
    ids = ["mp-22862", "mp-560588", "mp-10695", "mp-23193", "mp-99999"]
    settings = crossval_stage.Settings.from_config({"crossval": {"mp_ids": ids, "endpoint": mp_server.url}})
    result = crossval.run(
        None,
        tmp_path / "out",
        settings.crossval,
        settings.featurize,
        settings.properties.unstable_fraction,
        settings.predict.batch_size,
        model=str(model),
        dataset=str(dataset),
        cache_dir=cache,
        dos_getter=_dos_getter(calls),
        device="cpu",
    )

    paths = {p for p, _, _ in mp_server.requests}
    assert paths == {"/heartbeat", "/materials/summary/", "/materials/phonon/"}
    assert all(
        key == API_KEY for p, _, key in mp_server.requests if p != "/heartbeat"
    )  # from the environment
    summary_query = next(q for p, q, _ in mp_server.requests if p == "/materials/summary/")
    assert summary_query["material_ids"].split(",") == sorted(ids)
    assert set(summary_query["_fields"].split(",")) == set(mp.SUMMARY_FIELDS)
    assert sorted(calls) == ["mp-10695", "mp-22862", "mp-560588"]  # only materials with a DFPT calculation

    table = pd.read_parquet(tmp_path / "out" / "mp.parquet")
    assert table["material_id"].tolist() == ["mp-22862", "mp-560588"]
    assert table.set_index("material_id")["match_method"].to_dict() == {
        "mp-22862": "structure_matcher",
        "mp-560588": "mp_id",
    }
    assert table["in_training_split"].tolist() == [True, False]
    assert table["jid_split"].tolist() == ["train", "test"]
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet").set_index("jid")["reason"]
    assert "no DFPT phonon calculation" in rejects["mp-23193"]
    assert "no DFPT phonon calculation" in rejects["mp-99999"]
    assert "object storage" in rejects["mp-10695"]
    assert result["documents"] == 2 and result["matched"] == 2 and result["with_jarvis_dos"] == 1

    # the predicted DOS is the model's on the MP structure, its properties the same code's as the MP DOS's
    net = load_model(model, "cpu")
    s = rocksalt()
    g = graph_of(s.lattice.matrix, s.frac_coords, [x.specie.symbol for x in s])
    with torch.no_grad():
        expected = net(collate([g])).numpy()[0]
    np.testing.assert_allclose(table["dos_pred"].iloc[0], expected, atol=1e-5)
    row = crossval.spectrum_row(document("mp-22862", s, *debye_dos(6.0, 8)), MIN_DISTANCE)
    props = crossval.properties_at_300k(expected[None, :].astype(np.float64), pd.DataFrame([row]), 0.1).iloc[
        0
    ]
    for q in crossval.QUANTITIES:
        assert table[f"{q}_pred"].iloc[0] == pytest.approx(props[q], nan_ok=True)
    mp_cv = table["cv_300k_mp"].iloc[0]
    assert mp_cv == pytest.approx(6 * R_GAS * debye_cv(6.0 * 47.9924307 / 300.0), rel=5e-3)
    # DFT-DFT: the JARVIS Debye DOS is 5 % stiffer than the MP one -> lower C_V, same sign in the difference
    assert table["cv_300k_jarvis_minus_mp"].iloc[0] < 0 and np.isnan(table["cv_300k_jarvis"].iloc[1])
    assert table["spectral_mae_jarvis"].iloc[0] > 0

    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert pq.read_schema(tmp_path / "out" / "summary.parquet").names == CROSSVAL_SUMMARY.names
    spec = summary.query("comparison == 'pred_vs_mp' and subset == 'all' and quantity == 'spectrum'").iloc[0]
    assert spec["n"] == 2 and spec["mae"] == pytest.approx(table["spectral_mae_pred"].mean())
    for name in ("parity.png", "spectra.png"):
        assert (tmp_path / "out" / "figures" / name).read_bytes()[:4] == b"\x89PNG"

    # cached and checksummed: a second run asks no REST question and fetches no DOS
    sums = json.loads((cache / "mp_phonon" / "checksums.json").read_text())
    assert sorted(sums) == ["mp-22862", "mp-560588"]
    assert sums["mp-22862"] == mp.sha256_file(cache / "mp_phonon" / "mp-22862.json.gz")
    n_before, n_calls = len([r for r in mp_server.requests if r[0] != "/heartbeat"]), len(calls)
    files, _ = mp.fetch_documents(["mp-22862", "mp-560588"], cache, mp_server.url, _dos_getter(calls))
    assert len([r for r in mp_server.requests if r[0] != "/heartbeat"]) == n_before and len(calls) == n_calls
    assert [f.name for f in files] == ["mp-22862.json.gz", "mp-560588.json.gz"]


def test_mp_api_cache_tampering_and_missing_key_are_errors(mp_server, tmp_path, monkeypatch):
    calls: list[str] = []
    files, _ = mp.fetch_documents(["mp-22862"], tmp_path, mp_server.url, _dos_getter(calls))
    doc = json.loads(gzip.decompress(files[0].read_bytes()))
    doc["phonon_dos"]["densities"][100] *= 2
    files[0].write_bytes(gzip.compress(json.dumps(doc).encode()))
    with pytest.raises(mp.MPFetchError, match="does not match the recorded"):
        mp.fetch_documents(["mp-22862"], tmp_path, mp_server.url, _dos_getter(calls))

    monkeypatch.delenv("MP_API_KEY")
    n = len(mp_server.requests)
    with pytest.raises(mp.MPFetchError, match="MP_API_KEY is not set"):
        mp.fetch_documents(["mp-560588"], tmp_path, mp_server.url, _dos_getter(calls))
    assert len(mp_server.requests) == n, "without a key nothing is asked"


# ------------------------------------------------------------------------------------ real MP documents -------
SHARED_MP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_dfpt_phonon_dos.json.gz"


@pytest.mark.shared
def test_real_mp_documents_agree_with_pymatgen_and_match_the_jarvis_subset(shared_zip, tmp_path):
    """The 69 real MP DFPT documents: C_V/S_vib(300 K) on the 66-bin grid agree with pymatgen's on the full DOS
    where the grid holds the whole spectrum; composition + StructureMatcher finds the 5 known JARVIS matches."""
    import zipfile

    from pymatgen.core import Composition
    from pymatgen.phonon.dos import PhononDos

    if not SHARED_MP.exists():
        pytest.skip(f"{SHARED_MP} not found")
    docs = json.loads(gzip.decompress(SHARED_MP.read_bytes()))
    rejects: list = []
    table = crossval.load_documents(((str(i), d) for i, d in enumerate(docs)), rejects, MIN_DISTANCE)
    assert len(table) == 69 and not rejects
    props = crossval.properties_at_300k(np.stack(table["dos_mp"]), table, 0.1)
    by_id = {d["material_id"]: d for d in docs}
    rel_cv, rel_s = [], []
    for i, mid in enumerate(table["material_id"]):
        d = by_id[mid]
        f = np.asarray(d["phonon_dos"]["frequencies"])
        g = np.asarray(d["phonon_dos"]["densities"])
        if table["area_off_grid_mp"].iloc[i] > 1e-9 or np.trapezoid(
            np.where(f < 0, g, 0), f
        ) > 1e-3 * np.trapezoid(g, f):
            continue  # pymatgen counts imaginary modes in the normalisation, the grid drops what lies beyond it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s, dos = Structure.from_dict(d["structure"]), PhononDos.from_dict(d["phonon_dos"])
            rel_cv.append(props["cv_300k"].iloc[i] / dos.cv(300, structure=s) - 1)
            rel_s.append(props["s_vib_300k"].iloc[i] / dos.entropy(300, structure=s) - 1)
    assert len(rel_cv) >= 50
    assert np.median(np.abs(rel_cv)) < 1e-3 and np.max(np.abs(rel_cv)) < 0.01
    assert np.median(np.abs(rel_s)) < 3e-3 and np.max(np.abs(rel_s)) < 0.03
    assert bool(props["stable"].all())  # the worst has 3.4 % of its DOS below 0 (Ba2YBiO6)

    formulas = set(table["formula"])
    with zipfile.ZipFile(shared_zip) as zf:
        records = json.loads(zf.read(zf.namelist()[0]))
    rows = []
    for r in records:
        a = r["atoms"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen: no Pauling electronegativity for noble gases
            formula = Composition("".join(a["elements"])).reduced_formula
        if formula in formulas and r["jid"] not in {x["jid"] for x in rows}:
            rows.append(
                {
                    "jid": r["jid"],
                    "dos": None,
                    "formula": formula,
                    "mp_id": None,
                    "lattice_mat": a["lattice_mat"],
                    "frac_coords": a["coords"],
                    "elements": a["elements"],
                }
            )
    m = crossval.match_jarvis(table, pd.DataFrame(rows))
    found = dict(zip(table["material_id"][m["jid"].notna()], m["jid"].dropna(), strict=True))
    assert found == {
        "mp-149": "JVASP-1002",
        "mp-406": "JVASP-23",
        "mp-672": "JVASP-95",
        "mp-19795": "JVASP-3414",
        "mp-23268": "JVASP-1996",
    }
    assert math.isclose(len(found) / len(table), 5 / 69)
