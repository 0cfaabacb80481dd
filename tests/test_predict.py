"""predict stage: per-shard predictions equal the model's, follow the PREDICTIONS contract, gather per set, and
refuse or reject what is wrong instead of writing it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.data.shards import collate, write_shard
from pipeline.nn.model import ALIGNN, ModelConfig
from pipeline.nn.predict import file_hash, gather, rejects_path
from pipeline.schemas import PREDICTIONS
from pipeline.stages.predict import main
from tests.helpers import rocksalt_crystals, save_model


@pytest.fixture
def model_file(tmp_path) -> Path:
    torch.manual_seed(0)
    model = ALIGNN(
        ModelConfig.from_config(
            {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 16}
        )
    )
    return save_model(tmp_path / "model.pt", model.eval())


def predict(model_file: Path, shard: Path, out: Path, set_name: str = "pool") -> pd.DataFrame:
    assert main(["shard", "--model", str(model_file), "--shard", str(shard), "--split", set_name, "--out", str(out),
                 "--set", "predict.batch_size=3", "--no-progress", "--device", "cpu"]) == 0  # fmt: skip
    return pd.read_parquet(out)


def test_shard_predictions_match_the_model_and_the_contract(model_file, tmp_path):
    ids, graphs = rocksalt_crystals(7)
    shard = tmp_path / "shard-0.h5"
    write_shard(shard, ids, graphs, None)  # unlabelled, like the pool
    out = tmp_path / "pool" / "shard-0.parquet"
    df = predict(model_file, shard, out)

    assert pq.read_schema(out).names == PREDICTIONS.names
    assert pq.read_schema(out).field("dos_pred").type == PREDICTIONS.field("dos_pred").type
    assert df.jid.tolist() == ids
    assert (df.split == "pool").all()
    assert (df.model_id == file_hash(model_file)).all()
    ckpt = torch.load(model_file, weights_only=True)
    model = ALIGNN(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    expected = model.eval()(collate(graphs)).detach().numpy()
    np.testing.assert_allclose(np.stack(df.dos_pred.to_numpy()), expected, atol=1e-5)
    assert (np.stack(df.dos_pred.to_numpy()) >= 0).all()
    assert pd.read_parquet(rejects_path(out)).empty


def test_a_stability_head_is_written_beside_the_spectrum(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig.from_config(
        {
            "alignn_layers": 1,
            "gcn_layers": 1,
            "hidden_features": 16,
            "embedding_features": 16,
            "stability_head": "shared",
        }
    )
    model = ALIGNN(config).eval()
    with torch.no_grad():  # values on both sides of the [0, 1] clip
        model.stability.weight.zero_()
        model.stability.bias.fill_(0.25)
    model_file = save_model(tmp_path / "model.pt", model)
    ids, graphs = rocksalt_crystals(4)
    shard = tmp_path / "shard-0.h5"
    write_shard(shard, ids, graphs, None)
    df = predict(model_file, shard, tmp_path / "out.parquet")
    out = model(collate(graphs)).detach().numpy()
    assert out.shape == (4, 67)
    np.testing.assert_allclose(np.stack(df.dos_pred.to_numpy()), out[:, :66], atol=1e-5)
    np.testing.assert_allclose(df.negative_fraction_head.to_numpy(), 0.25, atol=1e-6)
    with torch.no_grad():
        model.stability.bias.fill_(-0.5)
    df = predict(save_model(tmp_path / "below.pt", model), shard, tmp_path / "below.parquet")
    assert (df.negative_fraction_head == 0).all()  # clipped to a fraction


def test_a_model_without_a_head_writes_nulls(model_file, tmp_path):
    ids, graphs = rocksalt_crystals(3)
    shard = tmp_path / "shard-0.h5"
    write_shard(shard, ids, graphs, None)
    assert predict(model_file, shard, tmp_path / "o.parquet").negative_fraction_head.isna().all()


def test_gather_concatenates_shards_sorted_by_id(model_file, tmp_path):
    outs = []
    for s, (ids, graphs) in enumerate([rocksalt_crystals(4, offset=4), rocksalt_crystals(4)]):
        write_shard(tmp_path / f"shard-{s}.h5", ids, graphs, None)
        outs.append(tmp_path / f"shard-{s}.parquet")
        predict(model_file, tmp_path / f"shard-{s}.h5", outs[-1])
    final = tmp_path / "pool.parquet"
    assert main(["gather", "--inputs", *map(str, outs), "--out", str(final)]) == 0
    df = pd.read_parquet(final)
    assert df.jid.tolist() == sorted(rocksalt_crystals(8)[0])
    assert pq.read_schema(final).names == PREDICTIONS.names
    assert rejects_path(final).exists()


def test_gather_refuses_duplicate_ids_and_mixed_models(model_file, tmp_path):
    ids, graphs = rocksalt_crystals(3)
    write_shard(tmp_path / "s.h5", ids, graphs, None)
    a = tmp_path / "a.parquet"
    predict(model_file, tmp_path / "s.h5", a)
    with pytest.raises(ValueError, match="duplicate ids"):
        gather([a, a], tmp_path / "out.parquet")
    torch.manual_seed(1)
    other = save_model(
        tmp_path / "other.pt",
        ALIGNN(ModelConfig.from_config({"alignn_layers": 1, "gcn_layers": 0, "hidden_features": 8})),
    )
    write_shard(tmp_path / "t.h5", *rocksalt_crystals(2, offset=3), None)
    b = tmp_path / "b.parquet"
    predict(other, tmp_path / "t.h5", b)
    with pytest.raises(ValueError, match="different models"):
        gather([a, b], tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_non_finite_predictions_are_rejected_not_written(tmp_path):
    model = ALIGNN(
        ModelConfig.from_config(
            {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 8, "embedding_features": 8}
        )
    ).eval()
    with torch.no_grad():
        model.head.weight[:] = float("nan")
    path = save_model(tmp_path / "nan.pt", model)
    ids, graphs = rocksalt_crystals(2)
    write_shard(tmp_path / "s.h5", ids, graphs, None)
    out = tmp_path / "o.parquet"
    df = predict(path, tmp_path / "s.h5", out)
    assert df.empty
    rej = pd.read_parquet(rejects_path(out))
    assert rej.jid.tolist() == ids and (rej.stage == "predict").all()
    assert rej.reason.str.contains("not finite").all()


def test_the_model_runs_with_the_stages_model_accelerator(model_file, tmp_path, monkeypatch):
    """model.accelerator of the predict stage's settings reaches the model built from the file (which records
    the architecture only); the torch path predicts what the default path does, to float32 rounding."""
    from pipeline.nn import inference

    built = []
    real = inference.model_from_checkpoint

    def spy(ckpt, device, accelerator):
        model = real(ckpt, device, accelerator)
        built.append((accelerator, model.config.accelerator))
        return model

    monkeypatch.setattr(inference, "model_from_checkpoint", spy)
    ids, graphs = rocksalt_crystals(4)
    write_shard(tmp_path / "s.h5", ids, graphs, None)
    outs = {}
    for accelerator in ("auto", "torch"):
        out = tmp_path / f"{accelerator}.parquet"
        argv = ["shard", "--model", str(model_file), "--shard", str(tmp_path / "s.h5"), "--split", "pool"]
        argv += [
            "--out",
            str(out),
            "--set",
            f"model.accelerator={accelerator}",
            "--no-progress",
            "--device",
            "cpu",
        ]
        assert main(argv) == 0
        outs[accelerator] = np.stack(pd.read_parquet(out).dos_pred.to_numpy())
    assert built == [("auto", "auto"), ("torch", "torch")]
    np.testing.assert_allclose(outs["torch"], outs["auto"], atol=1e-5)
