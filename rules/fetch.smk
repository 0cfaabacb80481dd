# fetch: JARVIS structures (figshare dft_3d or a local JARVIS-format file/dir) and phonon DOS (jarvis-leaderboard
# or figshare edos_pdos) -> results/fetch/. Downloads are cached and checksummed in data/raw/.


rule fetch:
    input:
        local=[config["local_path"]] if config["source"] == "local" else [],
    output:
        structures=f"{RESULTS}/fetch/structures.parquet",
        dos_raw=f"{RESULTS}/fetch/dos_raw.parquet",
        rejects=f"{RESULTS}/fetch/rejects.parquet",
    log:
        f"{LOGS}/fetch.log",
    benchmark:
        f"{BENCH}/fetch.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        # local_path only with source: local (as the input above): another local_path never reruns a figshare fetch
        settings=settings_arg(
            config,
            "source",
            "dos_source",
            "figshare",
            *(["local_path"] if config["source"] == "local" else []),
        ),
        cache_dir=f"{DATA}/raw",
        out_dir=lambda w, output: os.path.dirname(output.structures),
    shell:
        "python -m pipeline fetch --out-dir {params.out_dir} --cache-dir {params.cache_dir} "
        "--settings {params.settings} > {log} 2>&1"
