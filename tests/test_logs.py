"""What a stage writes into its log file (every rule runs `python -m pipeline STAGE ... > {log} 2>&1`): each
stderr line starts with a timestamp, no progress bar (a bar is drawn only on a terminal), the summary once."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import TimestampedStream
from pipeline.data import fetch
from pipeline.data.demo_data import records as demo_records
from pipeline.grid import FREQ_CM

REPO = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def test_timestamped_stream_stamps_every_line_once():
    buf = io.StringIO()
    s = TimestampedStream(buf)
    print("one", file=s)  # print writes "one" and "\n" separately
    s.write("two\nthree")
    s.write(" continued\n")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3 and all(STAMP.match(line) for line in lines)
    assert [STAMP.sub("", line) for line in lines] == ["one", "two", "three continued"]


@pytest.fixture(scope="module")
def fetch_dir(tmp_path_factory) -> Path:
    """A small fetch-stage output: 6 demo structures with a spectrum each."""
    out = tmp_path_factory.mktemp("fetch")
    recs = demo_records()[:6]
    structures, _ = fetch.structures_from_records(recs, "test")
    import pyarrow.parquet as pq

    pq.write_table(structures, out / "structures.parquet")
    spectra = [
        {
            "jid": r["jid"],
            "frequencies": FREQ_CM.tolist(),
            "values": [max(0.0, 1 - abs(f - 200 - 40 * i) / 150) for f in FREQ_CM],
            "unit": "cm-1",
            "official_split": None,
            "dos_source": "test",
        }
        for i, r in enumerate(recs)
    ]
    pd.DataFrame(spectra).to_parquet(out / "dos_raw.parquet")
    return out


def _dos_argv(fetch_dir: Path, out: Path) -> list[str]:
    return [
        *[sys.executable, "-m", "pipeline", "dos", "--fetch-dir", str(fetch_dir), "--out-dir", str(out)],
        *["--set", "split.method=random", "--set", "split.fractions=[0.5, 0.5, 0]"],
    ]


def _as_a_rule(argv: list[str], log: Path) -> str:
    with open(log, "w") as fh:  # as a rule runs it: stdout and stderr into one file
        r = subprocess.run(argv, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert r.returncode == 0, text
    return text


def test_stage_logs_have_no_progress_bar_one_summary_and_timestamps(fetch_dir, tmp_path):
    text = _as_a_rule(_dos_argv(fetch_dir, tmp_path / "dos"), tmp_path / "dos.log")
    assert "\r" not in text and "re-bin" not in text and "metadata:" not in text  # the dos stage's two bars
    assert text.count('"labelled": 6') == 1, text  # the summary, once (JSON on stdout)
    # a stage that reports on stderr: every line of it is timestamped
    argv = [
        sys.executable,
        "-m",
        "pipeline",
        "properties",
        "--dataset",
        str(tmp_path / "dos/dataset.parquet"),
    ]
    argv += ["--out", str(tmp_path / "p.parquet"), "--rejects", str(tmp_path / "r.parquet")]
    text = _as_a_rule(argv, tmp_path / "properties.log")
    lines = text.splitlines()
    assert any("properties: 6 DFT spectra" in line for line in lines), text
    assert lines and all(STAMP.match(line) for line in lines), text


def test_progress_bar_still_drawn_on_a_terminal(fetch_dir, tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen(
        _dos_argv(fetch_dir, tmp_path / "dos"),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=os.environ,
    )
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    assert b"re-bin" in seen and not STAMP.match(seen.decode(errors="replace"))  # a bar, no timestamps
