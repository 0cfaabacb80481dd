"""Seed ensemble: members train with seed + member, `ensemble` combines them, predict loads their mean."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from pipeline.data.shards import collate
from pipeline.nn import ensemble
from pipeline.nn.inference import load_model
from pipeline.nn.model import ALIGNN, EnsembleALIGNN, ModelConfig, split_outputs
from pipeline.schemas import TRAIN_HISTORY
from pipeline.stages import ensemble as ensemble_stage
from tests.helpers import save_model, strained_crystals, train_members, write_split

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


def test_attached_stability_models_become_the_members_trunks(members, tmp_path):
    """Separately trained one-value models (standardised targets) as separate stability trunks: the spectrum is the
    ensemble's, the head column the stability models' mean de-standardised (weight x std, bias x std + mean)."""
    _, items, va, dirs = members
    assert ensemble_stage.main(
        ["--models", *(str(d / "model.pt") for d in dirs), "--histories", *(str(d / "history.parquet") for d in dirs),
         "--out-dir", str(tmp_path / "dos")]
    ) == 0  # fmt: skip
    dos_config = load_model(dirs[0] / "model.pt").config
    one_value = ModelConfig.from_dict({**dos_config.to_dict(), "out_dim": 1, "final_relu": False})
    stability = []
    for seed in (3, 4):
        torch.manual_seed(seed)
        path = save_model(tmp_path / f"stability-{seed}.pt", ALIGNN(one_value).eval())
        ckpt = torch.load(path, weights_only=True)
        torch.save(ckpt | {"train_config": {"seed": seed}}, path)
        stability.append(path)
    mean, std = 0.04, 0.12
    out = tmp_path / "with_stability.pt"
    ensemble.attach_stability(tmp_path / "dos" / "model.pt", stability, mean, std, out)
    model = load_model(out)
    assert model.config.stability_head == "separate"
    batch = collate([g for _, g, _ in items[:4]])
    with torch.no_grad():
        dos, head = split_outputs(model(batch), model.config)
        torch.testing.assert_close(dos, load_model(tmp_path / "dos" / "model.pt")(batch))
        raw = torch.stack([load_model(p)(batch)[:, 0] for p in stability]).mean(dim=0)
        torch.testing.assert_close(head, raw * std + mean, rtol=1e-5, atol=1e-6)
    saved = torch.load(out, weights_only=True)
    assert saved["stability"]["target_mean"] == mean and [m["stability_seed"] for m in saved["members"]] == [
        3,
        4,
    ]
    # refused: a count that does not match, an architecture that does not, a model that already has a head
    with pytest.raises(ValueError, match="2 member"):
        ensemble.attach_stability(tmp_path / "dos" / "model.pt", stability[:1], mean, std, tmp_path / "x.pt")
    wide = save_model(
        tmp_path / "wide.pt", ALIGNN(ModelConfig.from_dict({**one_value.to_dict(), "hidden_features": 8}))
    )
    with pytest.raises(ValueError, match="architecture"):
        ensemble.attach_stability(tmp_path / "dos" / "model.pt", [wide, wide], mean, std, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="already has a stability head"):
        ensemble.attach_stability(out, stability, mean, std, tmp_path / "x.pt")


def test_attach_stability_command_names_a_bad_input_and_exits_2(members, tmp_path, capsys):
    from pipeline.stages import pretrained

    _, _, _, dirs = members
    argv = ["attach-stability", "--model", str(dirs[0] / "model.pt"), "--stability", str(tmp_path / "none.pt"),
            "--properties", str(tmp_path / "none.parquet"), "--train-shards", str(tmp_path / "none.h5"),
            "--out", str(tmp_path / "out.pt")]  # fmt: skip
    assert pretrained.main(argv) == 2
    assert "attach-stability: error:" in capsys.readouterr().err and not (tmp_path / "out.pt").exists()
