# The prediction application's helpers (for rules.smk beside this file) and the results it adds to
# the report (APPLICATION_TARGETS).


PREDICTORS = ("hybrid-arm", "regressor-arm", "ensemble")

PREDICTION_DEFAULTS = {
    "qm9": {"targets": ["gap", "mu"], "exclude_elements": ["F"]},
}
"""What `targets` and `exclude_elements` are when the block leaves them out, by dataset; a user's
dataset: every column of its source.properties, no element excluded."""


def prediction_block():
    """The `prediction` block with its dataset's defaults filled in (empty without the block)."""
    block = dict(config.get("prediction") or {})
    if not block:
        return {}
    dataset = block.setdefault("dataset", "qm9")
    source = config.get("molecules", {}).get(dataset, {}).get("source")
    defaults = PREDICTION_DEFAULTS.get(
        dataset,
        {"targets": list((source or {}).get("properties", [])), "exclude_elements": []},
    )
    for key, value in defaults.items():
        if block.get(key) is None:
            block[key] = value
    return block


def check_prediction_block():
    """One clear error for a `prediction` block that names a dataset or a column that is not there."""
    block = prediction_block()
    if not block:
        return
    dataset = block["dataset"]
    molecules = config.get("molecules", {})
    source = molecules.get(dataset, {}).get("source")
    if dataset not in PREDICTION_DEFAULTS and source is None:
        users = sorted(user_datasets("molecules", "molecules"))
        raise WorkflowError(
            f"config: prediction.dataset {dataset!r} is neither qm9 nor a molecules dataset with a source "
            f"(your file: molecules.{dataset}.source); user datasets here: {', '.join(users) or 'none'}"
        )
    if source is not None:
        columns = {c.lower() for c in source.get("properties", [])}
        missing = [t for t in block["targets"] if t.lower() not in columns]
        if missing or not block["targets"]:
            raise WorkflowError(
                f"config: prediction.targets {missing or []}: not among the property columns of "
                f"molecules.{dataset}.source.properties ({', '.join(source.get('properties', [])) or 'none'}); "
                "list the columns to predict there"
            )
    for key in ("tasks", "units"):
        if block.get(key) and len(block[key]) != len(block["targets"]):
            raise WorkflowError(
                f"config: prediction.{key}: {len(block[key])} for the {len(block['targets'])} targets "
                f"{block['targets']}: give one per target"
            )
    for name in block.get("shifted", []):
        if name not in molecules or name == dataset:
            raise WorkflowError(
                f"config: prediction.shifted: {name!r} is not another molecules dataset of the config "
                "(its test split is a shifted set)"
            )


check_prediction_block()


def prediction_data(name):
    """A file of the prepared folder of the block's dataset (QM9, or the user's file)."""
    dataset = prediction_block().get("dataset", "qm9")
    return f"{data_folder('molecules', dataset)}/{name}"


def prediction_model_config(wildcards):
    """The model's config with the block's targets, excluded elements (and tasks and units, where
    given) written in (one source)."""
    block = prediction_block()
    entry = json.loads(json.dumps(block["models"][wildcards.model]))
    entry.setdefault("model", {}).update(
        targets=block["targets"], exclude_elements=block["exclude_elements"]
    )
    # the block's tasks and units, where given (empty: the model's default, left out)
    for key in ("tasks", "units"):
        entry["model"].pop(key, None)
        if block.get(key):
            entry["model"][key] = block[key]
    return json.dumps(entry, sort_keys=True)


def prediction_members(wildcards):
    """The checkpoints of a predictor: the hybrid, the first regressor, or every ensemble seed."""
    seeds = config["prediction"]["ensemble_seeds"]
    if wildcards.predictor == "ensemble":
        return [f"results/prediction/regressor-arm/seed{s}/model.ckpt" for s in seeds]
    return [f"results/prediction/{wildcards.predictor}/seed{seeds[0]}/model.ckpt"]


def prediction_moses(wildcards):
    """MOSES test molecules for the shifted set, where the config has the MOSES dataset."""
    return (
        ["resources/molecules/moses/raw/test.csv.gz"]
        if "moses" in config.get("molecules", {})
        else []
    )


def prediction_shifted(wildcards):
    """The test split of each dataset `prediction.shifted` names: a further shifted set."""
    return {
        name: f"{data_folder('molecules', name)}/test.smi"
        for name in prediction_block().get("shifted", [])
    }


def prediction_shifted_flags(wildcards, input):
    """The shifted sets' flags: `--moses PATH` where the config has MOSES, and `--shifted NAME=PATH`
    per dataset of `prediction.shifted`."""
    flags = [optional_flag("--moses", input.moses[0] if input.moses else None)]
    flags += [
        f"--shifted {name}={path}"
        for name, path in prediction_shifted(wildcards).items()
    ]
    return " ".join(flag for flag in flags if flag)


def prediction_targets():
    """The block's ``results/prediction/{predictor}/metrics.json`` and, per ``prediction.seeds``,
    ``results/prediction/{model}/seed{seed}/metrics.json`` (none without the block)."""
    block = config.get("prediction") or {}
    if not block:
        return []
    return [
        f"results/prediction/{p}/metrics.json"
        for p in PREDICTORS
        if (p == "ensemble" and "regressor-arm" in block["models"])
        or p in block["models"]
    ] + [
        f"results/prediction/{model}/seed{seed}/metrics.json"
        for model in block["models"]
        for seed in block["seeds"]
    ]


APPLICATION_TARGETS["prediction"] = prediction_targets()
