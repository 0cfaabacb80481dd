# train: fit the ALIGNN DOS model on the train/val graph shards -> results/train/{model.pt,history.parquet}.
# results/train/checkpoint.pt (not a declared output, so Snakemake keeps it) lets a killed job resume exactly.
# Resources: `threads` (torch CPU threads), `gpu` (= train.gpus, default 0; profiles/slurm requests gres gpu:1
# for this rule itself), `mem_mb`, `runtime` (minutes). The stage picks CUDA automatically when visible.
import json


rule train:
    input:
        train=expand(
            f"{RESULTS}/graphs/train/shard-{{shard}}.h5", shard=range(N_SHARDS)
        ),
        val=expand(f"{RESULTS}/graphs/val/shard-{{shard}}.h5", shard=range(N_SHARDS)),
    output:
        model=f"{RESULTS}/train/model.pt",
        history=f"{RESULTS}/train/history.parquet",
    log:
        f"{LOGS}/train.log",
    benchmark:
        f"{BENCH}/train.tsv"
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
        model=json.dumps(config["model"], sort_keys=True),
        train=json.dumps(config["train"], sort_keys=True),
    shell:
        "{params.py} train --train-shards {input.train} --val-shards {input.val} --out-dir {params.out_dir} "
        "--model '{params.model}' --train '{params.train}' --threads {threads} --no-progress > {log} 2>&1"


FINAL_TARGETS.extend(rules.train.output)
