# Helpers, input functions and target lists for the rules (the rule files hold rules only).
import json
import os
from types import SimpleNamespace

from dgm_science import registry
from dgm_science.applications import APPLICATIONS

SEEDS = config["seeds"]
# The domain blocks of the (validated) config: a new domain needs no edit here. The applications
# (dgm_science.applications: `design`, workflows/rules/design.smk, and `prediction`,
# workflows/rules/prediction.smk) are not domains.
DOMAINS = [key for key in config if key != "seeds" and key not in APPLICATIONS]


# Scheduling: among the jobs ready at the same time, Snakemake starts the higher `priority:` first.
# Data steps, then training, then sampling (and offline RL), the short evaluations last, so that
# the long jobs start early and a run does not end on one long training with a core idle (the
# default run ended so: QM9-3D's prepare ran late, and qm9-edm trained alone for its last 6 min).
PRIORITY = SimpleNamespace(data=3, train=2, sample=1)


wildcard_constraints:
    seed=r"\d+",
    model=r"[a-z0-9-]+",


# ---------------------------------------------------------------------------------------------
# Generic helpers


def model_config_json(domain, dataset, model):
    """The model's whole config (model / train / sample) as JSON: a params value, so that
    changing one model's config re-runs that model's chain only (its ``seeds`` say which runs
    there are, not how each is trained)."""
    entry = config[domain][dataset]["models"][model]
    return json.dumps({k: v for k, v in entry.items() if k != "seeds"}, sort_keys=True)


def model_seeds(domain, dataset, model):
    """The seeds a model runs with: its own ``seeds`` (e.g. 3 of a family in the trade-off
    overlay), else the config's."""
    return config[domain][dataset]["models"][model].get("seeds", SEEDS)


def model_config(domain):
    """A params function: the model's config (see model_config_json) of the job's wildcards."""

    def config_of(wildcards):
        return model_config_json(domain, wildcards.dataset, wildcards.model)

    return config_of


def sample_count(domain):
    """A params function: how many samples the model's sample: n asks for (10,000 if unset)."""

    def n(wildcards):
        model = config[domain][wildcards.dataset]["models"][wildcards.model]
        return model.get("sample", {}).get("n", 10000)

    return n


def batch_fields(model):
    return registry.get("model", model).batch_fields


def run_dir(domain, dataset, model, seed):
    return f"results/{domain}/{dataset}/{model}/seed{seed}"


def samples_file(model):
    """The samples file of a model's domain: samples.csv (molecules), samples.sdf (QM9
    conformations), samples.dcd (molecular dynamics), samples.fasta (sequences), samples.minari (trajectories).
    """
    spec = registry.get("model", model)
    return registry.get("domain", spec.domain).samples_file


def domain_targets(domain, filename=None):
    """``filename`` of every run of ``domain`` in the config (none if the config has no such
    domain); ``None`` means each model's samples file."""
    return [
        f"{run_dir(domain, dataset, model, seed)}/{filename or samples_file(model)}"
        for dataset, ds_cfg in config.get(domain, {}).items()
        for model in ds_cfg["models"]
        for seed in model_seeds(domain, dataset, model)
    ]


def langevin_targets():
    """``mixing.json`` of every structures run whose model samples by Langevin chains (an EBM)."""
    return [
        f"{run_dir('structures', dataset, model, seed)}/mixing.json"
        for dataset, ds_cfg in config.get("structures", {}).items()
        for model in ds_cfg["models"]
        if getattr(registry.get("model", model), "langevin", False)
        for seed in model_seeds("structures", dataset, model)
    ]


def optional_flag(flag, value):
    """``--flag value``, or nothing when the config says null (the CLI's default: all)."""
    return "" if value is None else f"{flag} {value}"


def output_folder(name):
    """A params function: the folder of output ``name`` (a name or an index), derived from the
    output so that no path prefix is written twice."""

    def folder(wildcards, output):
        path = output[name] if isinstance(name, int) else getattr(output, name)
        return os.path.dirname(path)

    return folder


