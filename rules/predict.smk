# predict: the trained model over every shard of each set in predict.sets (scatter: one job per set and shard),
# then one gather per set -> results/predict/{set}.parquet (+ {set}.rejects.parquet for non-finite predictions).
# The model is the workflow's trained ensemble unless predict.model names another (`shipped`: the model packed in
# the package, pipeline/nn/models/; config/demo.yaml uses it so that the demo's figures show a real model).
from pipeline.nn.pretrained import default_model_path

PREDICT_MODEL = {
    None: rules.ensemble.output.model,
    "shipped": str(default_model_path()),
}.get(config["predict"]["model"], config["predict"]["model"])


rule predict_shard:
    input:
        model=PREDICT_MODEL,
        shard=f"{RESULTS}/graphs/{{set}}/shard-{{shard}}.h5",
    output:
        predictions=temp(f"{RESULTS}/predict/{{set}}/shard-{{shard}}.parquet"),
        rejects=temp(f"{RESULTS}/predict/{{set}}/shard-{{shard}}.rejects.parquet"),
    log:
        f"{LOGS}/predict/{{set}}-{{shard}}.log",
    benchmark:
        f"{BENCH}/predict/{{set}}-{{shard}}.tsv"
    wildcard_constraints:
        set="|".join(GRAPH_SPLITS),
        shard=r"\d+",
    conda:
        "../envs/train.yaml"
    threads: 2
    params:
        py=PY,
        # what a shard job uses (predict.sets and predict.model choose the jobs and the model file)
        settings=settings_arg(
            config,
            only={"predict": ["batch_size", "precision"], "model": ["accelerator"]},
        ),
    shell:
        "{params.py} predict shard --model {input.model} --shard {input.shard} --split {wildcards.set} "
        "--out {output.predictions} --settings {params.settings} --threads {threads} --no-progress > {log} 2>&1"


rule predict_gather:
    input:
        predictions=expand(
            f"{RESULTS}/predict/{{{{set}}}}/shard-{{shard}}.parquet",
            shard=range(N_SHARDS),
        ),
        rejects=expand(
            f"{RESULTS}/predict/{{{{set}}}}/shard-{{shard}}.rejects.parquet",
            shard=range(N_SHARDS),
        ),
    output:
        predictions=f"{RESULTS}/predict/{{set}}.parquet",
        rejects=f"{RESULTS}/predict/{{set}}.rejects.parquet",
    log:
        f"{LOGS}/predict/{{set}}-gather.log",
    benchmark:
        f"{BENCH}/predict/{{set}}-gather.tsv"
    wildcard_constraints:
        set="|".join(GRAPH_SPLITS),
    conda:
        "../envs/train.yaml"
    params:
        py=PY,
    shell:
        "{params.py} predict gather --inputs {input.predictions} --out {output.predictions} > {log} 2>&1"


FINAL_TARGETS.extend(
    expand(f"{RESULTS}/predict/{{set}}.parquet", set=config["predict"]["sets"])
)
