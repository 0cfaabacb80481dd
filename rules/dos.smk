# dos: re-bin every spectrum to 66 bins (-300..1000 cm^-1, step 20), max-normalise, join with structures,
# add metadata and split -> results/dos/{dataset,pool,rejects}.parquet.

#: the config keys dos reads besides the split section (pipeline.stages.dos.Settings), and only those: overlapping
#: atoms (featurize.min_distance) and, for the leakage-aware split only, the near-duplicate threshold; the keys left
#: out are at their schema defaults in the stage, which does not read them.
DOS_READS = {
    "featurize": ["min_distance"],
    **(
        {"evaluate": ["duplicate_mae"]}
        if config["split"]["method"] == "leakage_aware"
        else {}
    ),
}


rule dos:
    input:
        structures=rules.fetch.output.structures,
        dos_raw=rules.fetch.output.dos_raw,
    output:
        dataset=f"{RESULTS}/dos/dataset.parquet",
        pool=f"{RESULTS}/dos/pool.parquet",
        rejects=f"{RESULTS}/dos/rejects.parquet",
    log:
        f"{LOGS}/dos.log",
    benchmark:
        f"{BENCH}/dos.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        settings=settings_arg(config, "split", only=DOS_READS),
        fetch_dir=lambda w, input: os.path.dirname(input.structures),
        out_dir=lambda w, output: os.path.dirname(output.dataset),
    shell:
        "python -m pipeline dos --fetch-dir {params.fetch_dir} --out-dir {params.out_dir} "
        "--settings {params.settings} > {log} 2>&1"


FINAL_TARGETS.extend(rules.dos.output)
