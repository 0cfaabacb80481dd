"""train stage: learning on real spectra, exact resumption after a kill, best-on-val model, early stopping, CLI,
and the shard loader it reads through."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.data.loader import ShardGraphs
from pipeline.data.shards import collate, write_shard
from pipeline.nn import train
from pipeline.nn.inference import evaluate, load_model
from pipeline.nn.model import ModelConfig
from pipeline.nn.train import fit
from pipeline.schemas import TRAIN_HISTORY
from pipeline.stages.train import main
from tests.helpers import TINY, graph_of, in_memory, strained_crystals, train_settings, write_split


def state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


# ------------------------------------------------------------------------------------------ real spectra -------
def real_spectra(shared_zip: Path, n: int) -> list[tuple[str, object, np.ndarray]]:
    """The n smallest-cell structures of ../shared/data that have a jarvis-leaderboard DOS, with that DOS."""
    with zipfile.ZipFile(shared_zip) as zf:
        records = json.loads(zf.read(zf.namelist()[0]))
    lb = resources.files("jarvis_leaderboard").joinpath("benchmarks/AI/Spectra/edos_pdos_ph_dos.json.zip")
    with resources.as_file(lb) as p, zipfile.ZipFile(p) as zf:
        labels = json.loads(zf.read(zf.namelist()[0]))
    dos = {jid: text for split in labels.values() for jid, text in split.items()}
    chosen = sorted(
        (
            r
            for r in records
            if r["jid"] in dos and r.get("relaxation") == "jarvis" and 2 <= len(r["atoms"]["elements"]) <= 4
        ),
        key=lambda r: (len(r["atoms"]["elements"]), r["jid"]),
    )[:n]
    out = []
    for r in chosen:
        a = r["atoms"]
        assert not a.get("cartesian", False)
        graph = graph_of(np.asarray(a["lattice_mat"]), np.asarray(a["coords"]), a["elements"])
        out.append((r["jid"], graph, np.array([float(v) for v in dos[r["jid"]].split(";")], np.float32)))
    return out


@pytest.mark.shared
def test_overfitting_a_handful_of_real_spectra_drives_the_loss_down(shared_zip, tmp_path):
    items = real_spectra(shared_zip, 8)
    assert len(items) == 8
    data = in_memory(items)
    y = np.stack([t for _, _, t in items])
    median_mae = float(np.abs(y - np.median(y, axis=0)).mean())
    cfg = train_settings(epochs=80, batch_size=8, lr=3e-3, scheduler="constant", loss="mse", seed=0)
    model_cfg = ModelConfig.from_config(
        {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 32, "embedding_features": 32}
    )
    result = fit(model_cfg, cfg, data, data, tmp_path, progress=False)
    losses = result.history.train_loss.to_numpy()
    assert losses[-5:].mean() < 0.25 * losses[:3].mean()
    # memorising 8 spectra must beat the best constant spectrum on them
    assert result.best_val_mae < 0.7 * median_mae


# ------------------------------------------------------------------------------------------ resumption ---------
SMALL_RUN = train_settings(epochs=3, batch_size=4, lr=2e-3, seed=7, loss="mse")


class Killed(RuntimeError):
    """A test's stand-in for SIGKILL in the middle of an epoch (raised by a patched train_step)."""


