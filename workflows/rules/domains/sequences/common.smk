# The sequences domain's helpers (for rules.smk beside this file) and its entry in the table of
# model rules (MODEL_RULES: train, sample and evaluate are models.smk's rules).


def sequence_source_files(wildcards):
    """The committed FASTA and split of a dataset (the catalog's ``sources``)."""
    return CATALOG.dataset(wildcards.dataset)["sources"]


def sequence_subset_flags(wildcards):
    subset = lookup(dpath=f"sequences/{wildcards.dataset}/subset", within=config)
    return (
        f"{optional_flag('--train-size', subset['train_size'])}"
        f" {optional_flag('--max-residues', subset['max_residues'])} --seed {subset['seed']}"
    )


def sequences_data_files(wildcards):
    data = data_folder("sequences", wildcards.dataset)
    return [
        f"{data}/{name}"
        for name in ("train.fasta", "valid.fasta", "test.fasta", "prepare.json")
    ]


MODEL_RULES["sequences"] = ModelRules(
    train_inputs=sequences_data_files,
    # samples.fasta (valid samples, label and log-likelihood in the header), samples.csv (every draw)
    samples={"sequences_sample": {"samples": "samples.fasta", "table": "samples.csv"}},
    evaluate_inputs=lambda wildcards: {
        "table": f"{run_dir('sequences', wildcards.dataset, wildcards.model, wildcards.seed)}/samples.csv",
        "data": sequences_data_files(wildcards),
    },
    likelihood=("--fasta", "resources/sequences/{dataset}/data/test.fasta"),
    # beside each run's metrics: its test-set bits per residue, and seq-arm's compression figures
    extras=domain_targets("sequences", "test_likelihood.json")
    + [
        f"{run_dir('sequences', dataset, 'seq-arm', seed)}/compression.json"
        for dataset, ds_cfg in config.get("sequences", {}).items()
        if "seq-arm" in ds_cfg["models"] and ds_cfg["compression"]
        for seed in model_seeds("sequences", dataset, "seq-arm")
    ],
    # a user dataset (source kind fasta) is prepared into the built-in sets' files
    prepared={
        "sequences": ["train.fasta", "valid.fasta", "test.fasta", "prepare.json"]
    },
)