def input_folder(name):
    """A params function: the folder of input ``name`` (a name or an index)."""

    def folder(wildcards, input):
        path = input[name] if isinstance(name, int) else getattr(input, name)
        return os.path.dirname(path)

    return folder


def train_launcher(wildcards, threads, resources):
    """What starts ``dgm train``: nothing locally. Under Slurm, a profile that gives the rule the
    ``mpi`` resource (``mpi: srun``, ``tasks: N``, ``nodes: 1``) gets one training process per
    task. The SLURM executor's job step then runs the command in the batch step with the SLURM_*
    task variables removed, so srun is told the tasks and CPUs again, per node: Lightning's SLURM
    environment refuses a bare ``--ntasks`` (it needs SLURM_NTASKS_PER_NODE)."""
    launcher = getattr(resources, "mpi", "")
    if not launcher:
        return ""
    tasks = getattr(resources, "tasks", 1)
    return f"{launcher} --nodes=1 --ntasks-per-node={tasks} --cpus-per-task={threads}"


def model_domain(wildcards):
    return registry.get("model", wildcards.model).domain


# ---------------------------------------------------------------------------------------------
# Molecules


def molecules_config(dataset):
    return config["molecules"][dataset]


def raw_training_file(wildcards):
    return {
        "moses": "resources/molecules/moses/raw/train.csv.gz",
        "qm9": "resources/molecules/qm9/raw/qm9.csv.gz",
    }[wildcards.dataset]


def subset_flags(wildcards):
    subset = molecules_config(wildcards.dataset)["subset"]
    return (
        f"{optional_flag('--train-size', subset['train_size'])} --val-size {subset['val_size']}"
        f" --seed {subset['seed']}"
    )


def graph_limit(wildcards):
    graphs = molecules_config(wildcards.dataset).get("graphs") or {}
    return optional_flag("--max-molecules", graphs.get("max_molecules"))


def reference_source(wildcards):
    """MOSES ships Test and TestSF; QM9's test split is the held-out 10%."""
    if wildcards.dataset == "moses":
        return f"resources/molecules/moses/raw/{wildcards.split}.csv.gz"
    return f"resources/molecules/qm9/data/{wildcards.split}.smi"


def reference_flags(wildcards):
    reference = molecules_config(wildcards.dataset)["reference"]
    return f"{optional_flag('--max-molecules', reference['max_molecules'])} --seed {reference['seed']}"


def molecules_train_inputs(wildcards):
    data = f"resources/molecules/{wildcards.dataset}/data"
    inputs = {"train": f"{data}/train.smi", "valid": f"{data}/valid.smi"}
    if "graph" in batch_fields(wildcards.model):
        inputs["graphs_train"] = f"{data}/graphs_train.npz"
        inputs["graphs_valid"] = f"{data}/graphs_valid.npz"
    if "dense" in batch_fields(wildcards.model):
        inputs["dense"] = f"{data}/dense.npz"
    return inputs


def molecules_evaluate_inputs(wildcards):
    data = f"resources/molecules/{wildcards.dataset}/data"
    run = run_dir("molecules", wildcards.dataset, wildcards.model, wildcards.seed)
    inputs = {
        "samples": f"{run}/samples.csv",
        "checkpoint": f"{run}/model.ckpt",
        "train_all": f"{data}/train_all.smi",
        "ref_test": f"{data}/ref_test.npz",
    }
    if wildcards.dataset == "moses":  # the scaffold split exists for MOSES only
        inputs["ref_test_scaffolds"] = f"{data}/ref_test_scaffolds.npz"
    return inputs


# ---------------------------------------------------------------------------------------------
# 3D structures


def structures_config(dataset):
    return config["structures"][dataset]


def qm9_3d_subset_flags(wildcards):
    subset = structures_config("qm9-3d")["subset"]
    return (
        f"{optional_flag('--train-size', subset['train_size'])} --val-size {subset['val_size']}"
        f" --seed {subset['seed']}"
    )


def qm9_3d_reference_flags(wildcards):
    reference = structures_config("qm9-3d")["reference"]
    return f"{optional_flag('--max-molecules', reference['max_molecules'])} --seed {reference['seed']}"


