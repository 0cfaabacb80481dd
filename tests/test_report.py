"""The Snakemake report as a user sees it: the rules declare every figure and table with a caption, category and
label and name a landing text; the report stage writes the data-set figure (paper Fig. 2), learning curves, the
metrics table and a description that renders; the figures keep legends off their numbers, label their axes, show
whole counts and no empty panels. `pytest -m slow` runs the demo workflow, builds the report and renders it in
headless Chromium (report/render.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import jinja2
import matplotlib
import numpy as np
import pandas as pd
import pytest
from docutils.core import publish_parts

matplotlib.use("Agg")

from pipeline.grid import FREQ_CM  # noqa: E402
from pipeline.reports import figures as report  # noqa: E402
from pipeline.stages import report as report_stage  # noqa: E402
from tests.helpers import evaluate_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _html(rst: str) -> str:
    """reStructuredText -> HTML as Snakemake renders captions; a docutils warning (level 2) is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # writer_name, which Snakemake uses too
        return publish_parts(rst, writer_name="html", settings_overrides={"halt_level": 2})["html_body"]


# ------------------------------------------------------------------------------ what the rules declare --------
@contextlib.contextmanager
def _workflow(configfile: str):
    """The parsed workflow (Snakemake's API), as `snakemake --configfile CONFIGFILE` sees it."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[REPO / configfile]),
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )
        yield wf._workflow


@pytest.mark.parametrize("configfile", ["config/demo.yaml", "config/shared_accuracy.yaml"])
def test_every_report_item_has_a_caption_a_category_and_a_label(configfile):
    with _workflow(configfile) as workflow:
        items = {
            str(out): (rule.name, out.flags["report"])
            for rule in workflow.rules
            for out in rule.output
            if out.flags.get("report") is not None
        }
        rules = {name for name, _ in items.values()}
        assert {"report", "screen_pool"} <= rules
        if configfile.endswith("shared_accuracy.yaml"):
            assert "crossval" in rules  # the cross-validation page
        for path, (rule, flag) in items.items():
            caption = Path(flag.caption.get_path_or_uri(secret_free=True))
            assert caption.exists() and caption.read_text().strip(), f"{path}: caption {caption} missing"
            assert flag.category, f"{path}: no category"
            # the report's list shows these labels instead of file paths; two labels: it would turn one with two
            # values into a show/hide toggle
            assert flag.labels and all(flag.labels.values()), f"{path} ({rule}): no label"
            assert len(flag.labels) == 1, f"{path} ({rule}): {flag.labels}"
        figures = {Path(p).name for p, (rule, _) in items.items() if rule == "report"}
        assert {f"{name}.png" for name in report.FIGURES_ALL} | {"metrics.html"} == figures
        # the landing text: this run's description.rst (an output of the report rule) once it exists,
        # report/workflow.rst before
        description = workflow.get_rule("report").output.description
        assert description.endswith("reports/description.rst")
        landing = Path(workflow.report_text.get_path_or_uri(secret_free=True))
        expected = Path(description).resolve() if Path(description).exists() else REPO / "report/workflow.rst"
        assert landing.resolve() == expected.resolve()


def test_placeholder_description_renders_with_the_config():
    text = (REPO / "report/workflow.rst").read_text()
    config = {
        "results_dir": "results/x",
        "source": "local",
        "dos_source": "leaderboard",
        "split": {"method": "official"},
        "model": {"preset": "demo"},
        "train": {"ensemble": 3},
    }

    class Snakemake:
        pass

    Snakemake.config = config
    rendered = jinja2.Template(text, undefined=jinja2.StrictUndefined).render(snakemake=Snakemake)
    html = _html(rendered)
    assert "results/x/reports/description.rst" in html and "3 seed member(s)" in html


# ------------------------------------------------------------------------------ inputs for the figures ---------
def _spectrum(centre: float, width: float = 60.0) -> np.ndarray:
    s = np.exp(-0.5 * ((FREQ_CM - centre) / width) ** 2)
    return (s / s.max()).astype(np.float32)


@pytest.fixture
def stage_inputs(tmp_path) -> dict[str, Path]:
    """Outputs of dos, train, predict and evaluate as the report stage reads them (12 test materials)."""
    rng = np.random.default_rng(0)
    n = 12
    jids = [f"T-{i}" for i in range(n)]
    elements = [["Si"], ["Ga", "As"], ["Na", "Cl"], ["Mg", "O"], ["Ti", "O"], ["Sr", "Ti", "O"]]
    systems = ["cubic", "hexagonal", "tetragonal"]
    dataset = pd.DataFrame(
        {
            "jid": [f"TR-{i}" for i in range(30)] + jids,
            "split": ["train"] * 30 + ["test"] * n,
            "dos": [_spectrum(150 + 20 * i) for i in range(30 + n)],
            "elements": [elements[i % len(elements)] for i in range(30 + n)],
            "n_elements": [len(elements[i % len(elements)]) for i in range(30 + n)],
            "crystal_system": [systems[i % 3] for i in range(30 + n)],
            "volume_per_atom": rng.uniform(8, 30, 30 + n),
        }
    )
    # MAEs in two clusters: most histogram bins stay empty
    mae = np.r_[rng.uniform(0.02, 0.04, n - 2), [0.20, 0.21]]
    predictions = pd.DataFrame(
        {"jid": jids, "dos_pred": [_spectrum(150 + 20 * (30 + i) + 400 * m) for i, m in enumerate(mae)]}
    )
    dup = np.arange(n) < 3
    spectral = pd.DataFrame(
        {
            "jid": jids,
            "mae": mae,
            "nearest_train_mae": np.where(dup, 0.004, rng.uniform(0.012, 0.25, n)),
            "near_duplicate": dup,
            "volume_per_atom": rng.uniform(8, 30, n),
            "n_elements": [1, 2, 3] * 4,
            "crystal_system": [systems[i % 3] for i in range(n)],
        }
    )
    cv = rng.uniform(20, 100, n)
    s = rng.uniform(20, 120, n)
    tau = rng.uniform(0, 50, n)
    thermal = pd.DataFrame(
        {
            "jid": jids,
            "near_duplicate": dup,
            "stable_both": True,
            "cv_300k_dft": cv,
            "cv_300k_pred": cv * rng.normal(1, 0.1, n),
            "s_vib_300k_dft": s,
            "s_vib_300k_pred": s * rng.normal(1, 0.1, n),
            "tau_iso_inv_dft": tau,
            "tau_iso_inv_pred": tau * rng.normal(1, 0.2, n),
            "cv_debye_fractions": [[0.25, 0.5, 1.0]] * n,
            "cv_at_fraction_dft": [[5.0, 12.0, 20.0]] * n,
            "cv_at_fraction_pred": [[5.5, 11.0, 21.0]] * n,
        }
    )
    rows = []
    for subset, count in (("all", n), ("non_duplicate", n - 3), ("near_duplicate", 3)):
        for q, metric, value in [
            ("spectrum", "mae", 0.0456),
            ("cv_300k", "mae", 3.3),
            ("cv_300k", "mae_mad", 0.108),
            ("cv_300k", "r2", 0.97),
            ("s_vib_300k", "mae", 12.8),
            ("s_vib_300k", "mae_mad", 0.254),
            ("s_vib_300k", "r2", 0.9),
            ("tau_iso_inv", "mae_mad", 0.4),
            ("stability", "accuracy", 0.865),
            *[("stability", k, v) for k, v in (("tp", 9), ("fn", 1), ("fp", 1), ("tn", 1))],
            ("stability", "precision", 0.9),
            ("stability", "recall", 0.9),
            *[(f"cv_{f}_debye", "mae", 1.0 + f) for f in (0.25, 0.5, 1)],
        ]:
            rows.append((subset, "alignn_dos", q, metric, value, count))
    for method in ("debye", "born_von_karman"):
        rows += [("has_sound_velocity", method, q, "mae_mad", 0.2, 5) for q in ("cv_300k", "s_vib_300k")]
    rows.append(("all", "debye", "sound_velocity", "n_missing", 7.0, n))
    metrics = pd.DataFrame(rows, columns=["subset", "method", "quantity", "metric", "value", "n"])
    history = pd.DataFrame(
        [
            {
                "member": m,
                "epoch": e,
                "train_loss": 0.3 / e,
                "val_loss": 0.05,
                "val_mae": 0.1 - 0.002 * min(e, 12 + m) + 0.0005 * max(0, e - 12 - m),
                "lr": 1e-3,
                "seconds": 1.0,
                "graphs_per_s": 100.0,
                "is_best": e <= 12 + m,
            }
            for m in range(2)
            for e in range(1, 21)
        ]
    )
    out = {"reports": tmp_path / "reports"}
    out["reports"].mkdir()
    for name, df in (("spectral", spectral), ("thermal", thermal), ("metrics", metrics)):
        df.to_parquet(out["reports"] / f"{name}.parquet")
    for name, df in (("dataset", dataset), ("predictions", predictions), ("history", history)):
        out[name] = tmp_path / f"{name}.parquet"
        df.to_parquet(out[name])
    pd.DataFrame({"jid": ["P-1", "P-2"]}).to_parquet(tmp_path / "pool.parquet")
    out["pool"] = tmp_path / "pool.parquet"
    return out


def _frames(inputs):
    r = inputs["reports"]
    return (
        pd.read_parquet(r / "spectral.parquet"),
        pd.read_parquet(r / "thermal.parquet"),
        pd.read_parquet(r / "metrics.parquet"),
    )


def _is_whole(ticks) -> bool:
    return bool(np.allclose(ticks, np.round(ticks)))


# ------------------------------------------------------------------------------ the figures ----------------------
def test_parity_legend_covers_no_metric_text(stage_inputs):
    spectral, thermal, metrics = _frames(stage_inputs)
    fig = report.parity_figure(thermal.assign(near_duplicate=spectral["near_duplicate"]), metrics)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [fig.legends[0].get_window_extent(renderer)] + [
        a.get_legend().get_window_extent(renderer) for a in fig.axes if a.get_legend()
    ]
    texts = [t.get_window_extent(renderer) for a in fig.axes for t in a.texts]
    assert len(texts) == 4 and "MAE:MAD" in fig.axes[0].texts[0].get_text()
    assert not any(leg.overlaps(t) for leg in legends for t in texts)


def test_mae_histogram_has_no_empty_panels_labelled_spectra_and_whole_counts(stage_inputs):
    spectral, _, _ = _frames(stage_inputs)
    spectra = pd.read_parquet(stage_inputs["dataset"], columns=["jid", "dos"]).merge(
        pd.read_parquet(stage_inputs["predictions"]), on="jid"
    )
    fig = report.mae_histogram_figure(spectral, spectra, seed=0)
    hist, *examples = fig.axes
    edges = np.linspace(spectral["mae"].min(), spectral["mae"].max() * (1 + 1e-9), 16)
    filled = int((np.histogram(spectral["mae"], bins=edges)[0] > 0).sum())
    assert 2 <= filled < 8 and len(examples) == filled  # one panel per filled bin, none for the empty ones
    assert not [t for a in fig.axes for t in a.texts if "empty" in t.get_text()]
    assert all(len(a.lines) == 2 for a in examples)  # DFT and predicted spectrum
    assert examples[0].get_ylabel() == "DOS (max-normalised)"
    assert all(a.get_ylabel() for a in examples[::4]) and all(a.get_xlabel() for a in examples)
    assert _is_whole(hist.get_yticks())


def _overlapping_tick_labels(ax, renderer) -> list[tuple[str, str]]:
    labels = [
        t for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True) if t.get_visible() and t.get_text()
    ]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1 :] if ba.overlaps(bb)]


@pytest.mark.parametrize("span", [(0.012, 0.25), (1e-4, 0.6), (0.02, 0.05)])
def test_leakage_log_axes_have_readable_ticks_and_whole_counts(stage_inputs, span):
    spectral, _, _ = _frames(stage_inputs)
    spectral["nearest_train_mae"] = np.geomspace(*span, len(spectral))
    fig = report.leakage_figure(spectral, evaluate_settings().duplicate_mae)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        assert not _overlapping_tick_labels(ax, renderer), [t.get_text() for t in ax.get_xticklabels()]
        assert sum(bool(t.get_text()) for t in ax.get_xticklabels()) >= 2  # at least two numbers to read
    assert _is_whole(fig.axes[0].get_yticks())


def test_the_leakage_figure_marks_the_threshold_it_is_given(stage_inputs):
    """The line is evaluate.duplicate_mae as the report stage gets it (rules/report.smk), not a constant."""
    spectral, _, _ = _frames(stage_inputs)
    spectral["nearest_train_mae"] = np.geomspace(1e-3, 0.3, len(spectral))
    hist = report.leakage_figure(spectral, 0.05).axes[0]
    (line,) = hist.lines
    assert list(line.get_xdata()) == [0.05, 0.05] and line.get_label() == "duplicate threshold 0.05"


def test_periodic_table_positions():
    pos = {s: report.table_position(z) for z, s in enumerate(report.SYMBOLS, start=1)}
    assert len(report.SYMBOLS) == 118 and len(set(pos.values())) == 118
    assert pos["H"] == (0, 0) and pos["He"] == (0, 17) and pos["O"] == (1, 15) and pos["Ar"] == (2, 17)
    assert pos["K"] == (3, 0) and pos["Fe"] == (3, 7) and pos["Xe"] == (4, 17)
    assert pos["La"] == (8, 2) and pos["Lu"] == (8, 16) and pos["Hf"] == (5, 3) and pos["Rn"] == (5, 17)
    assert pos["Ac"] == (9, 2) and pos["Lr"] == (9, 16) and pos["Rf"] == (6, 3) and pos["Og"] == (6, 17)


def test_dataset_figure_is_paper_fig2_of_the_training_split(stage_inputs):
    ds = pd.read_parquet(stage_inputs["dataset"])
    counts = report.element_counts(ds[ds["split"] == "train"]["elements"])
    assert counts["O"] == 15 and counts["Si"] == 5  # 30 training materials, each element counted once
    fig = report.dataset_figure(ds)
    table, cbar, *panels = fig.axes
    assert "30 materials (train split" in fig._suptitle.get_text()
    shown = {t.get_text(): t for t in table.texts}
    assert {"O", "Si", "Og"} <= set(shown) and "15" in shown  # every element drawn, counts on those present
    assert [p.get_xlabel() for p in panels] == [
        "number of elements",
        "crystal system",
        "volume per atom (Å$^3$)",
    ]
    assert all(_is_whole(p.get_yticks()) for p in panels)
    assert sum(b.get_height() for b in panels[0].patches) == 30


def test_learning_curves_show_every_member_and_its_kept_epoch(stage_inputs):
    history = pd.read_parquet(stage_inputs["history"])
    fig = report.learning_curves_figure(history)
    loss, val = fig.axes
    assert len(loss.lines) == 2 and len(val.lines) == 4  # two members; val: curve + star each
    stars = [line for line in val.lines if line.get_marker() == "*"]
    assert [int(s.get_xdata()[0]) for s in stars] == [12, 13]  # the last is_best epoch of each member
    assert _is_whole(loss.get_xticks())


# ------------------------------------------------------------------------------ tables, description, stage ------
def test_metrics_table_and_description(stage_inputs):
    _, _, metrics = _frames(stage_inputs)
    head = report.headline_table(metrics)
    assert list(head["subset"]) == ["all", "non_duplicate", "near_duplicate"]
    assert head.loc[0, "spectral MAE"] == "0.0456" and head.loc[0, "C_V MAE:MAD"] == "0.108"
    html = report.metrics_html(metrics, "test")
    assert html.count("<table>") == 3 and "0.254" in html and "Born-von Kármán" in html
    ds = pd.read_parquet(stage_inputs["dataset"])
    history = pd.read_parquet(stage_inputs["history"])
    run = {"source": "local", "local_path": "x.json", "split_method": "official", "preset": "demo"}
    text = report.description_rst(run, ds, 2, history, metrics, "results/train/model.pt", split="test")
    assert (
        jinja2.Template(text, keep_trailing_newline=True).render() == text
    )  # Snakemake renders it with Jinja
    html = _html(text)
    for words in ("What ran", "30 train, 0 val, 12 test", "2 structures without a DOS", "0.0456", "0.108"):
        assert words in html, words
    assert "2 ALIGNN member(s)" in html and "0.0760 (epoch 12)" in html and "smoke test" in html


def test_description_quotes_the_card_of_a_packed_model_and_warns_of_a_foreign_split(stage_inputs, tmp_path):
    _, _, metrics = _frames(stage_inputs)
    ds = pd.read_parquet(stage_inputs["dataset"])
    model = tmp_path / "packed.pt"
    model.write_bytes(b"")
    model.with_suffix(".md").write_text(
        "# card\n\n## Test metrics (185 ids)\n\n| subset | spectral MAE | C_V MAE:MAD | unstable recall |\n"
        "|---|---|---|---|\n| all (185) | 0.0693 | 0.108 | 0.00 |\n\n## What it is not good for\n"
    )
    for split, words in (("official", "no test material of this run"), ("random", "Caution")):
        run = {"split_method": split, "preset": "demo"}
        text = report.description_rst(run, ds, None, None, metrics, str(model), split="test")
        html = _html(text)
        assert "packed.pt" in html and "0.0693" in html and "unstable recall" not in html and words in html


def test_stage_writes_every_output_and_only_the_data_ones_without_predictions(stage_inputs, tmp_path):
    i = stage_inputs
    argv = ["--dataset", str(i["dataset"]), "--pool", str(i["pool"]), "--history", str(i["history"])]
    argv += [
        "--out-dir",
        str(tmp_path / "a"),
        "--description",
        str(tmp_path / "a.rst"),
        "--run",
        json.dumps({}),
    ]
    assert (
        report_stage.main([*argv, "--predictions", str(i["predictions"]), "--reports-dir", str(i["reports"])])
        == 0
    )
    written = {p.name for p in (tmp_path / "a").iterdir()}
    assert written == {f"{n}.png" for n in report.FIGURES_ALL} | {"metrics.html"}
    assert "Headline metrics" in (tmp_path / "a.rst").read_text()
    shutil.rmtree(tmp_path / "a")
    assert report_stage.main(argv) == 0
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"dataset.png", "learning_curves.png"}
    assert "No predictions were evaluated" in (tmp_path / "a.rst").read_text()


# ------------------------------------------------------------------------------ rendered, as a user sees it ------
@pytest.mark.slow
def test_demo_report_renders_in_headless_chromium(tmp_path):
    """The demo workflow (minutes), its report, and every page of it rendered by report/render.py: the landing
    page carries the description, each page draws (a page that fails in the report's JavaScript is blank)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    from PIL import Image

    bin_dir = Path(sys.executable).parent  # the jobs' `python` is this environment's
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    work = tmp_path / "work"  # its own .snakemake/, not the repository's
    work.mkdir()
    for name in ("data", "config.yaml"):  # read relative to the working directory
        (work / name).symlink_to(REPO / name)
    base = [str(bin_dir / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", "2"]
    base += ["--configfile", str(REPO / "config/demo.yaml")]
    r = subprocess.run(base, cwd=work, env=env, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    html = tmp_path / "report.html"
    r = subprocess.run(
        [*base, "--report", str(html)], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    text = html.read_text()
    assert "Headline metrics (test split)" in text and "dos-cpu_small-x5.pt" in text
    out = tmp_path / "png"
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "report/render.py"),
            str(html),
            "--out",
            str(out),
            "--chromium",
            chromium,
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    pages = {p.stem: p for p in out.glob("*.png")}
    expected = {"landing", "category-data_set", "category-training", "category-metrics", "category-spectra"}
    assert expected | {"result-figures-dataset", "result-figures-metrics", "result-figures-parity"} <= set(
        pages
    )
    for name, path in pages.items():
        pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
        assert pixels.std() > 10, f"{name} is blank"
