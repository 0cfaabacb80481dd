"""pipeline.nn.modelcard: packing a trained model as the shipped one (float16 weights, provenance, training
elements, data fingerprint) keeps its predictions to float16 rounding, and the card reports the evaluate metrics.
The commands: ``python -m pipeline.stages.pretrained pack|card|elements|half``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.data.shards import collate
from pipeline.nn import modelcard
from pipeline.nn.model import ALIGNN
from pipeline.nn.modelfile import read_checkpoint
from pipeline.nn.pretrained import load_for_screening
from tests.helpers import CRYSTALS, SMALL, crystal_graph, trained_like


@pytest.fixture
def trained(tmp_path):
    torch.manual_seed(0)
    model = trained_like(ALIGNN(SMALL), seed=4)
    path = tmp_path / "model.pt"
    torch.save(
        {
            "model_config": model.config.to_dict(),
            "train_config": {"seed": 0, "preset": "demo"},
            "members": [{"state_dict": model.state_dict(), "seed": 0, "best_epoch": 3, "best_val_mae": 0.1}],
        },
        path,
    )
    rng = np.random.default_rng(0)
    ds = pd.DataFrame(
        {
            "jid": [f"JVASP-{i}" for i in range(6)],
            "split": ["train", "train", "train", "val", "test", "test"],
            "dos": list(rng.random((6, 66)).astype(np.float32)),
            "elements": [["Na", "Cl"], ["Si", "Si"], ["Mg", "O"], ["Cu"], ["Al"], ["Ga", "As"]],
        }
    )
    ds.to_parquet(tmp_path / "dataset.parquet")
    return model, path, tmp_path / "dataset.parquet", ds


def test_packed_model_predicts_as_the_trained_one_to_float16_rounding(trained, tmp_path):
    model, path, dataset, _ = trained
    out = tmp_path / "shipped.pt"
    modelcard.pack(path, dataset, "config/demo.yaml", out)
    ckpt = read_checkpoint(out)
    assert all(
        v.dtype == torch.float16 for v in ckpt["members"][0]["state_dict"].values() if v.is_floating_point()
    )
    assert ckpt["provenance"]["k"] == 12 and ckpt["provenance"]["dos_bins"] == 66
    assert ckpt["train_elements"] == {"Cl": 1, "Mg": 1, "Na": 1, "O": 1, "Si": 1}  # train split only
    assert [ckpt["data"]["splits"][s]["n"] for s in ("train", "val", "test")] == [3, 1, 2]
    batch = collate([crystal_graph(n) for n in CRYSTALS])
    with torch.no_grad():
        ref = model.eval()(batch)
        shipped = load_for_screening(out).members[0](batch)
    assert shipped.dtype == torch.float32
    torch.testing.assert_close(shipped, ref, atol=5e-3, rtol=0.0)  # float16 weights
    assert out.stat().st_size < 0.7 * path.stat().st_size  # (pickle overhead on a tiny model)


def test_the_data_fingerprint_changes_with_one_label(trained):
    _, _, _, ds = trained
    before = modelcard.data_fingerprint(ds)
    ds.at[0, "dos"] = ds.at[0, "dos"] + np.float32(1e-3)
    after = modelcard.data_fingerprint(ds)
    assert before["train"]["sha256"] != after["train"]["sha256"]
    assert before["test"] == after["test"]


def test_pack_refuses_a_model_built_for_other_inputs(trained, tmp_path):
    _, path, dataset, _ = trained
    ckpt = read_checkpoint(path)
    torch.save(ckpt | {"provenance": {"k": 8}}, path)
    with pytest.raises(ValueError, match="'k', 8, 12"):
        modelcard.pack(path, dataset, "config/demo.yaml", tmp_path / "shipped.pt")


def test_card_reports_the_metrics_and_the_unstable_recall(trained, tmp_path):
    _, path, dataset, _ = trained
    out = tmp_path / "shipped.pt"
    modelcard.pack(path, dataset, "config/demo.yaml", out)
    rows = [
        ("all", "alignn_dos", "spectrum", "mae", 0.0693, 185),
        ("all", "alignn_dos", "cv_300k", "mae", 3.3, 150),
        ("all", "alignn_dos", "stability", "accuracy", 0.9, 185),
        ("all", "alignn_dos", "stability", "tn", 5.0, 185),
        ("all", "alignn_dos", "stability", "fp", 15.0, 185),
    ]
    metrics = pd.DataFrame(rows, columns=["subset", "method", "quantity", "metric", "value", "n"])
    text = modelcard.card_text(out, metrics, notes=["a note"])
    line = next(ln for ln in text.splitlines() if ln.startswith("| all"))
    assert "| all (185) | 0.0693 | 3.30 |" in line and line.endswith("| 0.900 | 0.25 |")
    assert "- a note" in text and "What it is not good for" in text
    assert "stability trunk" not in text and "do not use it to screen for instabilities" in text
    # a file with separate stability trunks (pipeline.nn.ensemble.attach_stability) says so
    ckpt = read_checkpoint(out)
    stability = {"target_mean": 0.034, "target_std": 0.1, "train_config": {"loss": "l1", "seed": 0}}
    members = [m | {"stability_seed": 7} for m in ckpt["members"]]
    torch.save(ckpt | {"stability": stability, "members": members}, tmp_path / "with_trunks.pt")
    text = modelcard.card_text(tmp_path / "with_trunks.pt", metrics)
    assert "separate stability trunk" in text and "mean 0.0340 and std 0.1000" in text and "seeds [7]" in text
    assert "a flag for a DFT phonon check" in text and "do not use it to screen" not in text


def test_the_shipped_model_commands_pack_card_elements_and_half(trained, tmp_path):
    from pipeline.stages import pretrained

    _, path, dataset, _ = trained
    out = tmp_path / "shipped.pt"
    argv = ["pack", "--model", str(path), "--dataset", str(dataset), "--config", "config/demo.yaml"]
    assert pretrained.main([*argv, "--out", str(out)]) == 0
    assert read_checkpoint(out)["train_elements"] == {"Cl": 1, "Mg": 1, "Na": 1, "O": 1, "Si": 1}
    metrics = pd.DataFrame(
        [("all", "alignn_dos", "spectrum", "mae", 0.0693, 185)],
        columns=["subset", "method", "quantity", "metric", "value", "n"],
    )
    metrics.to_parquet(tmp_path / "metrics.parquet")
    assert pretrained.main(["card", "--model", str(out), "--metrics", str(tmp_path / "metrics.parquet")]) == 0
    card = out.with_suffix(".md").read_text()
    assert "| all (185) | 0.0693 |" in card and "python -m pipeline.stages.pretrained pack" in card
    assert pretrained.main(["elements", "--dataset", str(dataset), "--model", str(path)]) == 0
    assert (tmp_path / "model.train.json").exists()
    assert pretrained.main(["half", str(path), str(tmp_path / "half.pt")]) == 0
    assert (tmp_path / "half.pt").stat().st_size < path.stat().st_size
