# The prediction application's helpers (for rules.smk beside this file) and the results it adds to
# the report (APPLICATION_TARGETS).


PREDICTORS = ("hybrid-arm", "regressor-arm", "ensemble")


def prediction_model_config(wildcards):
    """The model's config with the block's targets and excluded elements written in (one source)."""
    block = config["prediction"]
    entry = json.loads(json.dumps(block["models"][wildcards.model]))
    entry.setdefault("model", {}).update(
        targets=block["targets"], exclude_elements=block["exclude_elements"]
    )
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
