# evaluate: DFT vs predicted spectra of evaluate.split (spectral MAE, near-duplicate leakage, stability confusion,
# C_V / S_vib / tau^-1 metrics on all and non-duplicate materials, Debye and Born-von Karman baselines, and with
# evaluate.direct_baselines the direct scalar ALIGNN models) -> results/reports/{spectral,thermal,metrics,rejects}.parquet.
# Needs predictions (see rules/properties.smk).
import json

EVALUATE_OUTPUTS = {
    name: f"{RESULTS}/reports/{name}.parquet"
    for name in ("spectral", "thermal", "metrics", "rejects")
}
EVAL_SPLIT = config["evaluate"]["split"]
DIRECT_OUTPUT = f"{RESULTS}/baselines/direct_{EVAL_SPLIT}.parquet"
USE_DIRECT = USE_PREDICTIONS and config["evaluate"]["direct_baselines"]

if USE_DIRECT:

    # The paper's direct ALIGNN baselines: pipeline.nn.model with a one-value head, trained like the DOS model.
    rule direct_baselines:
        input:
            properties=rules.properties.output.properties,
            train=expand(
                f"{RESULTS}/graphs/train/shard-{{shard}}.h5", shard=range(N_SHARDS)
            ),
            val=expand(
                f"{RESULTS}/graphs/val/shard-{{shard}}.h5", shard=range(N_SHARDS)
            ),
            test=expand(
                f"{RESULTS}/graphs/{EVAL_SPLIT}/shard-{{shard}}.h5",
                shard=range(N_SHARDS),
            ),
        output:
            direct=DIRECT_OUTPUT,
        log:
            f"{LOGS}/direct_baselines.log",
        benchmark:
            f"{BENCH}/direct_baselines.tsv"
        conda:
            "../envs/train.yaml"
        threads: 8
        resources:
            mem_mb=8000,
            runtime=960,
        params:
            py="python -m pipeline baselines",
            work_dir=lambda w, output: os.path.join(
                os.path.dirname(output.direct), "direct_models"
            ),
            settings=MEMBER_SETTINGS,  # the model and train sections as a train member gets them
        shell:
            "{params.py} --properties {input.properties} --train-shards {input.train} --val-shards {input.val} "
            "--test-shards {input.test} --out {output.direct} --work-dir {params.work_dir} "
            "--settings {params.settings} --threads {threads} > {log} 2>&1"


if USE_PREDICTIONS:

    rule evaluate:
        input:
            dataset=rules.dos.output.dataset,
            predictions=f"{RESULTS}/predict/{EVAL_SPLIT}.parquet",
            properties=rules.properties.output.properties,
            direct=[DIRECT_OUTPUT] if USE_DIRECT else [],
        output:
            **EVALUATE_OUTPUTS,
        log:
            f"{LOGS}/evaluate.log",
        benchmark:
            f"{BENCH}/evaluate.tsv"
        conda:
            "../envs/train.yaml"
        params:
            py=PY,
            settings=settings_arg(config, "evaluate"),
            out_dir=lambda w, output: os.path.dirname(output.metrics),
            direct=f"--direct {DIRECT_OUTPUT}" if USE_DIRECT else "",
        shell:
            "{params.py} evaluate --dataset {input.dataset} --predictions {input.predictions} "
            "--properties {input.properties} --out-dir {params.out_dir} {params.direct} "
            "--settings {params.settings} > {log} 2>&1"

    FINAL_TARGETS.extend(rules.evaluate.output)
