# properties: C_V, S_vib, F_vib, ZPE (molar and per kg), stability, Debye temperature, isotope scattering for every
# labelled DFT spectrum and, with properties.use_predictions, every predicted spectrum of predict.sets
# -> results/properties/{properties,rejects}.parquet (schema pipeline.schemas.PROPERTIES).

# Predicted spectra are used only when the workflow has a predict stage to make them (rules named predict*).
USE_PREDICTIONS = config["properties"]["use_predictions"] and any(
    r.name.startswith("predict") for r in workflow.rules
)
PREDICTION_FILES = (
    [f"{RESULTS}/predict/{s}.parquet" for s in config["predict"]["sets"]]
    if USE_PREDICTIONS
    else []
)


rule properties:
    input:
        dataset=rules.dos.output.dataset,
        pool=rules.dos.output.pool,
        predictions=PREDICTION_FILES,
    output:
        properties=f"{RESULTS}/properties/properties.parquet",
        rejects=f"{RESULTS}/properties/rejects.parquet",
    log:
        f"{LOGS}/properties.log",
    benchmark:
        f"{BENCH}/properties.tsv"
    conda:
        "../envs/pipeline.yaml"
    params:
        py=PY,
        settings=settings_arg(config, "properties"),
        predictions=(
            ("--predictions " + " ".join(PREDICTION_FILES)) if PREDICTION_FILES else ""
        ),
    shell:
        "{params.py} properties --dataset {input.dataset} --pool {input.pool} {params.predictions} "
        "--out {output.properties} --rejects {output.rejects} --settings {params.settings} > {log} 2>&1"


FINAL_TARGETS.extend(rules.properties.output)
