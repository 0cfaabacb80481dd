# report: what `snakemake --report report.html` shows -> results/reports/figures/ (PNG figures and metrics.html,
# registered with report(), captions in report/*.rst, labelled) and results/reports/description.rst, the report's
# landing text (what ran, data, model and its card, headline metrics), named by the `report:` directive below.
import json
import shlex

#: evaluation figures (need predictions): name -> (category, label)
REPORT_FIGURES = {
    "parity": (
        "Derived properties",
        "DFT vs predicted C_V, S_vib, tau^-1 (paper Fig. 7)",
    ),
    "cv_mae_vs_debye": ("Derived properties", "C_V MAE vs T/T_D (paper Fig. 7e)"),
    "mae_histogram": (
        "Spectra",
        "spectral MAE histogram with examples (paper Fig. 5a)",
    ),
    "mae_descriptors": ("Spectra", "spectral MAE vs descriptors (paper Fig. 5b-d)"),
    "confusion": ("Stability", "stability confusion matrix (paper Fig. 6)"),
    "leakage": ("Leakage", "near-duplicate spectra in train+val"),
    "baselines": ("Baselines", "MAE:MAD vs Debye, BvK, direct ALIGNN (paper Fig. 8)"),
}
#: figures of every run: name -> (category, label). One label per entry: with two, the report turns a label with two
#: values into a show/hide toggle.
OVERVIEW_FIGURES = {
    "dataset": ("Data set", "training set (paper Fig. 2)"),
    "learning_curves": ("Training", "learning curves of every member"),
}
REPORT_DIR = f"{RESULTS}/reports/figures"
DESCRIPTION = f"{RESULTS}/reports/description.rst"


rule report:
    input:
        **(
            {
                "metrics": rules.evaluate.output.metrics,
                "spectral": rules.evaluate.output.spectral,
                "thermal": rules.evaluate.output.thermal,
                "predictions": f"{RESULTS}/predict/{config['evaluate']['split']}.parquet",
            }
            if USE_PREDICTIONS
            else {}
        ),
        dataset=rules.dos.output.dataset,
        pool=rules.dos.output.pool,
        history=rules.ensemble.output.history,
        model=PREDICT_MODEL,
    output:
        **{
            name: report(
                f"{REPORT_DIR}/{name}.png",
                caption=f"../report/{name}.rst",
                category=category,
                labels={"figure": label},
            )
            for name, (category, label) in OVERVIEW_FIGURES.items()
        },
        **(
            {
                name: report(
                    f"{REPORT_DIR}/{name}.png",
                    caption=f"../report/{name}.rst",
                    category=category,
                    labels={"figure": label},
                )
                for name, (category, label) in REPORT_FIGURES.items()
            }
            if USE_PREDICTIONS
            else {}
        ),
        **(
            {
                "metrics_html": report(
                    f"{REPORT_DIR}/metrics.html",
                    caption="../report/metrics.rst",
                    category="Metrics",
                    labels={"figure": "metrics table"},
                )
            }
            if USE_PREDICTIONS
            else {}
        ),
        description=DESCRIPTION,
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCH}/report.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        py=PY,
        reports_dir=lambda w, output: os.path.dirname(output.description),
        out_dir=lambda w, output: os.path.dirname(output.dataset),
        settings=settings_arg(
            config, "report", only={"evaluate": ["split", "duplicate_mae"]}
        ),
        predictions=lambda w, input: (
            f"--predictions {input.predictions}" if USE_PREDICTIONS else ""
        ),
        # what the description names; a change reruns only this rule
        run=shlex.quote(
            json.dumps(
                {
                    "results_dir": RESULTS,
                    "source": config["source"],
                    "local_path": config["local_path"],
                    "dos_source": config["dos_source"],
                    "split_method": config["split"]["method"],
                    "preset": config["model"]["preset"],
                    "crossval": bool(config["crossval"]["source"]),
                    "screen": bool(
                        config["screen"]["pool"] or config["screen"]["path"]
                    ),
                },
                sort_keys=True,
            )
        ),
    shell:
        "{params.py} report --dataset {input.dataset} --pool {input.pool} --history {input.history} "
        "--model {input.model} {params.predictions} --reports-dir {params.reports_dir} "
        "--out-dir {params.out_dir} --settings {params.settings} --description {output.description} "
        "--run {params.run} > {log} 2>&1"


FINAL_TARGETS.extend(rules.report.output)


# The report's landing page: this run's description once the report rule has written it, else a placeholder that
# names the settings (report/workflow.rst). Evaluated when `snakemake --report` parses the workflow.
report:
    os.path.abspath(DESCRIPTION)
    if os.path.exists(DESCRIPTION)
    else "../report/workflow.rst"
