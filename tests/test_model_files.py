"""Model files are data, not code (weights_only loading, refused pickles), they record the provenance of their
inputs (checked by train, ensemble and predict), and a truncated checkpoint.pt is set aside instead of crashing."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.data.featurize import run_shard
from pipeline.data.provenance import InputProvenance, ProvenanceError, agreed, check_shard
from pipeline.data.shards import ShardReader, ShardWriter, write_shard
from pipeline.grid import FREQ_CM, GRID_MAX_CM, GRID_MIN_CM, N_BINS
from pipeline.nn.model import ALIGNN, ModelConfig
from pipeline.nn.modelfile import CorruptModelFileError, UnsafeModelFileError, read_checkpoint
from pipeline.nn.train import _rng_state, _set_rng_state, fit
from pipeline.schemas import MATERIALS
from pipeline.stages import ensemble, predict
from pipeline.stages import train as train_stage
from tests.helpers import TINY, fcc, featurize_settings, in_memory, strained_crystals, train_settings

SETTINGS = (
    '{"model": {"preset": "demo", "hidden_features": 16}, "train": {"epochs": 1, "batch_size": 3, "seed": 2}}'
)
UNSAFE = "is not a model file this pipeline wrote (refusing to unpickle arbitrary objects"


# ------------------------------------------------------------------------------------------ fixtures -----------
def materials(path: Path, split: str, n: int) -> Path:
    """n strained rocksalt/diamond crystals of ``split`` with a Debye-like DOS, as a MATERIALS parquet."""
    protos = [
        ([[0, 0, 0], [0.5, 0.5, 0.5]], ["Na", "Cl"], 5.64, 260.0),
        ([[0, 0, 0], [0.25, 0.25, 0.25]], ["Si", "Si"], 5.43, 520.0),
    ]
    rows = []
    for i in range(n):
        frac, elements, a, w = protos[i % 2]
        scale = 0.96 + 0.01 * i
        g = np.where((FREQ_CM > 0) & (FREQ_CM <= w * scale**-3), FREQ_CM**2, 0.0)
        rows.append(
            {
                "jid": f"JVASP-{split}-{i}",
                "split": split,
                "dos": (g / g.max()).astype(np.float32).tolist(),
                "lattice_mat": (fcc(a) * scale).tolist(),
                "frac_coords": frac,
                "elements": elements,
            }
        )
    cols = {name: [r.get(name) for r in rows] for name in MATERIALS.names}
    pq.write_table(pa.table(cols, schema=MATERIALS), path)
    return path


def featurize(tmp: Path, split: str, n: int, k: int, name: str | None = None) -> Path:
    name = name or f"{split}-k{k}"
    src = materials(tmp / f"{name}.parquet", split, n)
    out = tmp / f"{name}.h5"
    run_shard(
        src,
        split,
        0,
        out,
        tmp / f"{name}.rejects.parquet",
        featurize_settings(n_shards=1, k=k),
        progress=False,
    )
    return out


def train_member(shards: dict[str, Path], out: Path, member: int = 0, train=None, val=None) -> int:
    args = ["--train-shards", str(train or shards["train"]), "--val-shards", str(val or shards["val"])]
    args += ["--out-dir", str(out), "--settings", SETTINGS, "--member", str(member)]
    return train_stage.main(args + ["--no-progress", "--device", "cpu"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Shards through the featurize stage (k=12 and k=8) and two k=12 members trained through the train CLI."""
    tmp = tmp_path_factory.mktemp("model_files")
    shards = {
        "train": featurize(tmp, "train", 6, 12),
        "val": featurize(tmp, "val", 3, 12),
        "test": featurize(tmp, "test", 3, 12),
        "train_k8": featurize(tmp, "train", 6, 8),
        "val_k8": featurize(tmp, "val", 3, 8),
        "test_k8": featurize(tmp, "test", 3, 8),
    }
    members = [tmp / "member-0", tmp / "member-1"]
    for m, out in enumerate(members):
        assert train_member(shards, out, member=m) == 0
    return tmp, shards, members


