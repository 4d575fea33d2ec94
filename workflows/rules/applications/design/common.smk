# The design application's helpers (for rules.smk beside this file) and the results it adds to
# the report (APPLICATION_TARGETS).


def design_targets(filename="summary.json"):
    """``results/design/{objective}/{method}/seed{seed}/{filename}`` of every run of the block."""
    block = config.get("design") or {}
    return [
        f"results/design/{objective}/{method}/seed{seed}/{filename}"
        for objective in block.get("objectives", {})
        for method in block.get("methods", {})
        for seed in block.get("seeds", [0])
    ]


def design_objective_file(wildcards):
    """The objective's YAML file as an input (a benchmark task is no file)."""
    spec = config["design"]["objectives"][wildcards.objective]
    return [] if ":" in spec and not os.path.exists(spec) else [spec]


def design_settings(wildcards):
    return json.dumps(config["design"]["methods"][wildcards.method], sort_keys=True)


APPLICATION_TARGETS["design"] = design_targets()
