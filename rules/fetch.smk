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
        source=config["source"],
        local=lambda w, input: f"--local-path {input.local}" if input.local else "",
        dos_source=config["dos_source"],
        mirror=(
            f"--mirror {config['figshare']['mirror']}"
            if config["figshare"]["mirror"]
            else ""
        ),
        retries=config["figshare"]["retries"],
        timeout=config["figshare"]["timeout_s"],
        cache_dir=f"{DATA}/raw",
        out_dir=lambda w, output: os.path.dirname(output.structures),
    shell:
        "python -m pipeline fetch --source {params.source} {params.local} "
        "--dos-source {params.dos_source} --out-dir {params.out_dir} --cache-dir {params.cache_dir} "
        "{params.mirror} --retries {params.retries} --timeout {params.timeout} > {log} 2>&1"