def simulation_flags(wildcards):
    sim = structures_config("ala2")["simulation"]
    return (
        f"--nanoseconds {sim['nanoseconds']} --temperature {sim['temperature_kelvin']}"
        f" --timestep-fs {sim['timestep_fs']} --friction {sim['friction_per_ps']}"
        f" --save-every-ps {sim['save_every_ps']} --checkpoint-every-ps {sim['checkpoint_every_ps']}"
        f" --seed {sim['seed']} --platform {sim['platform']}"
    )


def ala2_split_flags(wildcards):
    split = structures_config("ala2")["split"]
    return f"--val-size {split['valid_frames']} --test-size {split['test_frames']}"


ALA2_DATA_FILES = (
    "train.dcd",
    "valid.dcd",
    "test.dcd",
    "topology.pdb",
    "alanine-dipeptide.prmtop",
    "prepare.json",
)
STRUCTURE_TRAIN_FILES = {"qm9-3d": ("train.npz", "valid.npz"), "ala2": ALA2_DATA_FILES}
STRUCTURE_EVALUATE_FILES = {
    "qm9-3d": ("test.npz", "train_smiles.txt"),
    "ala2": ALA2_DATA_FILES,
}


def structure_data(dataset):
    return f"resources/structures/{dataset}/data"


def structures_train_inputs(wildcards):
    data = structure_data(wildcards.dataset)
    return [f"{data}/{name}" for name in STRUCTURE_TRAIN_FILES[wildcards.dataset]]


def structures_data_dir(wildcards):
    return structure_data(wildcards.dataset)


def structures_evaluate_inputs(wildcards):
    run = run_dir("structures", wildcards.dataset, wildcards.model, wildcards.seed)
    data = structure_data(wildcards.dataset)
    return {
        "samples": f"{run}/{samples_file(wildcards.model)}",
        "checkpoint": f"{run}/model.ckpt",
        "reference": [
            f"{data}/{name}" for name in STRUCTURE_EVALUATE_FILES[wildcards.dataset]
        ],
    }


# The QM9 data row (EDM's metrics on real molecules) goes into the report beside the models.
STRUCTURE_DATA_ROWS = (
    ["resources/structures/qm9-3d/data/data_row.json"]
    if "qm9-3d" in config.get("structures", {})
    else []
)


# ---------------------------------------------------------------------------------------------
# Genetic sequences


def sequences_config(dataset):
    return config["sequences"][dataset]


def sequence_data(dataset):
    return f"resources/sequences/{dataset}/data"


def sequence_source_files(wildcards):
    from dgm_science.domains.sequences.data import DATASETS

    spec = DATASETS[wildcards.dataset]
    return [f"data/sequences/{spec.fasta}", f"data/sequences/{spec.split}"]


def sequences_data_dir(wildcards):
    return sequence_data(wildcards.dataset)


def sequence_subset_flags(wildcards):
    subset = sequences_config(wildcards.dataset)["subset"]
    return (
        f"{optional_flag('--train-size', subset['train_size'])}"
        f" {optional_flag('--max-residues', subset['max_residues'])} --seed {subset['seed']}"
    )


def sequences_data_files(wildcards):
    data = sequence_data(wildcards.dataset)
    return [
        f"{data}/{name}"
        for name in ("train.fasta", "valid.fasta", "test.fasta", "prepare.json")
    ]


# Beside each run's metrics: its test-set bits per residue, and seq-arm's compression figures.
SEQUENCE_EXTRAS = domain_targets("sequences", "test_likelihood.json") + [
    f"{run_dir('sequences', dataset, 'seq-arm', seed)}/compression.json"
    for dataset, ds_cfg in config.get("sequences", {}).items()
    if "seq-arm" in ds_cfg["models"] and ds_cfg["compression"]
    for seed in model_seeds("sequences", dataset, "seq-arm")
]


# ---------------------------------------------------------------------------------------------
# Robot trajectories


def trajectories_config(dataset):
    return config["trajectories"][dataset]


