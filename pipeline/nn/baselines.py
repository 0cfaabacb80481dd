"""Analytic DOS baselines of the paper (Sec. III B, Fig. 9): Debye (linear) and Born-von Karman (sinusoidal)
dispersions, one longitudinal and two transverse acoustic branches with the VRH sound velocities of
:mod:`pipeline.physics.debye`, each branch filling a Debye sphere q_D = (6 pi^2 / V_at)^(1/3) with N states per formula
unit (3N in total, so all optical modes are folded into the acoustic branches, as in the paper's Al2O3 example).

* Debye:  omega_b(q) = v_b q                                  -> cut-off omega_b = v_b q_D
* BvK:    omega_b(q) = (2/pi) v_b q_D sin(pi q / (2 q_D))       -> same slope v_b at q -> 0, maximum (2/pi) v_b q_D

The DOS is built as the exact number of states in each 20 cm^-1 bin (cumulative count N (q(omega)/q_D)^3
differenced at the bin edges, centre +- 10 cm^-1) divided by the bin width, which handles the integrable van Hove
singularity of the BvK branch at its maximum. Materials without an elastic tensor (no sound velocity) get no
baseline; callers count them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.grid import FREQ_CM, GRID_STEP_CM
from pipeline.physics.debye import SoundVelocities

if TYPE_CHECKING:
    from pipeline.nn.model import ModelConfig
    from pipeline.nn.train import TrainConfig

C_LIGHT_CM = 2.99792458e10  # cm/s


def debye_wavevector(volume_per_atom_a3: float) -> float:
    """q_D in 1/m for one atom per V_at (Angstrom^3)."""
    return (6.0 * math.pi**2 / (volume_per_atom_a3 * 1e-30)) ** (1.0 / 3.0)


def _to_cm(omega_rad_s: float) -> float:
    return omega_rad_s / (2.0 * math.pi * C_LIGHT_CM)


def _bin_edges(freq_cm: np.ndarray = FREQ_CM) -> tuple[np.ndarray, np.ndarray]:
    return freq_cm - GRID_STEP_CM / 2, freq_cm + GRID_STEP_CM / 2


def _debye_fraction(nu: np.ndarray, nu_max: float) -> np.ndarray:
    """Fraction of a branch's states below nu for a linear dispersion: (nu / nu_max)^3."""
    return np.clip(nu / nu_max, 0.0, 1.0) ** 3


def _bvk_fraction(nu: np.ndarray, nu_max: float) -> np.ndarray:
    """Fraction below nu for omega = nu_max sin(pi q / (2 q_D)): ((2/pi) arcsin(nu / nu_max))^3."""
    return ((2.0 / math.pi) * np.arcsin(np.clip(nu / nu_max, 0.0, 1.0))) ** 3


def model_dos(
    velocities: SoundVelocities, volume_per_atom: float, n_atoms_per_fu: int, kind: str, freq_cm=FREQ_CM
) -> np.ndarray:
    """Binned DOS (states per cm^-1 per formula unit, total 3N) of the 'debye' or 'bvk' model on ``freq_cm``."""
    q_d = debye_wavevector(volume_per_atom)
    lo, hi = _bin_edges(np.asarray(freq_cm, dtype=np.float64))
    dos = np.zeros(len(lo))
    for v in (velocities.longitudinal, velocities.transverse, velocities.transverse):
        if kind == "debye":
            nu_max = _to_cm(v * q_d)
            frac = _debye_fraction
        elif kind == "bvk":
            nu_max = _to_cm(2.0 / math.pi * v * q_d)
            frac = _bvk_fraction
        else:
            raise ValueError(f"unknown baseline kind '{kind}' (debye | bvk)")
        dos += n_atoms_per_fu * (frac(hi, nu_max) - frac(lo, nu_max)) / GRID_STEP_CM
    return dos


def model_spectra(
    velocities: list[SoundVelocities | None],
    volume_per_atom: np.ndarray,
    n_atoms_per_fu: np.ndarray,
    kind: str,
) -> np.ndarray:
    """(materials x bins) model DOS, NaN rows where the sound velocity is missing."""
    out = np.full((len(velocities), len(FREQ_CM)), np.nan)
    for i, v in enumerate(velocities):
        if v is not None:
            out[i] = model_dos(v, float(volume_per_atom[i]), int(n_atoms_per_fu[i]), kind)
    return out


# ------------------------------------------------------------------------------------ direct ALIGNN models ----
#: scalar targets of the direct models (paper Fig. 8a): column of the properties table -> output column
DIRECT_QUANTITIES = {"cv_300k": "cv_300k_direct", "s_vib_300k": "s_vib_300k_direct"}


def _read_records(shards: list[str]) -> list:
    """Every graph of ``shards`` (pipeline.data.shards.ShardRecord), in file order."""
    from pipeline.data.shards import ShardReader

    out = []
    for path in shards:
        with ShardReader(path) as reader:
            out.extend(reader[i] for i in range(len(reader)))
    return out


