"""Atomic writes: temporaries name their writer; those of killed writers are removed when the output is written
again, while live writers' temporaries (same output or not) and other outputs' temporaries are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.data.shards import write_shard
from pipeline.io import STALE_TEMP_SECONDS, _host, atomic_path, remove_stale_temporaries, write_parquet
from pipeline.nn import predict
from pipeline.nn.model import ALIGNN, ModelConfig
from pipeline.stages import predict as predict_stage
from tests.helpers import rocksalt_crystals, save_model

REPO = Path(__file__).resolve().parents[1]
#: enters atomic_path(argv[1]), writes argv[2] into the temporary, prints its path, then (argv[3]) SIGKILLs itself
#: or waits for stdin to close (a live writer)
WRITER = """
import os, sys
from pipeline.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(sys.argv[2].encode())
    print(tmp, flush=True)
    if sys.argv[3] == "kill":
        os.kill(os.getpid(), 9)
    sys.stdin.read()
"""


def killed_writer(out: Path, content: str = "") -> Path:
    """Run a writer of ``out`` that is SIGKILLed inside atomic_path; return the temporary it left behind."""
    proc = subprocess.run(
        [sys.executable, "-c", WRITER, str(out), content, "kill"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == -9, proc.stderr
    tmp = Path(proc.stdout.strip())
    assert tmp.exists() and tmp.parent == out.parent and tmp.name.startswith(f".{out.name}.")
    return tmp


def test_killed_writers_temporary_is_removed_by_the_rerun_and_the_output_is_complete(tmp_path, capsys):
    out = tmp_path / "table.parquet"
    empty = killed_writer(out)
    assert empty.stat().st_size == 0
    partial = killed_writer(out, "PAR1 half a footer")  # the next writer of the output removes the dead one's
    assert not empty.exists() and partial.stat().st_size > 0 and not out.exists()
    df = pd.DataFrame({"jid": [f"JVASP-{i}" for i in range(5)], "x": np.arange(5.0)})
    write_parquet(df, out)
    assert not empty.exists() and not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)
    assert f"removed stale temporary {partial} (its writer is gone)" in capsys.readouterr().err


def test_a_stage_rerun_cleans_its_outputs_temporaries(tmp_path):
    torch.manual_seed(0)
    model = save_model(
        tmp_path / "model.pt",
        ALIGNN(ModelConfig.from_config({"alignn_layers": 1, "gcn_layers": 0, "hidden_features": 8})),
    )
    ids, graphs = rocksalt_crystals(3)
    write_shard(tmp_path / "s.h5", ids, graphs, None)
    out = tmp_path / "pred" / "shard-0.parquet"
    out.parent.mkdir()
    leftovers = [killed_writer(out), killed_writer(predict.rejects_path(out))]
    argv = [
        "shard",
        "--model",
        str(model),
        "--shard",
        str(tmp_path / "s.h5"),
        "--split",
        "pool",
        "--out",
        str(out),
    ]
    assert predict_stage.main(argv + ["--no-progress", "--device", "cpu"]) == 0
    assert not any(p.exists() for p in leftovers)
    assert pd.read_parquet(out).jid.tolist() == ids
    assert sorted(p.name for p in out.parent.iterdir()) == ["shard-0.parquet", "shard-0.rejects.parquet"]


def test_live_writers_and_other_outputs_temporaries_are_left_alone(tmp_path):
    out = tmp_path / "a.parquet"
    live = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out), "from the live writer", "wait"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        live_tmp = Path(live.stdout.readline().strip())
        assert live_tmp.exists()
        other_output = killed_writer(tmp_path / "a.parquet.x")  # dead writer, but of another output
        with atomic_path(out) as tmp:  # a second writer of the same output while the first is alive
            tmp.write_text("second")
        with atomic_path(tmp_path / "b.parquet") as tmp:
            tmp.write_text("b")
        assert live_tmp.exists() and other_output.exists()
        assert remove_stale_temporaries(out) == []
    finally:
        live.stdin.close()
        assert live.wait(timeout=60) == 0
    assert out.read_text() == "from the live writer" and not live_tmp.exists()


@pytest.mark.parametrize(
    ("writer", "age", "removed"),
    [
        ("abcd1234", STALE_TEMP_SECONDS + 60, True),  # naming from before temporaries named their writer
        ("abcd1234", 60, False),
        ("otherhost.123.abcd1234", STALE_TEMP_SECONDS + 60, True),  # another host's: pid cannot be checked
        ("otherhost.123.abcd1234", 60, False),
    ],
)
def test_temporaries_whose_writer_cannot_be_checked_go_by_age(tmp_path, writer, age, removed):
    assert _host() != "otherhost"
    out = tmp_path / "o.parquet"
    tmp = tmp_path / f".o.parquet.{writer}.tmp"
    tmp.write_bytes(b"")
    os.utime(tmp, (time.time() - age, time.time() - age))
    assert remove_stale_temporaries(out) == ([tmp] if removed else [])
    assert tmp.exists() is not removed
