# Helpers and target lists shared by the rules (no lambdas inside rules).
import json

from dgm_science import registry

DGM = "dgm"
SEEDS = config["seeds"]
DOMAINS = ("molecules", "structures", "sequences", "trajectories")


def model_config_json(domain, dataset, model):
    """The model's whole config (model / train / sample) as JSON: a params value, so that
    changing one model's config re-runs that model's chain only."""
    return json.dumps(config[domain][dataset]["models"][model], sort_keys=True)


def batch_fields(model):
    return registry.get("model", model).batch_fields


def run_dir(domain, dataset, model, seed):
    return f"results/{domain}/{dataset}/{model}/seed{seed}"


def samples_file(model):
    """The samples file of a model's domain: samples.csv (molecules), samples.sdf (QM9
    conformations), samples.dcd (molecular dynamics), samples.fasta (sequences), samples.minari (trajectories)."""
    spec = registry.get("model", model)
    return registry.get("domain", spec.domain).samples_file


def domain_targets(domain, filename=None):
    """``filename`` of every run of ``domain`` in the config (none if the config has no such
    domain); ``None`` means each model's samples file."""
    return [
        f"{run_dir(domain, dataset, model, seed)}/{filename or samples_file(model)}"
        for dataset, ds_cfg in config.get(domain, {}).items()
        for model in ds_cfg["models"]
        for seed in SEEDS
    ]


def optional_flag(flag, value):
    """``--flag value``, or nothing when the config says null (the CLI's default: all)."""
    return "" if value is None else f"{flag} {value}"