def _with_scalar_targets(records: list, targets: dict[str, float], mean: float, std: float) -> list:
    """Records whose id has a finite target, with the standardised scalar as their (1,) target."""
    from pipeline.data.shards import ShardRecord

    out = []
    for rec in records:
        y = targets.get(rec.id)
        if y is not None and np.isfinite(y):
            out.append(ShardRecord(rec.id, rec.graph, np.array([(y - mean) / std], dtype=np.float32)))
    return out


def dft_targets(properties_path: str | Path, quantity: str) -> dict[str, float]:
    """jid -> the DFT ``quantity`` of the properties table (one row per material)."""
    props = pd.read_parquet(properties_path, columns=["jid", "source", quantity])
    dft = props[props["source"] == "dft"].drop_duplicates("jid")
    return dict(zip(dft["jid"], dft[quantity].astype(float), strict=True))


def target_scale(records: list, quantity: str) -> tuple[float, float]:
    """(mean, std) of the scalar targets of training ``records``: how a direct model standardises its targets."""
    if len(records) < 2:
        raise ValueError(f"direct {quantity}: fewer than 2 training graphs with a DFT value")
    y = np.array([r.target[0] for r in records], dtype=np.float64)
    return float(y.mean()), float(y.std() or 1.0)


def training_scale(
    properties_path: str | Path, train_shards: list[str], quantity: str
) -> tuple[float, float]:
    """The (mean, std) :func:`train_direct_model` standardised ``quantity`` with on ``train_shards``."""
    records = _with_scalar_targets(
        _read_records(train_shards), dft_targets(properties_path, quantity), 0.0, 1.0
    )
    return target_scale(records, quantity)


def train_direct_model(
    quantity: str,
    properties_path: str,
    train_shards: list[str],
    val_shards: list[str],
    test_shards: list[str],
    out_dir: str,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    progress: bool = False,
) -> pd.DataFrame:
    """Train ALIGNN (pipeline.nn.model, the DOS model's ``model``/``train`` settings and split) with a one-value
    head on the DFT ``quantity`` (C_V or S_vib at 300 K from the properties table), predict the test shards;
    returns (jid, value).

    Targets are standardised with the training mean/std (the DOS model's targets are already O(1)); the final
    ReLU is off because standardised targets are signed. Best-on-validation weights, as for the DOS model.
    """
    from pipeline.nn.inference import load_model, pick_device, predict_batches
    from pipeline.nn.train import InMemoryGraphs, fit

    targets = dft_targets(properties_path, quantity)
    train_raw = _with_scalar_targets(_read_records(train_shards), targets, 0.0, 1.0)
    mean, std = target_scale(train_raw, quantity)
    train = [r._replace(target=(r.target - mean) / std) for r in train_raw]
    val = _with_scalar_targets(_read_records(val_shards), targets, mean, std)
    direct_cfg = replace(model_cfg, out_dim=1, final_relu=False, stability_head="none")
    device = pick_device("auto")
    result = fit(
        direct_cfg,
        train_cfg,
        InMemoryGraphs(train),
        InMemoryGraphs(val or train),
        out_dir,
        train_ids=[r.id for r in train],
        device=device,
        progress=progress,
    )
    model = load_model(result.model_path, device, direct_cfg.accelerator)
    test = InMemoryGraphs([r._replace(target=None) for r in _read_records(test_shards)])
    ids, preds = predict_batches(model, test.epoch_batches(PREDICT_BATCH, None), device, "fp32")
    values = preds[:, 0].astype(np.float64) * std + mean if len(ids) else np.zeros(0)
    return pd.DataFrame({"jid": ids, DIRECT_QUANTITIES.get(quantity, f"{quantity}_direct"): values})


#: graphs per batch when the direct models predict the test shards (float32, as they always have)
PREDICT_BATCH = 64


def direct_baselines(
    properties_path: str,
    train_shards: list[str],
    val_shards: list[str],
    test_shards: list[str],
    out: str,
    work_dir: str,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
) -> pd.DataFrame:
    """The baselines stage: a direct model per quantity of :data:`DIRECT_QUANTITIES` (:func:`train_direct_model`,
    checkpoints in ``work_dir/<quantity>``), their test predictions merged into ``out`` (DIRECT_PREDICTIONS)."""
    import sys
    from pathlib import Path

    from pipeline.io import write_parquet
    from pipeline.schemas import DIRECT_PREDICTIONS

    merged = None
    for quantity in DIRECT_QUANTITIES:
        print(f"direct ALIGNN model for {quantity}", file=sys.stderr)
        df = train_direct_model(
            quantity,
            properties_path,
            train_shards,
            val_shards,
            test_shards,
            str(Path(work_dir) / quantity),
            model_cfg,
            train_cfg,
        )
        merged = df if merged is None else merged.merge(df, on="jid", how="outer")
    merged = merged.sort_values("jid").reset_index(drop=True)
    write_parquet(merged, out, DIRECT_PREDICTIONS)
    print(f"direct baselines: {len(merged)} test predictions -> {out}", file=sys.stderr)
    return merged
