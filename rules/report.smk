# report: PNG figures of the evaluation -> results/reports/figures/*.png, registered with report() so that
# `snakemake --report report.html` embeds them with the captions in report/*.rst.

REPORT_FIGURES = {
    "parity": "Derived properties",
    "mae_histogram": "Spectra",
    "mae_descriptors": "Spectra",
    "confusion": "Stability",
    "cv_mae_vs_debye": "Derived properties",
    "leakage": "Leakage",
    "baselines": "Baselines",
}

if USE_PREDICTIONS:

    rule report:
        input:
            metrics=rules.evaluate.output.metrics,
            spectral=rules.evaluate.output.spectral,
            thermal=rules.evaluate.output.thermal,
            dataset=rules.dos.output.dataset,
            predictions=f"{RESULTS}/predict/{config['evaluate']['split']}.parquet",
        output:
            **{
                name: report(
                    f"{RESULTS}/reports/figures/{name}.png",
                    caption=f"../report/{name}.rst",
                    category=category,
                )
                for name, category in REPORT_FIGURES.items()
            },
        log:
            f"{LOGS}/report.log",
        benchmark:
            f"{BENCH}/report.tsv"
        conda:
            "../envs/properties.yaml"
        params:
            py=PY,
            reports_dir=lambda w, input: os.path.dirname(input.metrics),
            out_dir=lambda w, output: os.path.dirname(output.parity),
            seed=config["report"]["seed"],
        shell:
            "{params.py} report --reports-dir {params.reports_dir} --dataset {input.dataset} "
            "--predictions {input.predictions} --out-dir {params.out_dir} --seed {params.seed} > {log} 2>&1"

    FINAL_TARGETS.extend(rules.report.output)
