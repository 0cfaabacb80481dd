"""The shipped model's tools: package a trained ensemble, write its model card, record its training elements, keep
the reference predictions the tests check.

    # 1. the model file: float16 weights, input provenance, training elements, data fingerprint, training config
    python -m pipeline.stages.pretrained pack --model results/shared_accuracy/train/model.pt \\
        --dataset results/shared_accuracy/dos/dataset.parquet --config config/shared_accuracy.yaml \\
        --out pipeline/nn/models/dos-cpu_small-x5.pt
    # 2. score the packed file like any model (predict -> properties -> evaluate stages on the test shard), then
    python -m pipeline.stages.pretrained card --model pipeline/nn/models/dos-cpu_small-x5.pt \\
        --metrics results/ship/reports/metrics.parquet [--accuracy results/shared_accuracy/accuracy.json]
    # 3. the shipped model's predictions for data/examples/*.cif -> tests/data/shipped_model_expected.json, which
    #    tests/test_screen.py checks the model still reproduces (rerun whenever the shipped model is refreshed)
    python -m pipeline.stages.pretrained expected [--model MODEL.pt] [--out tests/data/shipped_model_expected.json]

    # separately trained stability models (benchmarks/stability_direct.py --members N) as the members' stability
    # trunks (model.stability_head: separate), before packing; the target scale comes from the training split
    python -m pipeline.stages.pretrained attach-stability --model results/property_loss/train/model.pt \
        --stability results/stability_direct_x5/member-*/model.pt \
        --properties results/property_loss/properties/properties.parquet \
        --train-shards results/property_loss/graphs/train/shard-0.h5 --out results/property_loss/with_stability.pt

    # any model file: <model>.train.json, the elements of its training set (for screen's unseen_elements)
    python -m pipeline.stages.pretrained elements --dataset results/dos/dataset.parquet [--model MODEL.pt]
    # a copy of a model file with float16 weights (half the size)
    python -m pipeline.stages.pretrained half IN.pt OUT.pt

``--model`` defaults to the shipped model (pipeline/nn/models/dos-cpu_small-x5.pt). Library: pipeline.nn.modelcard
(pack, card), pipeline.nn.pretrained (elements, half), pipeline.screening.screen (expected: screening with the
schema's default settings).
"""

from __future__ import annotations

import argparse
import sys

from pipeline.nn.pretrained import default_model_path


def build_parser() -> argparse.ArgumentParser:
    from pipeline.screening.screen import EXPECTED_FILE

    p = argparse.ArgumentParser(
        prog="python -m pipeline.stages.pretrained",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack", help="write the shipped model file from a trained model.pt")
    a.add_argument("--model", required=True, help="model.pt of the ensemble (or train) stage")
    a.add_argument("--dataset", required=True, help="dos/dataset.parquet the model was trained on")
    a.add_argument("--config", required=True, help="the pipeline config it was trained with")
    a.add_argument(
        "--out", required=True, help="packed model file, e.g. pipeline/nn/models/dos-cpu_small-x5.pt"
    )
    c = sub.add_parser("card", help="write <model>.md from the evaluate stage's metrics of the packed model")
    c.add_argument("--model", required=True, help="the packed model file")
    c.add_argument("--metrics", required=True, help="reports/metrics.parquet of the evaluate stage")
    c.add_argument(
        "--accuracy", default=None, help="accuracy.json of benchmarks/accuracy_shared.py (optional)"
    )
    c.add_argument("--note", action="append", default=[], help="a line for the training section (repeatable)")
    s = sub.add_parser(
        "attach-stability",
        help="add separately trained stability models to an ensemble as its stability trunks",
    )
    s.add_argument("--model", required=True, help="the DOS ensemble's model.pt")
    s.add_argument(
        "--stability", nargs="+", required=True, help="one direct negative-fraction model.pt per member"
    )
    s.add_argument("--properties", required=True, help="properties.parquet with the DFT negative fractions")
    s.add_argument(
        "--train-shards", nargs="+", required=True, help="the training shards the models were fit on"
    )
    s.add_argument("--out", required=True, help="the combined model file")
    e = sub.add_parser("elements", help="write <model>.train.json: the training set's elements")
    e.add_argument("--dataset", required=True, help="MATERIALS table the model was trained on")
    e.add_argument("--model", default=str(default_model_path()))
    e.add_argument("--splits", nargs="+", default=["train"], help="splits the model was trained on")
    x = sub.add_parser("expected", help=f"write {EXPECTED_FILE}: the shipped model's example predictions")
    x.add_argument("--model", default=str(default_model_path()))
    x.add_argument("--out", default=str(EXPECTED_FILE))
    h = sub.add_parser("half", help="copy a model file with float16 weights")
    h.add_argument("src")
    h.add_argument("dst")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.command == "pack":
        from pipeline.nn.modelcard import pack

        pack(a.model, a.dataset, a.config, a.out)
        out = a.out
    elif a.command == "card":
        from pipeline.nn.modelcard import write_card

        out = write_card(a.model, a.metrics, a.accuracy, a.note)
    elif a.command == "attach-stability":
        from pipeline.nn.baselines import training_scale
        from pipeline.nn.ensemble import attach_stability
        from pipeline.nn.modelfile import ModelFileError

        try:
            mean, std = training_scale(a.properties, a.train_shards, "negative_fraction")
            attach_stability(a.model, a.stability, mean, std, a.out)
        except (ValueError, ModelFileError, FileNotFoundError) as e:  # wrong files: say which, no traceback
            print(f"attach-stability: error: {e}", file=sys.stderr)
            return 2
        out = a.out
    elif a.command == "elements":
        from pipeline.nn.pretrained import write_sidecar

        out = write_sidecar(a.model, a.dataset, tuple(a.splits))
    elif a.command == "expected":
        from pipeline.screening.screen import write_expected

        out = write_expected(a.model, a.out)
    else:
        from pipeline.nn.pretrained import half_precision_copy

        out = half_precision_copy(a.src, a.dst)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