class Payload:
    """A pickle that creates ``marker`` when unpickled: what a malicious model.pt would do (os.system etc.)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_file(path: Path, marker: Path, like: dict | None = None) -> Path:
    """A torch file shaped like a model/checkpoint whose unpickling runs the payload."""
    torch.save({**(like or {}), "state_dict": Payload(marker), "fingerprint": Payload(marker)}, path)
    return path


def test_the_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """Control for the refusal tests: the same file loaded the old way (weights_only=False) runs its payload."""
    marker = tmp_path / "marker"
    torch.load(malicious_file(tmp_path / "m.pt", marker), weights_only=False)
    assert marker.exists()


# ------------------------------------------------------------------------------------------ data, not code ----
def test_predict_ensemble_and_resumed_train_refuse_a_pickle_that_runs_code(run, tmp_path, capsys):
    tmp, shards, members = run
    marker = tmp_path / "payload-ran"
    good = read_checkpoint(members[0] / "model.pt")
    evil = malicious_file(tmp_path / "model.pt", marker, like={"model_config": good["model_config"]})

    out = tmp_path / "pred.parquet"
    argv = [
        "shard",
        "--model",
        str(evil),
        "--shard",
        str(shards["test"]),
        "--split",
        "test",
        "--out",
        str(out),
    ]
    assert predict.main(argv + ["--no-progress", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"{evil} {UNSAFE}" in err and "Traceback" not in err
    assert not out.exists()

    ens = ["--models", str(members[0] / "model.pt"), str(evil), "--out-dir", str(tmp_path / "ens")]
    ens += ["--histories", str(members[0] / "history.parquet"), str(members[1] / "history.parquet")]
    assert ensemble.main(ens) == 1
    assert f"{evil} {UNSAFE}" in capsys.readouterr().err
    assert not (tmp_path / "ens" / "model.pt").exists()

    resumed = tmp_path / "member-0"
    resumed.mkdir()
    ckpt = malicious_file(resumed / "checkpoint.pt", marker)
    assert train_member(shards, resumed) == 1
    assert f"{ckpt} {UNSAFE}" in capsys.readouterr().err
    assert not (resumed / "model.pt").exists() and ckpt.exists()  # refused, not silently discarded

    assert not marker.exists(), "the payload ran"


def test_written_files_load_as_data_only_and_the_rng_state_round_trips(run):
    _, _, members = run
    for name in ("model.pt", "checkpoint.pt"):
        assert isinstance(torch.load(members[0] / name, weights_only=True), dict)
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    buf = io.BytesIO()
    torch.save(_rng_state(), buf)
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    buf.seek(0)
    _set_rng_state(torch.load(buf, weights_only=True))
    again = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


@pytest.mark.parametrize("keep_bytes", [0, 100])
def test_truncated_checkpoint_is_set_aside_and_training_starts_over(tmp_path, capsys, keep_bytes):
    data = in_memory(strained_crystals(6))
    cfg = train_settings(epochs=2, batch_size=3, seed=4)
    fit(TINY, train_settings(epochs=1, batch_size=3, seed=4), data, data, tmp_path, progress=False)
    ckpt = tmp_path / "checkpoint.pt"
    full = ckpt.read_bytes()
    assert len(full) > 1000
    ckpt.write_bytes(full[:keep_bytes])  # a copy cut short / a 0-byte file
    capsys.readouterr()
    result = fit(TINY, cfg, data, data, tmp_path, progress=False)
    err = capsys.readouterr().err
    assert f"warning: {ckpt} is not a readable model file ({keep_bytes} bytes; truncated or corrupt" in err
    assert "training from scratch" in err
    assert (tmp_path / "checkpoint.pt.corrupt").read_bytes() == full[:keep_bytes]
    assert result.history.epoch.tolist() == [1, 2]  # started over, not resumed
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2


def test_predict_refuses_a_truncated_model_file(run, tmp_path, capsys):
    _, shards, members = run
    cut = tmp_path / "model.pt"
    cut.write_bytes((members[0] / "model.pt").read_bytes()[:100])
    with pytest.raises(CorruptModelFileError, match="truncated or corrupt"):
        read_checkpoint(cut)
    out = tmp_path / "p.parquet"
    argv = [
        "shard",
        "--model",
        str(cut),
        "--shard",
        str(shards["test"]),
        "--split",
        "test",
        "--out",
        str(out),
    ]
    assert predict.main(argv + ["--no-progress", "--device", "cpu"]) == 1
    assert f"{cut} is not a readable model file (100 bytes; truncated or corrupt" in capsys.readouterr().err
    assert not out.exists()


def test_read_checkpoint_sorts_unsafe_from_corrupt(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CorruptModelFileError, match="holds a list"):
        read_checkpoint(tmp_path / "list.pt")
    (tmp_path / "text.pt").write_text("not a torch file")
    with pytest.raises(CorruptModelFileError, match="text.pt is not a readable model file"):
        read_checkpoint(tmp_path / "text.pt")
    with pytest.raises(UnsafeModelFileError, match="refusing to unpickle"):
        read_checkpoint(malicious_file(tmp_path / "m.pt", tmp_path / "marker"))
    assert not (tmp_path / "marker").exists()


# ------------------------------------------------------------------------------------------ provenance --------
def test_featurize_records_provenance_and_model_copies_it(run):
    _, shards, members = run
    with ShardReader(shards["test_k8"]) as r:
        assert r.provenance == InputProvenance.current(8, 8.0)
        assert r.meta["min_distance"] == 0.5  # a featurize setting, recorded, but not part of the provenance
    prov = read_checkpoint(members[0] / "model.pt")["provenance"]
    assert prov["k"] == 12 and prov["cutoff"] == 8.0 and prov["atom_features"] == "cgcnn"
    assert len(prov["atom_features_sha256"]) == 16
    assert (prov["dos_bins"], prov["dos_min_cm"], prov["dos_max_cm"]) == (N_BINS, GRID_MIN_CM, GRID_MAX_CM)
    # the radial bases recorded are the ones the model reads its inputs through
    cfg = ModelConfig.from_dict(read_checkpoint(members[0] / "model.pt")["model_config"])
    model = ALIGNN(cfg)
    edge, angle = model.edge_embedding[0].centers, model.angle_embedding[0].centers
    assert prov["edge_rbf_bins"] == edge.numel() == cfg.edge_input_features
    assert (prov["edge_rbf_min_A"], prov["edge_rbf_max_A"]) == (float(edge[0]), float(edge[-1]))
    assert prov["triplet_rbf_bins"] == angle.numel()
    assert (prov["triplet_rbf_min"], prov["triplet_rbf_max"]) == (float(angle[0]), float(angle[-1]))


def test_predict_refuses_a_shard_built_with_another_k(run, tmp_path, capsys):
    _, shards, members = run
    model = members[0] / "model.pt"
    out = tmp_path / "p.parquet"
    argv = [
        "shard",
        "--model",
        str(model),
        "--split",
        "test",
        "--out",
        str(out),
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert predict.main(argv + ["--shard", str(shards["test_k8"])]) == 1
    err = capsys.readouterr().err
    assert f"shard {shards['test_k8']} was built with k=8 but model {model} expects k=12" in err
    assert "Traceback" not in err and not out.exists()
    assert (
        predict.main(argv + ["--shard", str(shards["test"])]) == 0
    )  # the same shard built with k=12 is fine
    assert "warning" not in capsys.readouterr().err and out.exists()


def test_model_without_provenance_is_used_with_a_warning(run, tmp_path, capsys):
    _, shards, members = run
    old = read_checkpoint(members[0] / "model.pt")
    del old["provenance"]  # a model.pt from before provenance was recorded
    torch.save(old, tmp_path / "old.pt")
    out = tmp_path / "p.parquet"
    argv = [
        "shard",
        "--model",
        str(tmp_path / "old.pt"),
        "--shard",
        str(shards["test_k8"]),
        "--split",
        "test",
    ]
    assert predict.main(argv + ["--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"warning: model {tmp_path / 'old.pt'} does not record k, cutoff" in err
    assert out.exists()


def test_train_refuses_shards_with_mixed_provenance(run, tmp_path, capsys):
    _, shards, _ = run
    out = tmp_path / "m"
    assert train_member(shards, out, train=shards["train"], val=shards["val_k8"]) == 1
    err = capsys.readouterr().err
    assert "the training and validation shards have mixed provenance" in err
    assert f"{shards['train']} was built with k=12 but {shards['val_k8']} with k=8" in err
    assert not (out / "model.pt").exists()


def test_ensemble_refuses_members_with_different_inputs(run, tmp_path, capsys):
    tmp, shards, members = run
    k8 = tmp_path / "member-1"
    assert train_member(shards, k8, member=1, train=shards["train_k8"], val=shards["val_k8"]) == 0
    models = [str(members[0] / "model.pt"), str(k8 / "model.pt")]
    histories = [str(members[0] / "history.parquet"), str(k8 / "history.parquet")]
    argv = ["--models", *models, "--histories", *histories, "--out-dir", str(tmp_path / "ens")]
    assert ensemble.main(argv) == 1
    err = capsys.readouterr().err
    assert "the ensemble members have mixed provenance" in err and "k=12" in err and "k=8" in err
    assert not (tmp_path / "ens" / "model.pt").exists()
    # members that agree combine, the combined file keeps their provenance, and its val shards are checked
    models[1], histories[1] = str(members[1] / "model.pt"), str(members[1] / "history.parquet")
    argv = ["--models", *models, "--histories", *histories, "--out-dir", str(tmp_path / "ok")]
    assert ensemble.main(argv + ["--val-shards", str(shards["val_k8"])]) == 1
    assert f"shard {shards['val_k8']} was built with k=8" in capsys.readouterr().err
    assert ensemble.main(argv + ["--val-shards", str(shards["val"])]) == 0
    combined = read_checkpoint(tmp_path / "ok" / "model.pt")
    assert combined["provenance"] == read_checkpoint(members[0] / "model.pt")["provenance"]


def test_provenance_helpers_name_the_key_and_both_values():
    a, b = InputProvenance.current(12, 8.0), InputProvenance.current(12, 6.0)
    assert agreed([("a.h5", a), ("c.h5", a)], "shards") == a
    with pytest.raises(ProvenanceError, match=r"a\.h5 was built with cutoff=8 but b\.h5 with cutoff=6"):
        agreed([("a.h5", a), ("b.h5", b)], "shards")
    with pytest.raises(ProvenanceError, match="cutoff=unrecorded"):
        agreed([("a.h5", a), ("old.h5", InputProvenance.current(12))], "shards")
    assert InputProvenance.from_mapping({"k": np.int64(12), "cutoff": 8}) == InputProvenance(k=12, cutoff=8.0)
    with pytest.raises(ProvenanceError, match="shard s was built with cutoff=6 but model m expects cutoff=8"):
        check_shard("s", b, "m", a)
    assert check_shard("s", a, "m", a) == []
    assert "shard s does not record k, cutoff" in check_shard("s", InputProvenance.current(), "m", a)[0]


def test_shard_writer_refuses_graphs_that_contradict_its_k(tmp_path):
    (jid, graph, target), *_ = strained_crystals(1)  # built with k=12
    with pytest.raises(ValueError, match="not k=8 per atom"):
        with ShardWriter(tmp_path / "s.h5", labelled=True, meta={"k": 8}) as w:
            w.append(jid, graph, target)
    assert not (tmp_path / "s.h5").exists()
    write_shard(tmp_path / "t.h5", [jid], [graph], [target])  # no meta: only the writer's own keys
    with ShardReader(tmp_path / "t.h5") as r:
        assert r.provenance == InputProvenance.current() and r.provenance.unknown() == ["k", "cutoff"]
    assert os.path.getsize(tmp_path / "t.h5") > 0
