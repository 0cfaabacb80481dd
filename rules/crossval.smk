# crossval: the trained model's predictions, and JARVIS DFT where a JARVIS record matches, against Materials Project
# DFPT phonons (paper Fig. 10) -> results/crossval/{mp,summary,rejects}.parquet and figures/{parity,spectra}.png
# (in the Snakemake report). Off unless crossval.source is set: local (a file/folder of MP phonon documents,
# config/shared_accuracy.yaml: ../shared/data/mp_dfpt_phonon_dos.json.gz) or mp-api (MP_API_KEY from the
# environment; downloads cached and checksummed in data/raw/mp_phonon/).


#: the config keys crossval reads (pipeline.stages.crossval.Settings), and only those: its --settings, so that a change
#: of another key (featurize.n_shards, predict.sets, ...) does not rerun it. crossval.source, path and model choose
#: the rule's inputs below; the keys left out are at their schema defaults in the stage, which does not read them.
CROSSVAL_READS = {
    "crossval": ["mp_ids", "endpoint"],
    "featurize": ["k", "cutoff", "min_distance"],
    "properties": ["unstable_fraction"],
    "predict": ["batch_size"],
}
CROSSVAL_SETTINGS = settings_arg(config, only=CROSSVAL_READS)

#: figure -> its label in the report's list
CROSSVAL_FIGURES = {
    "parity": "ALIGNN and JARVIS DFT vs MP DFPT (paper Fig. 10)",
    "spectra": "spectra vs MP DFPT",
}

if config["crossval"]["source"]:

    rule crossval:
        input:
            mp=(
                [config["crossval"]["path"]]
                if config["crossval"]["source"] == "local"
                else []
            ),
            model=config["crossval"]["model"] or rules.ensemble.output.model,
            dataset=rules.dos.output.dataset,
            pool=rules.dos.output.pool,
        output:
            **{
                name: report(
                    f"{RESULTS}/crossval/figures/{name}.png",
                    caption=f"../report/crossval_{name}.rst",
                    category="Cross-validation (Materials Project)",
                    labels={"figure": label},
                )
                for name, label in CROSSVAL_FIGURES.items()
            },
            mp=f"{RESULTS}/crossval/mp.parquet",
            summary=f"{RESULTS}/crossval/summary.parquet",
            rejects=f"{RESULTS}/crossval/rejects.parquet",
        log:
            f"{LOGS}/crossval.log",
        benchmark:
            f"{BENCH}/crossval.tsv"
        conda:
            "../envs/crossval.yaml"
        threads: 2
        params:
            py=PY,
            source=lambda w, input: f"--mp {input.mp}" if input.mp else "--mp-api",
            cache_dir=f"{DATA}/raw",
            out_dir=lambda w, output: os.path.dirname(output.mp),
            settings=CROSSVAL_SETTINGS,
        shell:
            "{params.py} crossval {params.source} --cache-dir {params.cache_dir} "
            "--model {input.model} --dataset {input.dataset} --pool {input.pool} --out {params.out_dir} "
            "--threads {threads} --settings {params.settings} > {log} 2>&1"

    FINAL_TARGETS.extend(rules.crossval.output)
