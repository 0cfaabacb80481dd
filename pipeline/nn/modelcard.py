"""Package a trained ensemble as the shipped model (:func:`pack`), and write its model card (:func:`card_text`).
The commands (``python -m pipeline.stages.pretrained pack|card``, usage there) live in ``pipeline.stages.pretrained``.

``pack`` keeps everything the stages read from a ``model.pt`` (``model_config``, ``members`` or ``state_dict``,
``train_config``) and adds ``provenance`` (how the input graphs are built: the config's featurize section, this
code's atom features and DOS grid, the model's RBF settings; ``pipeline.data.provenance``), ``train_elements``
(element -> training materials containing it, for ``screen``'s unseen-element flag) and ``data`` (split counts
and a sha256 over the ids and DOS of each split, so a later run can tell whether it saw the same data). The
float16 weights halve the file; ``pipeline.nn.pretrained.load_for_screening`` casts them back to float32, and the
card's metrics are measured on exactly those weights.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.data.provenance import InputProvenance, model_provenance
from pipeline.io import atomic_path
from pipeline.nn.modelfile import read_checkpoint
from pipeline.nn.pretrained import with_half_weights

SPLITS = ("train", "val", "test")


def data_fingerprint(dataset: pd.DataFrame) -> dict[str, Any]:
    """Per split: the number of materials and sha256 (16 hex) over their sorted ids and float32 DOS."""
    out: dict[str, Any] = {}
    for split in SPLITS:
        rows = dataset[dataset["split"] == split].sort_values("jid")
        h = hashlib.sha256()
        for jid, dos in zip(rows["jid"], rows["dos"], strict=True):
            h.update(str(jid).encode() + b"\0")
            h.update(np.asarray(dos, dtype=np.float32).tobytes())
        out[split] = {"n": int(len(rows)), "sha256": h.hexdigest()[:16]}
    return out


def element_counts(dataset: pd.DataFrame, split: str = "train") -> dict[str, int]:
    counts: Counter[str] = Counter()
    for els in dataset.loc[dataset["split"] == split, "elements"]:
        counts.update(set(map(str, els)))
    return dict(sorted(counts.items()))


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pack(model: str | Path, dataset: str | Path, config: str | Path, out: str | Path) -> dict[str, Any]:
    """Write ``out`` (see the module docstring); return its dict."""
    from pipeline.config import load_config

    cfg = load_config(config)
    ckpt = read_checkpoint(model)
    ds = pd.read_parquet(dataset, columns=["jid", "split", "dos", "elements"])
    inputs = InputProvenance.current(k=cfg["featurize"]["k"], cutoff=cfg["featurize"]["cutoff"])
    recorded = InputProvenance.from_mapping(ckpt.get("provenance"))
    if clash := recorded.differences(inputs):
        raise ValueError(f"{model} records inputs {clash} that differ from {config}'s featurize section")
    ckpt = with_half_weights(ckpt)
    ckpt["provenance"] = model_provenance(inputs, ckpt["model_config"])
    ckpt["train_elements"] = element_counts(ds)
    ckpt["data"] = {"dataset": Path(dataset).name, "config": str(config), "splits": data_fingerprint(ds)}
    ckpt["packed_at_commit"] = _git_commit()
    with atomic_path(out) as tmp:
        torch.save(ckpt, tmp)
    return ckpt


def _metric(m: pd.DataFrame, subset: str, quantity: str, metric: str, method: str = "alignn_dos") -> float:
    row = m[(m.subset == subset) & (m.method == method) & (m.quantity == quantity) & (m.metric == metric)]
    return float(row["value"].iloc[0]) if len(row) else float("nan")


def _count(m: pd.DataFrame, subset: str, quantity: str, metric: str) -> int:
    row = m[
        (m.subset == subset) & (m.method == "alignn_dos") & (m.quantity == quantity) & (m.metric == metric)
    ]
    return int(row["n"].iloc[0]) if len(row) and "n" in row else 0


def _unstable_recall(m: pd.DataFrame, subset: str) -> float:
    """DFT-unstable materials predicted unstable / DFT-unstable materials ('stable' is the positive class)."""
    tn, fp = _metric(m, subset, "stability", "tn"), _metric(m, subset, "stability", "fp")
    return tn / (tn + fp) if tn + fp > 0 else float("nan")


def _stability_sentence(ckpt: dict[str, Any]) -> str:
    """What the card says of separate stability trunks (``pipeline.nn.ensemble.attach_stability``)."""
    stability = ckpt["stability"]
    train = stability.get("train_config", {})
    seeds = [m.get("stability_seed") for m in ckpt.get("members", [])]
    return (
        " Each member also carries a separate stability trunk (`model.stability_head: separate`): a one-value ALIGNN "
        "of the same architecture trained on its own to regress the DFT negative-frequency fraction (targets "
        f"standardised with mean {stability['target_mean']:.4f} and std {stability['target_std']:.4f}, folded into "
        f"its last layer; loss {train.get('loss', '?')}, seeds {seeds}); predict writes its value "
        "as `negative_fraction_head`, and `stable` is read from it (`properties.head_unstable_fraction`)."
    )


def card_text(
    model: str | Path,
    metrics: pd.DataFrame,
    accuracy: dict[str, Any] | None = None,
    notes: tuple[str, ...] | list[str] = (),
) -> str:
    """The model card (Markdown) of a packed model file, with the metrics of the evaluate stage on its test ids."""
    ckpt = read_checkpoint(model)
    n_members = len(ckpt.get("members", [ckpt]))
    size_mb = Path(model).stat().st_size / 1e6
    data = ckpt.get("data", {})
    splits = data.get("splits", {})
    prov = ckpt.get("provenance", {})
    m = metrics
    lines = [
        f"# Model card: `{Path(model).name}`",
        "",
        f"A seed ensemble of {n_members} ALIGNN models (`pipeline.nn.model`, preset "
        f"`{ckpt['train_config'].get('preset', ckpt['model_config'].get('preset', 'cpu_small'))}`) predicting the "
        "phonon density of states of a crystal on the paper's grid: 66 bins from -300 to 1000 cm^-1 (step 20), "
        "max-normalised. Predictions are the members' mean; `screen` also reports their per-bin standard "
        f"deviation. Weights are stored as float16 ({size_mb:.1f} MB) and used as float32."
        + (_stability_sentence(ckpt) if ckpt.get("stability") else ""),
        "",
        "## Training",
        "",
        f"- Data: `{data.get('config', '?')}`: the real JARVIS-DFT structures of ../shared/data (not shipped) with "
        "the jarvis-leaderboard DFT phonon DOS labels and the official split.",
        *[
            f"  - {split}: {v['n']} materials, sha256(ids + DOS) `{v['sha256']}`"
            for split, v in splits.items()
        ],
        f"- Elements seen in training: {len(ckpt.get('train_elements', {}))}.",
        f"- Inputs (checked by predict and screen): k = {prov.get('k')}, cutoff = {prov.get('cutoff')} A, "
        f"atom features `{prov.get('atom_features')}` (`{prov.get('atom_features_sha256')}`), bond RBF "
        f"{prov.get('edge_rbf_bins')} on 0..{prov.get('edge_rbf_max_A')} A, angle RBF {prov.get('triplet_rbf_bins')}.",
        f"- Model: `{json.dumps(ckpt['model_config'], sort_keys=True)}`",
        f"- Training: `{json.dumps({k: v for k, v in ckpt['train_config'].items() if k != 'threads'}, sort_keys=True)}`;"
        f" member seeds {[mm.get('seed') for mm in ckpt.get('members', [])]}, best epochs "
        f"{[mm.get('best_epoch') for mm in ckpt.get('members', [])]}.",
        f"- Packed at commit `{ckpt.get('packed_at_commit', 'unknown')}` by `python -m pipeline.stages.pretrained pack`.",
    ]
    if accuracy:
        lines.append(
            f"- Trained by `benchmarks/accuracy_shared.py`: {accuracy['train_wall_s_sum_of_epochs'] / 60:.1f} min "
            f"wall time summed over epochs ({accuracy['threads']} threads, members one after the other); test "
            f"MAE of the float32 ensemble {accuracy['test_mae']:.4f}, of the members alone "
            + " / ".join(f"{v:.4f}" for v in accuracy["test_mae_members"])
            + "."
        )
    lines += [f"- {n}" for n in notes]
    lines += [
        "",
        f"## Test metrics ({_count(m, 'all', 'spectrum', 'mae')} official test ids, float16 weights as shipped)",
        "",
        "| subset | spectral MAE | C_V(300 K) MAE J/(mol K) | C_V MAE:MAD | S_vib(300 K) MAE J/(mol K) | "
        "S_vib MAE:MAD | stability accuracy | unstable recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for subset in ("all", "non_duplicate", "near_duplicate"):
        lines.append(
            f"| {subset} ({_count(m, subset, 'spectrum', 'mae')}) | {_metric(m, subset, 'spectrum', 'mae'):.4f} | "
            f"{_metric(m, subset, 'cv_300k', 'mae'):.2f} | {_metric(m, subset, 'cv_300k', 'mae_mad'):.3f} | "
            f"{_metric(m, subset, 's_vib_300k', 'mae'):.2f} | {_metric(m, subset, 's_vib_300k', 'mae_mad'):.3f} | "
            f"{_metric(m, subset, 'stability', 'accuracy'):.3f} | "
            f"{_unstable_recall(m, subset):.2f} |"
        )
    lines += [
        "",
        "near_duplicate: a train+val DFT spectrum within per-bin MAE 0.01 (the evaluate stage's definition). "
        "Property MAEs use materials stable in both DFT and prediction.",
        "",
        "## What it is not good for",
        "",
        "- Spectra reaching above 1000 cm^-1 (hydrides, many light-element compounds): the grid and the labels stop "
        "there, so C_V and S_vib come out biased high; `screen` flags these (`beyond_grid`).",
        (
            "- Dynamical instability as a verdict: the stability trunks find part of the unstable materials (the "
            "unstable recall above) and miss the rest; treat `stable` as a screen, and 'unstable' as a flag for a "
            "DFT phonon check."
            if ckpt.get("stability")
            else "- Dynamical instability: trained on few unstable materials, the model rarely predicts "
            "negative-frequency weight (see the unstable recall above); do not use it to screen for instabilities."
        ),
        "- Elements absent from its training set (`screen` flags them) and structures unlike the JARVIS "
        "OptB88vdW-relaxed cells it saw (disordered, defective, surfaces, molecules, very large cells).",
        "- Absolute DOS: it predicts the max-normalised shape; absolute values come from scaling the area to 3N.",
        "- Accuracy claims beyond the numbers above: 1,186 training materials is about a tenth of the paper's set.",
        "",
    ]
    return "\n".join(lines)


def write_card(
    model: str | Path,
    metrics: str | Path,
    accuracy: str | Path | None = None,
    notes: tuple[str, ...] | list[str] = (),
) -> Path:
    """Write ``<model>.md``, :func:`card_text` of the evaluate stage's ``metrics`` parquet (and the optional
    ``accuracy.json`` of benchmarks/accuracy_shared.py); return its path."""
    acc = json.loads(Path(accuracy).read_text()) if accuracy else None
    out = Path(model).with_suffix(".md")
    text = card_text(model, pd.read_parquet(metrics), acc, notes)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return out
