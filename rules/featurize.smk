# featurize: crystal graph + line graph of every material -> results/graphs/{split}/shard-{i}.h5 (scatter: one job
# per split and shard, n_shards from config), then a gather job that checks the shards and writes the manifest and
# the concatenated rejects. Layout of a shard: pipeline/data/shards.py; graph conventions: pipeline/data/graphs.py.

GRAPH_SPLITS = ["train", "val", "test", "pool"]
N_SHARDS = config["featurize"]["n_shards"]


rule featurize_shard:
    input:
        # labelled splits come from dataset.parquet, the unlabelled pool from pool.parquet
        lambda w: (
            rules.dos.output.pool if w.split == "pool" else rules.dos.output.dataset
        ),
    output:
        shard=f"{RESULTS}/graphs/{{split}}/shard-{{shard}}.h5",
        rejects=f"{RESULTS}/graphs/{{split}}/rejects-{{shard}}.parquet",
    log:
        f"{LOGS}/featurize/{{split}}-{{shard}}.log",
    benchmark:
        f"{BENCH}/featurize/{{split}}-{{shard}}.tsv"
    wildcard_constraints:
        split="|".join(GRAPH_SPLITS),
        shard=r"\d+",
    conda:
        "../envs/train.yaml"
    params:
        py=PY,
        settings=settings_arg(config, "featurize"),
    shell:
        "{params.py} featurize --split {wildcards.split} --shard-index {wildcards.shard} --input {input} "
        "--out {output.shard} --rejects {output.rejects} --settings {params.settings} > {log} 2>&1"


rule featurize_gather:
    input:
        shards=expand(
            f"{RESULTS}/graphs/{{split}}/shard-{{shard}}.h5",
            split=GRAPH_SPLITS,
            shard=range(N_SHARDS),
        ),
        rejects=expand(
            f"{RESULTS}/graphs/{{split}}/rejects-{{shard}}.parquet",
            split=GRAPH_SPLITS,
            shard=range(N_SHARDS),
        ),
    output:
        manifest=f"{RESULTS}/graphs/manifest.parquet",
        rejects=f"{RESULTS}/graphs/rejects.parquet",
    log:
        f"{LOGS}/featurize/gather.log",
    benchmark:
        f"{BENCH}/featurize/gather.tsv"
    conda:
        "../envs/train.yaml"
    params:
        py=PY,
    shell:
        "{params.py} featurize gather --shards {input.shards} --shard-rejects {input.rejects} "
        "--manifest {output.manifest} --rejects {output.rejects} > {log} 2>&1"


FINAL_TARGETS.extend(rules.featurize_gather.output)
