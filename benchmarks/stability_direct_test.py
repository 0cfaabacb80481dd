"""Score the separate stability model of ``benchmarks/stability_direct.py`` once on the official test ids, with the
threshold chosen on validation (``thresholds_meeting_both_targets_on_val`` of its JSON). Loads the trained members
(no training), predicts the test shard, de-standardises with the training mean/std as
``pipeline.nn.baselines.train_direct_model`` does, and writes ``benchmarks/results/stability_direct_test.json``.

    python benchmarks/stability_direct_test.py --run results/property_loss --work results/stability_direct_x5 \\
        --choice benchmarks/results/stability_direct_x5.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from pipeline.config import schema_node  # noqa: E402
from pipeline.nn.baselines import PREDICT_BATCH, _read_records, _with_scalar_targets  # noqa: E402
from pipeline.nn.inference import load_model, predict_batches  # noqa: E402
from pipeline.nn.train import InMemoryGraphs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=Path("results/property_loss"))
    p.add_argument("--work", type=Path, default=Path("results/stability_direct_x5"))
    p.add_argument("--choice", type=Path, default=Path("benchmarks/results/stability_direct_x5.json"))
    p.add_argument(
        "--split", default="test", choices=["test", "val"], help="val: check against the choice's sweep"
    )
    a = p.parse_args(argv)
    choice = json.loads(a.choice.read_text())["results"]
    threshold = choice["thresholds_meeting_both_targets_on_val"][0]
    props = pd.read_parquet(
        a.run / "properties/properties.parquet", columns=["jid", "source", "negative_fraction"]
    )
    dft = props[props["source"] == "dft"].drop_duplicates("jid").set_index("jid")["negative_fraction"]
    train = _with_scalar_targets(
        _read_records([str(a.run / "graphs/train/shard-0.h5")]), dft.to_dict(), 0.0, 1.0
    )
    y = np.array([r.target[0] for r in train], dtype=np.float64)
    mean, std = float(y.mean()), float(y.std() or 1.0)
    test = InMemoryGraphs(
        [r._replace(target=None) for r in _read_records([str(a.run / f"graphs/{a.split}/shard-0.h5")])]
    )
    members = sorted(a.work.glob("member-*/model.pt"))
    preds = []
    for path in members:
        model = load_model(path, torch.device("cpu"))
        ids, out = predict_batches(
            model, test.epoch_batches(PREDICT_BATCH, None), torch.device("cpu"), "fp32"
        )
        preds.append(pd.Series(out[:, 0].astype(np.float64) * std + mean, index=ids))
    pred = np.clip(pd.concat(preds, axis=1).mean(axis=1), 0, None)
    ids = [j for j in pred.index if j in dft.index]
    unstable = float(schema_node("properties.unstable_fraction")["default"])
    truth, called = dft.loc[ids].to_numpy() > unstable, pred.loc[ids].to_numpy() > threshold
    result = {
        "what": "the separate stability model (benchmarks/stability_direct.py), scored once on the test ids",
        "members": len(members),
        "threshold_chosen_on_val": threshold,
        "n_test": len(ids),
        "n_test_unstable": int(truth.sum()),
        "test_stability_accuracy": float((called == truth).mean()),
        "test_unstable_recall": float((called & truth).sum() / max(truth.sum(), 1)),
        "test_unstable_precision": float((called & truth).sum() / max(called.sum(), 1)),
        "targets": {"accuracy": 0.88, "recall": 0.4},
    }
    if a.split == "val":  # the loaded members reproduce the validation sweep the threshold was chosen on
        print(json.dumps(result, indent=1))
        return 0
    out = write_result("stability_direct_test", result)
    print(json.dumps(result, indent=1), "->", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