def kill_after_steps(monkeypatch, steps: int) -> None:
    """From the outside: ``pipeline.nn.train.train_step`` runs ``steps`` optimizer steps, then "kills" the run."""
    real, done = train.train_step, [0]

    def step(*args, **kwargs):
        if done[0] >= steps:
            raise Killed(f"killed after {steps} steps")
        done[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", step)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_after_kill_mid_epoch_gives_the_same_weights(tmp_path, monkeypatch, ema_decay):
    data = in_memory(strained_crystals(10))  # 3 steps per epoch
    run = replace(SMALL_RUN, ema_decay=ema_decay)
    straight = fit(TINY, run, data, data, tmp_path / "a", progress=False)

    with monkeypatch.context() as m, pytest.raises(Killed):
        kill_after_steps(m, 4)  # in epoch 2
        fit(TINY, run, data, data, tmp_path / "b", progress=False)
    assert state(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    assert not (tmp_path / "b" / "model.pt").exists()
    resumed = fit(TINY, run, data, data, tmp_path / "b", progress=False)

    last_a, last_b = (
        state(tmp_path / "a/checkpoint.pt")["model"],
        state(tmp_path / "b/checkpoint.pt")["model"],
    )
    assert last_a.keys() == last_b.keys()
    for k in last_a:
        assert torch.equal(last_a[k], last_b[k]), k
    best_a, best_b = state(straight.model_path)["state_dict"], state(resumed.model_path)["state_dict"]
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    cols = ["epoch", "train_loss", "val_loss", "val_mae", "lr", "is_best"]
    pd.testing.assert_frame_equal(straight.history[cols], resumed.history[cols])


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    data = in_memory(strained_crystals(6))
    fit(TINY, SMALL_RUN, data, data, tmp_path, progress=False)
    other = replace(SMALL_RUN, seed=8)
    result = fit(TINY, other, data, data, tmp_path, progress=False)
    assert result.history.epoch.tolist() == [1, 2, 3]  # started over instead of "resuming" at epoch 4


# ------------------------------------------------------------------------------------------ best model ---------
@pytest.mark.parametrize("ema_decay", [0.0, 0.8])
def test_model_file_holds_the_best_validation_weights(tmp_path, ema_decay):
    items = strained_crystals(12)
    train, val = in_memory(items[:9]), in_memory(items[9:])
    cfg = train_settings(epochs=6, batch_size=3, lr=5e-3, seed=1, ema_decay=ema_decay)
    result = fit(TINY, cfg, train, val, tmp_path, progress=False)
    hist = result.history
    assert result.best_epoch == int(hist.epoch[hist.val_mae.idxmin()])
    assert hist.is_best.sum() >= 1 and bool(hist.is_best[hist.val_mae.idxmin()])
    model = load_model(result.model_path)
    mae = evaluate(model, val.epoch_batches(3, None), torch.device("cpu"))["mae"]
    assert mae == pytest.approx(hist.val_mae.min(), rel=1e-5)


def test_moving_average_is_the_ema_of_the_weights_after_every_step(tmp_path, monkeypatch):
    """train.ema_decay d: after steps w_1..w_n the kept weights are e_1 = w_1, e_k = d e_(k-1) + (1 - d) w_k
    (BatchNorm running statistics too), computed here by hand from the raw weights after each step."""
    data = in_memory(strained_crystals(6))
    decay = 0.7
    cfg = train_settings(epochs=2, batch_size=3, lr=5e-3, seed=3, ema_decay=decay)
    snapshots: list[dict[str, torch.Tensor]] = []
    real = train.train_step

    def step(run, *args, **kwargs):
        loss = real(run, *args, **kwargs)
        snapshots.append({k: v.detach().clone() for k, v in run.model.state_dict().items()})
        return loss

    monkeypatch.setattr(train, "train_step", step)
    fit(TINY, cfg, data, data, tmp_path, progress=False)
    assert len(snapshots) == 4
    ema = {k: v.clone() for k, v in snapshots[0].items()}
    floats = [k for k, v in ema.items() if v.is_floating_point()]  # not BatchNorm's step counter
    for w in snapshots[1:]:
        for k in floats:
            ema[k] = decay * ema[k] + (1 - decay) * w[k]
    kept = state(tmp_path / "checkpoint.pt")["ema"]
    raw = snapshots[-1]
    moved = False
    for k in floats:
        torch.testing.assert_close(kept[f"module.{k}"], ema[k], rtol=1e-5, atol=1e-6, msg=k)
        moved |= not torch.allclose(ema[k], raw[k])
    assert moved  # the average is not the last weights


def test_early_stopping_stops_after_patience_epochs_without_improvement(tmp_path):
    data = in_memory(strained_crystals(6))
    frozen = train_settings(
        epochs=20, batch_size=3, lr=1e-30, scheduler="constant", early_stopping=2, seed=0
    )  # lr > 0 (schema); 1e-30 moves no float32 weight
    result = fit(TINY, frozen, data, data, tmp_path, progress=False)
    # lr ~ 0: epoch 1 sets the best, epochs 2 and 3 do not improve, then it stops
    assert result.epochs_run == 3
    assert result.best_epoch == 1


# ------------------------------------------------------------------------------------------ loader + CLI -------
def test_loader_yields_every_graph_once_in_a_seed_determined_order(tmp_path):
    items = strained_crystals(11)
    shards = [write_split(tmp_path / "s0.h5", items[:6]), write_split(tmp_path / "s1.h5", items[6:])]
    data = ShardGraphs(shards, block_graphs=4)
    assert len(data) == 11

    def order(seed):
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        return [jid for b in data.epoch_batches(5, gen) for jid in b.ids]

    assert order(None) == [i for i, _, _ in items]
    assert sorted(order(1)) == sorted(i for i, _, _ in items)
    assert order(1) == order(1) and order(1) != order(2)
    sizes = [b.n_graphs for b in data.epoch_batches(5, torch.Generator().manual_seed(0))]
    assert sizes == [5, 6]  # the lone 11th graph joins the previous batch (batch norm needs > 1 sample)
    # batches read from shards equal batches collated from the graphs directly
    first = next(data.epoch_batches(3, None))
    direct = collate([g for _, g, _ in items[:3]], targets=[t for _, _, t in items[:3]])
    assert torch.equal(first.edge_src, direct.edge_src) and torch.equal(first.angle_cos, direct.angle_cos)
    assert torch.equal(first.targets, direct.targets)


def test_cli_writes_model_history_and_checkpoint(tmp_path):
    items = strained_crystals(8)
    tr = write_split(tmp_path / "train.h5", items[:6])
    va = write_split(tmp_path / "val.h5", items[6:])
    out = tmp_path / "train"
    code = main(
        [
            "--train-shards", str(tr), "--val-shards", str(va), "--out-dir", str(out),
            "--settings", '{"model": {"preset": "demo", "hidden_features": 16}, "train": {"epochs": 2}}',
            "--set", "train.batch_size=3", "--no-progress", "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0
    assert {"model.pt", "history.parquet", "checkpoint.pt"} <= {p.name for p in out.iterdir()}
    assert pq.read_schema(out / "history.parquet").names == TRAIN_HISTORY.names
    hist = pd.read_parquet(out / "history.parquet")
    assert hist.epoch.tolist() == [1, 2] and (hist.seconds > 0).all() and (hist.graphs_per_s > 0).all()
    assert load_model(out / "model.pt").config.hidden_features == 16


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            ["--settings", '{"train": {"epoch": 2}}'],
            "config error at 'train.epoch': not a setting of this stage",
        ),
        (["--set", "train.epoch=2"], "argument --set: no config key 'train.epoch'"),
        (["--set", "model.preset=huge"], "config error at 'model.preset': 'huge' is not one of"),
    ],
)
def test_cli_rejects_unknown_settings_by_name(tmp_path, capsys, extra, expected):
    items = strained_crystals(4)
    tr = write_split(tmp_path / "t.h5", items)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["--train-shards", str(tr), "--val-shards", str(tr), "--out-dir", str(out), *extra])
    assert exc.value.code == 2 and expected in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_cli_run_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    """The real thing: SIGKILL a `python -m pipeline train` process after its first checkpoint, rerun it, and
    compare with an uninterrupted run (opt-in: pytest -m slow)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    items = strained_crystals(12)
    tr = write_split(tmp_path / "train.h5", items[:9])
    va = write_split(tmp_path / "val.h5", items[9:])

    def cmd(out: Path) -> list[str]:
        return [
            sys.executable, "-m", "pipeline", "train", "--train-shards", str(tr), "--val-shards", str(va),
            "--out-dir", str(out), "--settings",
            '{"model": {"preset": "demo", "hidden_features": 16}, "train": {"epochs": 12, "batch_size": 2, "seed": 3}}',
            "--no-progress", "--device", "cpu", "--threads", "1",
        ]  # fmt: skip

    subprocess.run(cmd(tmp_path / "a"), check=True, capture_output=True)
    proc = subprocess.Popen(cmd(tmp_path / "b"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "b" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere inside a later epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "model.pt").exists(), (
        "the run finished before it was killed; nothing was tested"
    )
    subprocess.run(cmd(tmp_path / "b"), check=True, capture_output=True)
    a, b = state(tmp_path / "a/model.pt")["state_dict"], state(tmp_path / "b/model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_refuses_unlabelled_validation_shards(tmp_path, capsys):
    items = strained_crystals(4)
    tr = write_split(tmp_path / "t.h5", items)
    pool = tmp_path / "pool.h5"
    write_shard(pool, [i for i, _, _ in items], [g for _, g, _ in items], None)
    assert main(["--train-shards", str(tr), "--val-shards", str(pool), "--out-dir", str(tmp_path / "o")]) == 1
    assert "no targets" in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.pt").exists()