def trajectory_maze_of(wildcards):
    """The maze of pointmaze-<maze> and of its variants pointmaze-<maze>-<tag>."""
    return wildcards.dataset.removeprefix("pointmaze-").split("-")[0]


def trajectories_collect_flags(wildcards):
    collect = trajectories_config(wildcards.dataset)["collect"]
    return (
        f"--episodes {collect['episodes']} --episode-steps {collect['episode_steps']}"
        f" --noise {collect['noise']} --seed {collect['seed']}"
    )


def trajectories_data_files(wildcards):
    data = f"resources/trajectories/{wildcards.dataset}/data"
    return [f"{data}/train.npz", f"{data}/valid.npz", f"{data}/prepare.json"]


def trajectories_data_dir(wildcards):
    return f"resources/trajectories/{wildcards.dataset}/data"


def trajectories_rollout_flags(wildcards):
    """Episodes, seed, re-planning and the evaluation protocol (the {protocol} wildcard)."""
    rollout = trajectories_config(wildcards.dataset)["rollout"]
    return (
        f"--episodes {rollout['episodes']} --seed {rollout['seed']} --protocol {wildcards.protocol}"
        f" {optional_flag('--replan-every', rollout['replan_every'])}"
    )


def trajectories_map_aided_flags(wildcards):
    """The map-aided planner row: candidates ranked by wall hits and/or stitching along the shortest path."""
    aided = trajectories_config(wildcards.dataset)["rollout"].get("map_aided") or {}
    return f"--candidates {aided.get('candidates', 16)}" + (
        " --stitch" if aided.get("stitch", True) else ""
    )


def trajectories_protocols(dataset):
    return trajectories_config(dataset)["rollout"].get("protocols", ["d4rl", "multi2d"])


def trajectories_sample_flags(wildcards):
    """Where the plans' goals are drawn: anywhere, or within each plan's reach of its start."""
    plans = trajectories_config(wildcards.dataset)["plans"]
    return "--within-reach" if plans["within_reach"] else ""


OFFLINE_RL_DIR = "results/trajectories/{dataset}/offline-rl/{source}/{algo}/seed{seed}"


def offline_rl_config(dataset):
    return trajectories_config(dataset).get("offline_rl", {})


def offline_rl_flags(wildcards):
    """Updates, and the maze's rollout episodes and protocols: every agent meets the planners' episodes."""
    rollout = trajectories_config(wildcards.dataset)["rollout"]
    return (
        f"--updates {offline_rl_config(wildcards.dataset)['updates']}"
        f" --episodes {rollout['episodes']} --eval-seed {rollout['seed']}"
        f" --protocol {' '.join(trajectories_protocols(wildcards.dataset))}"
    )


def offline_rl_reshape_like(dataset):
    """The model whose executed plans shape expert-reshaped: reshape_like, else the first model."""
    ds_cfg = trajectories_config(dataset)
    model = offline_rl_config(dataset).get("reshape_like") or next(
        iter(ds_cfg["models"])
    )
    if model not in ds_cfg["models"]:
        raise ValueError(
            f"trajectories.{dataset}.offline_rl.reshape_like: {model!r} is not a model of this dataset "
            f"({', '.join(ds_cfg['models'])})"
        )
    return model


def offline_rl_source_files(wildcards):
    """The Minari datasets an offline RL source pools: "expert" (the collected data),
    "expert-reshaped" / "expert-executed" (the controls: the expert's transitions in the executed
    plans' shape; executed as plans are) and model
    names (that model's plans, executed in the simulator), joined by "+"."""
    ds_cfg = trajectories_config(wildcards.dataset)
    plans_seed = offline_rl_config(wildcards.dataset).get("plans_seed", 0)
    files = []
    for part in wildcards.source.split("+"):
        if part == "expert":
            files.append(f"resources/trajectories/{wildcards.dataset}/raw/minari")
        elif part in ("expert-reshaped", "expert-executed"):
            model = offline_rl_reshape_like(wildcards.dataset)
            run = run_dir("trajectories", wildcards.dataset, model, plans_seed)
            files.append(f"{run}/{part.replace('-', '_')}.minari")
        elif part in ds_cfg["models"]:
            run = run_dir("trajectories", wildcards.dataset, part, plans_seed)
            files.append(f"{run}/executed.minari")
        else:
            raise ValueError(
                f"trajectories.{wildcards.dataset}.offline_rl.sources: {part!r} is neither 'expert', "
                f"'expert-reshaped', 'expert-executed' nor a model of this dataset ({', '.join(ds_cfg['models'])})"
            )
    return files


