"""Seed ensemble: members train with seed + member, `ensemble` combines them, predict loads their mean."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from pipeline.data.shards import collate
from pipeline.nn import ensemble
from pipeline.nn.inference import load_model
from pipeline.nn.model import ALIGNN, EnsembleALIGNN, ModelConfig
from pipeline.schemas import TRAIN_HISTORY
from pipeline.stages import ensemble as ensemble_stage
from tests.helpers import strained_crystals, train_members, write_split

SETTINGS = (
    '{"model": {"preset": "demo", "hidden_features": 16}, "train": {"epochs": 2, "batch_size": 3, "seed": 5}}'
)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two members trained through the train CLI on strained crystals: (tmp dir, shards, member dirs)."""
    tmp = tmp_path_factory.mktemp("ensemble")
    items = strained_crystals(8)
    tr, va = write_split(tmp / "train.h5", items[:6]), write_split(tmp / "val.h5", items[6:])
    return tmp, items, va, train_members(tr, va, tmp, SETTINGS)


def test_members_train_with_seed_plus_member_and_differ(members):
    _, _, _, dirs = members
    ckpts = [torch.load(d / "model.pt", weights_only=True) for d in dirs]
    assert [c["train_config"]["seed"] for c in ckpts] == [5, 6]
    a, b = (c["state_dict"] for c in ckpts)
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert pd.read_parquet(dirs[1] / "history.parquet").member.unique().tolist() == [1]


def test_combined_model_predicts_the_members_mean(members, tmp_path):
    _, items, va, dirs = members
    assert ensemble_stage.main(
        ["--models", *(str(d / "model.pt") for d in dirs), "--histories", *(str(d / "history.parquet") for d in dirs),
         "--val-shards", str(va), "--out-dir", str(tmp_path), "--set", "predict.batch_size=2"]
    ) == 0  # fmt: skip
    model = load_model(tmp_path / "model.pt")
    assert isinstance(model, EnsembleALIGNN) and len(model.members) == 2
    batch = collate([g for _, g, _ in items[:5]])
    singles = [load_model(d / "model.pt")(batch) for d in dirs]
    with torch.no_grad():
        torch.testing.assert_close(model(batch), (singles[0] + singles[1]) / 2)
        assert (model(batch) >= 0).all()
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert len(saved["val_mae_members"]) == 2 and 0 < saved["val_mae"] < 1
    hist = pd.read_parquet(tmp_path / "history.parquet")
    assert list(hist.columns) == TRAIN_HISTORY.names
    assert hist.member.tolist() == [0, 0, 1, 1] and hist.epoch.tolist() == [1, 2, 1, 2]


def test_one_member_is_that_model(members, tmp_path):
    _, items, _, dirs = members
    ensemble.combine([dirs[0] / "model.pt"], [dirs[0] / "history.parquet"], tmp_path)
    model = load_model(tmp_path / "model.pt")
    assert isinstance(model, ALIGNN)
    batch = collate([g for _, g, _ in items[:3]])
    with torch.no_grad():
        torch.testing.assert_close(model(batch), load_model(dirs[0] / "model.pt")(batch))


def test_refuses_members_with_the_same_seed_or_a_different_architecture(members, tmp_path):
    _, _, _, dirs = members
    with pytest.raises(ValueError, match="share a seed"):
        ensemble.combine([dirs[0] / "model.pt"] * 2, [dirs[0] / "history.parquet"] * 2, tmp_path)
    other = tmp_path / "other.pt"
    ckpt = torch.load(dirs[1] / "model.pt", weights_only=True)
    wide = ALIGNN(ModelConfig.from_dict(ckpt["model_config"] | {"hidden_features": 8}))
    torch.save(ckpt | {"model_config": wide.config.to_dict(), "state_dict": wide.state_dict()}, other)
    with pytest.raises(ValueError, match="different architectures"):
        ensemble.combine([dirs[0] / "model.pt", other], [dirs[0] / "history.parquet"] * 2, tmp_path)
    assert not (tmp_path / "model.pt").exists()
