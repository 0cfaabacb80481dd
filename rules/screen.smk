# screen: predicted DOS, properties, uncertainties and flags of structures without a DOS (paper Sec. III C):
# the JARVIS pool with the model of the workflow's predictions (screen.pool; predict.model) -> results/screen/pool/,
# and, when screen.path is set (`snakemake --config 'screen={path: my_cifs/}'`), the user's structure files with
# screen.model (null: the model shipped in the package) -> results/screen/user/. Figures and the top/bottom table go into the report.
from pipeline.nn.pretrained import default_model_path

SCREEN_TABLES = ["screen", "rejects", "units", "summary"]
#: report entries: output name -> (file, caption in report/, label in the report's list)
SCREEN_REPORT = {
    "summary_html": (
        "summary.html",
        "screen_table",
        "highest and lowest materials (paper Table S2)",
    ),
    "distributions": (
        "distributions.png",
        "screen_distributions",
        "distributions (paper Fig. 11 a-c)",
    ),
    "extreme_spectra": (
        "extreme_spectra.png",
        "screen_extreme_spectra",
        "extreme spectra (paper Fig. 11 d-i)",
    ),
}
#: the config keys screen reads (pipeline.stages.screen.Settings), and only those: its --settings, so that a change of
#: another key (featurize.cutoff: the model brings its own graph settings; screen.path: the user's structures, not
#: the pool) reruns no screening. The keys left out are at their schema defaults in the stage, which does not read them.
SCREEN_READS = {
    "screen": ["max_atoms", "beyond_grid_weight", "batch_size", "top_n"],
    "properties": ["temperatures", "unstable_fraction", "head_unstable_fraction"],
    "featurize": ["min_distance"],
}
SCREEN_SETTINGS = settings_arg(config, only=SCREEN_READS)
SCREEN_SHELL = (
    "{params.py} screen {input.structures} --out {params.out_dir} --model {input.model} "
    "--threads {threads} --title {params.title:q} --no-progress {params.extra} --settings {params.settings} "
    "> {log} 2>&1"
)

if config["screen"]["pool"]:

    rule screen_pool:
        input:
            structures=rules.dos.output.pool,
            model=PREDICT_MODEL,  # the model of the workflow's predictions (rules/predict.smk)
            dataset=rules.dos.output.dataset,
        output:
            **{t: f"{RESULTS}/screen/pool/{t}.parquet" for t in SCREEN_TABLES},
            **{
                key: report(
                    f"{RESULTS}/screen/pool/{file}",
                    caption=f"../report/{caption}.rst",
                    category="Screening",
                    subcategory="JARVIS pool",
                    labels={"figure": label},
                )
                for key, (file, caption, label) in SCREEN_REPORT.items()
            },
            summary_md=f"{RESULTS}/screen/pool/summary.md",
        log:
            f"{LOGS}/screen_pool.log",
        benchmark:
            f"{BENCH}/screen_pool.tsv"
        conda:
            "../envs/train.yaml"
        threads: 2
        params:
            py=PY,
            out_dir=lambda w, output: os.path.dirname(output.screen),
            title="JARVIS pool",
            # a dataset without unlabelled structures has an empty pool; the model was trained on the train split
            extra=lambda w, input: f"--allow-empty --train-dataset {input.dataset}",
            settings=SCREEN_SETTINGS,
        shell:
            SCREEN_SHELL

    FINAL_TARGETS.extend(rules.screen_pool.output)


if config["screen"]["path"]:

    rule screen_user:
        input:
            structures=config["screen"]["path"],
            model=config["screen"]["model"] or str(default_model_path()),
        output:
            **{t: f"{RESULTS}/screen/user/{t}.parquet" for t in SCREEN_TABLES},
            **{
                key: report(
                    f"{RESULTS}/screen/user/{file}",
                    caption=f"../report/{caption}.rst",
                    category="Screening",
                    subcategory="your structures",
                    labels={"figure": label},
                )
                for key, (file, caption, label) in SCREEN_REPORT.items()
            },
            summary_md=f"{RESULTS}/screen/user/summary.md",
        log:
            f"{LOGS}/screen_user.log",
        benchmark:
            f"{BENCH}/screen_user.tsv"
        conda:
            "../envs/train.yaml"
        threads: 2
        params:
            py=PY,
            out_dir=lambda w, output: os.path.dirname(output.screen),
            title=lambda w, input: input.structures,
            extra="",
            settings=SCREEN_SETTINGS,
        shell:
            SCREEN_SHELL

    FINAL_TARGETS.extend(rules.screen_user.output)
