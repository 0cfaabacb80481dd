# train: fit train.ensemble ALIGNN DOS models (seed train.seed + member; one job each, parallel on a cluster) on the
# train/val graph shards -> results/train/member-{member}/{model.pt,history.parquet}; then `ensemble` combines them
# into results/train/{model.pt,history.parquet}, which predict loads (the members' mean; one member = that model).
# member-{member}/checkpoint.pt (not a declared output, so Snakemake keeps it) lets a killed job resume exactly.
# Resources: `threads` (torch CPU threads), `gpu` (= train.gpus, default 0; profiles/slurm requests gres gpu:1
# for this rule itself), `mem_mb`, `runtime` (minutes). The stage picks CUDA automatically when visible.
N_MEMBERS = config["train"]["ensemble"]
# What one member trains with (the train stage's --settings): the model section and the train section without
# `ensemble` (the stage fills its schema default), so that adding members leaves the trained ones up to date.
MEMBER_SETTINGS = settings_arg(
    config, "model", "train", without={"train": ["ensemble"]}
)


rule train:
    input:
        train=expand(
            f"{RESULTS}/graphs/train/shard-{{shard}}.h5", shard=range(N_SHARDS)
        ),
        val=expand(f"{RESULTS}/graphs/val/shard-{{shard}}.h5", shard=range(N_SHARDS)),
    output:
        model=f"{RESULTS}/train/member-{{member}}/model.pt",
        history=f"{RESULTS}/train/member-{{member}}/history.parquet",
    log:
        f"{LOGS}/train-{{member}}.log",
    benchmark:
        f"{BENCH}/train-{{member}}.tsv"
    wildcard_constraints:
        member=r"\d+",
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        gpu=config["train"]["gpus"],
        mem_mb=8000,
        runtime=480,
    params:
        py=PY,
        out_dir=lambda w, output: os.path.dirname(output.model),
        settings=MEMBER_SETTINGS,
    shell:
        "{params.py} train --train-shards {input.train} --val-shards {input.val} --out-dir {params.out_dir} "
        "--member {wildcards.member} --settings {params.settings} --threads {threads} --no-progress > {log} 2>&1"


rule ensemble:
    input:
        models=expand(
            f"{RESULTS}/train/member-{{member}}/model.pt", member=range(N_MEMBERS)
        ),
        histories=expand(
            f"{RESULTS}/train/member-{{member}}/history.parquet",
            member=range(N_MEMBERS),
        ),
        val=rules.train.input.val,
    output:
        model=f"{RESULTS}/train/model.pt",
        history=f"{RESULTS}/train/history.parquet",
    log:
        f"{LOGS}/ensemble.log",
    benchmark:
        f"{BENCH}/ensemble.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    params:
        py=PY,
        out_dir=lambda w, output: os.path.dirname(output.model),
        # how the convolutions run when the members are scored on the val shards; not predict.batch_size (the
        # scoring batch stays the schema default, as it always was), so that changing it reruns predict only
        settings=settings_arg(config, only={"model": ["accelerator"]}),
    shell:
        "{params.py} ensemble --models {input.models} --histories {input.histories} --val-shards {input.val} "
        "--out-dir {params.out_dir} --settings {params.settings} --threads {threads} > {log} 2>&1"


FINAL_TARGETS.extend(rules.ensemble.output)
