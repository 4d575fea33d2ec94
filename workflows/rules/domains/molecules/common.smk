# The molecules domain's helpers (for rules.smk beside this file) and its entry in the table of
# model rules (MODEL_RULES: train, sample and evaluate are models.smk's rules).


def raw_training_file(wildcards):
    return {
        "moses": "resources/molecules/moses/raw/train.csv.gz",
        "qm9": "resources/molecules/qm9/raw/qm9.csv.gz",
    }[wildcards.dataset]


def subset_flags(wildcards):
    subset = lookup(dpath=f"molecules/{wildcards.dataset}/subset", within=config)
    return (
        f"{optional_flag('--train-size', subset['train_size'])} --val-size {subset['val_size']}"
        f" --seed {subset['seed']}"
    )


def graph_limit(wildcards):
    graphs = lookup(
        dpath=f"molecules/{wildcards.dataset}/graphs", within=config, default=None
    )
    return optional_flag("--max-molecules", (graphs or {}).get("max_molecules"))


def reference_source(wildcards):
    """MOSES ships Test and TestSF; QM9's test split is the held-out 10%, a user dataset's its test split."""
    if wildcards.dataset == "moses":
        return f"resources/molecules/moses/raw/{wildcards.split}.csv.gz"
    return f"{data_folder('molecules', wildcards.dataset)}/{wildcards.split}.smi"


def reference_flags(wildcards):
    reference = lookup(dpath=f"molecules/{wildcards.dataset}/reference", within=config)
    return f"{optional_flag('--max-molecules', reference['max_molecules'])} --seed {reference['seed']}"


def molecules_train_inputs(wildcards):
    """The splits, and the graph arrays a model of graphs or dense graphs reads."""
    data = data_folder("molecules", wildcards.dataset)
    inputs = {"train": f"{data}/train.smi", "valid": f"{data}/valid.smi"}
    fields = model_facts(wildcards.model)["batch_fields"]
    if "graph" in fields:
        inputs["graphs_train"] = f"{data}/graphs_train.npz"
        inputs["graphs_valid"] = f"{data}/graphs_valid.npz"
    if "dense" in fields:
        inputs["dense"] = f"{data}/dense.npz"
    return inputs


def molecules_evaluate_inputs(wildcards):
    data = data_folder("molecules", wildcards.dataset)
    inputs = {"train_all": f"{data}/train_all.smi", "ref_test": f"{data}/ref_test.npz"}
    if wildcards.dataset == "moses":  # the scaffold split exists for MOSES only
        inputs["ref_test_scaffolds"] = f"{data}/ref_test_scaffolds.npz"
    return inputs


MODEL_RULES["molecules"] = ModelRules(
    train_inputs=molecules_train_inputs,
    samples={"molecules_sample": {"samples": "samples.csv"}},
    evaluate_inputs=molecules_evaluate_inputs,
    # a user dataset (dgm_science/domains/molecules/sources.py): the splits, the novelty reference and
    # each split's property columns
    prepared={
        "molecules": [
            *(f"{split}.smi" for split in ("train", "valid", "test", "train_all")),
            *(f"properties_{split}.csv" for split in ("train", "valid", "test")),
            "prepare.json",
        ]
    },
    # the reference statistics of each dataset's test split, which the report shows beside the runs
    extras=[
        f"resources/molecules/{dataset}/data/ref_test.npz"
        for dataset in config.get("molecules", {})
    ],
)
