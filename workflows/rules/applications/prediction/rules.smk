# Property prediction that knows its uncertainty (dgm_science/applications/prediction): a hybrid
# p(x, y) = p(y | x) p(x), a regressor of the same network and a deep ensemble of regressors on
# QM9's DFT properties or the property columns of a user's molecules file (config block `prediction`,
# `dataset`: qm9 or the name of a molecules dataset with a `source`).
# Helpers: common.smk beside this file.


wildcard_constraints:
    predictor=r"hybrid-arm|regressor-arm|ensemble",


rule prediction_train:
    input:
        # prepare writes properties_{train,valid,test}.csv beside the splits (listed in prepare.json)
        smiles=[prediction_data(f"{split}.smi") for split in ("train", "valid")],
        prepared=prediction_data("prepare.json"),
    output:
        "results/prediction/{model}/seed{seed}/model.ckpt",
    log:
        "logs/prediction/{model}/seed{seed}/train.log",
    benchmark:
        "benchmarks/prediction/{model}/seed{seed}/train.tsv"
    priority: PRIORITY.train
    conda:
        "../../../envs/conda.yaml"
    threads: 8
    resources:
        **train_resources(
            lambda wildcards: config["prediction"]["models"][wildcards.model]
        ),
    params:
        config=prediction_model_config,
        data=input_folder("prepared"),
        launcher=train_launcher,
    shell:
        "{params.launcher} dgm train --model {wildcards.model} --data {params.data} --config '{params.config}'"
        " --seed {wildcards.seed} --out {output} --threads {threads} 2> {log}"


rule prediction_evaluate:
    input:
        checkpoints=prediction_members,
        test=prediction_data("test.smi"),
        moses=prediction_moses,
        shifted=lambda wildcards: list(prediction_shifted(wildcards).values()),
    output:
        "results/prediction/{predictor}/metrics.json",
    log:
        "logs/prediction/{predictor}/evaluate.log",
    benchmark:
        "benchmarks/prediction/{predictor}/evaluate.tsv"
    conda:
        "../../../envs/conda.yaml"
    threads: 2
    params:
        data=input_folder("test"),
        moses=prediction_shifted_flags,
        max_molecules=lookup(
            dpath="prediction/max_molecules", within=config, default=None
        ),
    shell:
        "dgm evaluate-predictor --checkpoint {input.checkpoints} --data {params.data} {params.moses}"
        " --max-molecules {params.max_molecules} --jobs {threads} --threads {threads} --out {output} 2> {log}"


rule prediction_evaluate_seed:
    input:
        checkpoint="results/prediction/{model}/seed{seed}/model.ckpt",
        test=prediction_data("test.smi"),
        moses=prediction_moses,
        shifted=lambda wildcards: list(prediction_shifted(wildcards).values()),
    output:
        "results/prediction/{model}/seed{seed}/metrics.json",
    log:
        "logs/prediction/{model}/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/prediction/{model}/seed{seed}/evaluate.tsv"
    conda:
        "../../../envs/conda.yaml"
    threads: 2
    params:
        data=input_folder("test"),
        moses=prediction_shifted_flags,
        max_molecules=lookup(
            dpath="prediction/max_molecules", within=config, default=None
        ),
    shell:
        "dgm evaluate-predictor --checkpoint {input.checkpoint} --data {params.data} {params.moses}"
        " --max-molecules {params.max_molecules} --jobs {threads} --threads {threads} --out {output} 2> {log}"


rule prediction:
    input:
        prediction_targets(),
