# evaluate: DFT vs predicted spectra of evaluate.split (spectral MAE, near-duplicate leakage, stability confusion,
# C_V / S_vib / tau^-1 metrics on all and non-duplicate materials, Debye and Born-von Karman baselines)
# -> results/reports/{spectral,thermal,metrics,rejects}.parquet. Needs predictions (see rules/properties.smk).

EVALUATE_OUTPUTS = {
    name: f"{RESULTS}/reports/{name}.parquet"
    for name in ("spectral", "thermal", "metrics", "rejects")
}

if USE_PREDICTIONS:

    rule evaluate:
        input:
            dataset=rules.dos.output.dataset,
            predictions=f"{RESULTS}/predict/{config['evaluate']['split']}.parquet",
            properties=rules.properties.output.properties,
        output:
            **EVALUATE_OUTPUTS,
        log:
            f"{LOGS}/evaluate.log",
        benchmark:
            f"{BENCH}/evaluate.tsv"
        conda:
            "../envs/properties.yaml"
        params:
            py=PY,
            split=config["evaluate"]["split"],
            duplicate_mae=config["evaluate"]["duplicate_mae"],
            fractions=" ".join(str(f) for f in config["evaluate"]["debye_fractions"]),
            out_dir=lambda w, output: os.path.dirname(output.metrics),
        shell:
            "{params.py} evaluate --dataset {input.dataset} --predictions {input.predictions} "
            "--properties {input.properties} --out-dir {params.out_dir} --split {params.split} "
            "--duplicate-mae {params.duplicate_mae} --debye-fractions {params.fractions} > {log} 2>&1"

    FINAL_TARGETS.extend(rules.evaluate.output)