def offline_rl_targets():
    """offline_rl.json of every (dataset, source, algorithm, seed) in the config."""
    targets = []
    for dataset in config.get("trajectories", {}):
        block = offline_rl_config(dataset)
        for source in block.get("sources", []):
            offline_rl_source_files(SimpleNamespace(dataset=dataset, source=source))
            targets += expand(
                f"{OFFLINE_RL_DIR}/offline_rl.json",
                dataset=dataset,
                source=source,
                algo=block["algos"],
                seed=block["seeds"],
            )
    return targets


def trajectory_rollout_targets():
    """Per run and protocol: the map-free planner's rollout and plans, the map-aided planner's
    rollout where configured; per dataset and protocol: the baselines' rollouts."""
    targets = []
    for dataset in config.get("trajectories", {}):
        rollout = trajectories_config(dataset)["rollout"]
        names = ["rollout_{protocol}.json", "plans_{protocol}.png"]
        if rollout.get("map_aided"):
            names.append("rollout_{protocol}_map-aided.json")
        for protocol in trajectories_protocols(dataset):
            targets += [
                f"{run_dir('trajectories', dataset, model, seed)}/{name.format(protocol=protocol)}"
                for model in trajectories_config(dataset)["models"]
                for seed in model_seeds("trajectories", dataset, model)
                for name in names
            ]
            targets += [
                f"resources/trajectories/{dataset}/{baseline}_rollout_{protocol}.json"
                for baseline in ("expert", "straight")
            ]
    return targets


# Beside each run's metrics: its closed-loop rollouts, its plans executed in the simulator and their
# two-sample test; per dataset: the baselines' rollouts, data stats and the offline RL agents.
TRAJECTORY_EXTRAS = (
    trajectory_rollout_targets()
    + domain_targets("trajectories", "two_sample.json")
    + offline_rl_targets()
    + [
        f"resources/trajectories/{dataset}/data/prepare.json"
        for dataset in config.get("trajectories", {})
    ]
)


# ---------------------------------------------------------------------------------------------
# Goal-directed design (workflows/rules/design.smk)


def design_config():
    return config.get("design") or {}


def design_targets(filename="summary.json"):
    """``results/design/{objective}/{method}/seed{seed}/{filename}`` of every run of the block."""
    block = design_config()
    return [
        f"results/design/{objective}/{method}/seed{seed}/{filename}"
        for objective in block.get("objectives", {})
        for method in block.get("methods", {})
        for seed in block.get("seeds", [0])
    ]


def design_objective(wildcards):
    return design_config()["objectives"][wildcards.objective]


def design_objective_file(wildcards):
    """The objective's YAML file as an input (a benchmark task is no file)."""
    spec = design_objective(wildcards)
    return [] if ":" in spec and not os.path.exists(spec) else [spec]


def design_settings(wildcards):
    return json.dumps(design_config()["methods"][wildcards.method], sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Property prediction (workflows/rules/prediction.smk)

PREDICTORS = ("hybrid-arm", "regressor-arm", "ensemble")


def prediction_config():
    return config.get("prediction") or {}


def prediction_model_config(wildcards):
    """The model's config with the block's targets and excluded elements written in (one source)."""
    block = prediction_config()
    entry = json.loads(json.dumps(block["models"][wildcards.model]))
    entry.setdefault("model", {}).update(
        targets=block["targets"], exclude_elements=block["exclude_elements"]
    )
    return json.dumps(entry, sort_keys=True)


def prediction_members(wildcards):
    """The checkpoints of a predictor: the hybrid, the first regressor, or every ensemble seed."""
    seeds = prediction_config()["ensemble_seeds"]
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
    block = prediction_config()
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
