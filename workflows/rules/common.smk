# What every rules file uses: the catalog of registered models, the config's domains and seeds, the
# table of model rules each domain's rules file fills in (instantiated once in models.smk), and the
# helpers for paths, params and resources. Domain- and application-specific helpers live in their
# own rules files (workflows/rules/domains/, workflows/rules/applications/).
import json
import os
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

from snakemake.exceptions import WorkflowError
from snakemake.io import is_flagged

from dgm_science.resources import runtime_minutes

SEEDS = config["seeds"]
# The domain blocks of the (validated) config: a new domain needs no edit here. The registered
# applications' blocks (dgm_science/applications, workflows/rules/applications/) are not domains.
APPLICATIONS = {facts["config_key"] for facts in CATALOG.applications.values()}
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
# The model rules' table: each domain's rules file adds its entry, models.smk writes the rules.


@dataclass
class ModelRules:
    """How the generic train / sample / evaluate (/ likelihood) rules of a config block (a domain
    group: ``molecules``, ``structures``, ...) differ from another's; models.smk names them
    ``<group>_train``, each of ``samples``, ``<group>_evaluate`` and ``<group>_likelihood``.

    ``train_inputs`` and ``evaluate_inputs``: input functions (wildcards -> list or dict of files);
    the data folder passed to ``--data`` / ``--reference`` is resources/<group>/<dataset>/data.
    ``samples``: sample rule name -> its outputs, file names in the run folder (``directory()``
    for a folder); the first is the samples file, ``sampling.json`` is added to each.
    ``sample_flags``: a params function, extra ``dgm sample`` options.
    ``likelihood``: ``(flag, input function)`` of ``dgm likelihood`` on held-out data, or None.
    ``extras``: what the group's target rule and the report ask beyond each run's metrics.
    ``prepared``: registered domain -> the files its prepare writes into the data folder (the
    outputs of models.smk's ``<domain>_import`` rule, which prepares a user dataset of that domain).
    """

    train_inputs: Callable
    samples: dict[str, dict[str, str]]
    evaluate_inputs: Callable
    evaluate_threads: int = 8
    sample_flags: Callable | str = ""
    likelihood: tuple[str, Callable] | None = None
    extras: list[str] = field(default_factory=list)
    prepared: dict[str, list[str]] = field(default_factory=dict)


MODEL_RULES: dict[str, ModelRules] = {}
APPLICATION_TARGETS: dict[str, list[str]] = {}
"""What each application's rules file (workflows/rules/applications/) adds to the report."""


# ---------------------------------------------------------------------------------------------
# Datasets: built-in (registered, fetched or committed) and the user's (a block with a `source`)


def user_datasets(group, domain=None):
    """The user datasets of a config group (of one registered ``domain``): name -> source block."""
    return {
        name: block["source"]
        for name, block in config.get(group, {}).items()
        if "source" in block
        and (
            domain is None
            or CATALOG.source(block["source"]["kind"])["domain"] == domain
        )
    }


def dataset_domain(group, dataset):
    """The registered domain of a dataset of ``group``: its file kind's, or the built-in dataset's."""
    source = config[group][dataset].get("source")
    if source is not None:
        return CATALOG.source(source["kind"])["domain"]
    return CATALOG.dataset(dataset)["domain"]


def one_of(names):
    """A wildcard constraint matching exactly ``names`` (none: a pattern that matches nothing)."""
    return "|".join(re.escape(name) for name in sorted(names)) or "(?!x)x"


def source_block(group, dataset):
    """A user dataset's source block as JSON (the ``dgm prepare --source`` argument)."""
    return json.dumps(config[group][dataset]["source"], sort_keys=True)


def source_files(group, dataset):
    """The user's files a source block names (the import rule's inputs)."""
    source = config[group][dataset]["source"]
    files = []
    for key in CATALOG.source(source["kind"])["file_fields"]:
        value = source.get(key)
        files.extend(
            [] if value is None else [value] if isinstance(value, str) else value
        )
    return files


BUILT_IN = one_of(CATALOG.datasets)
"""The dataset wildcard of the rules that fetch and prepare the built-in datasets."""


def check_dataset_names():
    """A dataset name is one folder of resources/ and results/ per group; the same name in two groups
    (or a user dataset named like a built-in one) would be two datasets under one name in the report.
    """
    seen = {}
    for group in DOMAINS:
        for name in config.get(group, {}):
            if name in seen:
                raise WorkflowError(
                    f"config: dataset {name!r} is declared under both {seen[name]} and {group}; "
                    "dataset names must be unique"
                )
            seen[name] = group


check_dataset_names()


# ---------------------------------------------------------------------------------------------
# Models and runs


def model_entry(group, dataset, model):
    return config[group][dataset]["models"][model]


def model_config_json(group, dataset, model):
    """The model's whole config (model / train / sample) as JSON: a params value, so that
    changing one model's config re-runs that model's chain only (its ``seeds`` say which runs
    there are, not how each is trained)."""
    entry = model_entry(group, dataset, model)
    return json.dumps({k: v for k, v in entry.items() if k != "seeds"}, sort_keys=True)


def train_inputs_of(group, inputs):
    """An input function: the group's training inputs (``inputs``) and, for a fine-tuning run
    (``train.init_from``), the checkpoint it starts from, so that a changed prior trains it again.
    """

    def of(wildcards):
        found = inputs(wildcards)
        prior = (
            model_entry(group, wildcards.dataset, wildcards.model).get("train") or {}
        ).get("init_from")
        if not prior:
            return found
        return (
            {**found, "init_from": prior}
            if isinstance(found, dict)
            else [*found, prior]
        )

    return of


def model_seeds(group, dataset, model):
    """The seeds a model runs with: its own ``seeds`` (e.g. 3 of a family in the trade-off
    overlay), else the config's."""
    return model_entry(group, dataset, model).get("seeds", SEEDS)


def model_config(group):
    """A params function: the model's config (see model_config_json) of the job's wildcards."""

    def config_of(wildcards):
        return model_config_json(group, wildcards.dataset, wildcards.model)

    return config_of


def sample_count(group):
    """A params function: how many samples the model's sample: n asks for (10,000 if unset)."""
    return lookup(
        dpath=f"{group}/{{dataset}}/models/{{model}}/sample/n",
        within=config,
        default=10000,
    )


def model_facts(model):
    """The catalog's facts of a model (domain, batch fields, capabilities, resources)."""
    return CATALOG.model(model)


def model_domain(wildcards):
    return model_facts(wildcards.model)["domain"]


def samples_file(model):
    """The samples file of a model's domain: samples.csv (molecules), samples.sdf (QM9
    conformations), samples.dcd (molecular dynamics), samples.fasta (sequences), samples.minari
    (trajectories)."""
    return model_facts(model)["samples_file"]


def run_dir(group, dataset, model, seed):
    """A run's folder (RUN, filled in)."""
    return RUN.format(group=group).format(dataset=dataset, model=model, seed=seed)


RUN = "results/{group}/{{dataset}}/{{model}}/seed{{seed}}"
"""A run's folder as a rule pattern, ``RUN.format(group=...)``."""


def data_folder(group, dataset):
    """The dataset's prepared data folder."""
    return f"resources/{group}/{dataset}/data"


def data_dir(group):
    """A params function: the job's dataset's prepared data folder (data_folder)."""

    def folder(wildcards):
        return data_folder(group, wildcards.dataset)

    return folder


def domain_targets(group, filename=None, where=None):
    """``filename`` of every run of ``group`` in the config (none if the config has no such
    block); ``None`` means each model's samples file; ``where``: only models whose catalog facts
    pass it."""
    return [
        f"{run_dir(group, dataset, model, seed)}/{filename or samples_file(model)}"
        for dataset, ds_cfg in config.get(group, {}).items()
        for model in ds_cfg["models"]
        if where is None or where(model_facts(model))
        for seed in model_seeds(group, dataset, model)
    ]


# ---------------------------------------------------------------------------------------------
# The model rules' inputs and outputs (models.smk)


def sample_outputs(group, files):
    """A sample rule's outputs: ``files`` (name -> file in the run folder, ``directory()`` for a
    folder) and the timing."""
    run = RUN.format(group=group)
    outputs = {
        name: (
            directory(f"{run}/{file}")
            if is_flagged(file, "directory")
            else f"{run}/{file}"
        )
        for name, file in files.items()
    }
    return {**outputs, "timing": f"{run}/sampling.json"}


def evaluate_inputs(group, extra):
    """The run's samples and checkpoint, and the domain's reference files (``extra``)."""

    def inputs(wildcards):
        run = run_dir(group, wildcards.dataset, wildcards.model, wildcards.seed)
        return {
            "samples": f"{run}/{samples_file(wildcards.model)}",
            "checkpoint": f"{run}/model.ckpt",
            **extra(wildcards),
        }

    return inputs


# ---------------------------------------------------------------------------------------------
# Params


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


# ---------------------------------------------------------------------------------------------
# Resources


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


def train_resource(key, entry):
    """A resources function of a train rule, from the model's declared ``train_resources``
    (dgm_science/resources.py): ``runtime`` (minutes, from the job's own max_steps and
    max_time_minutes in ``entry(wildcards)``, the model's config), ``mem_mb`` or ``gpu``. Local
    runs ignore them; the Slurm profile asks for them (the test cluster's profile overrides them).
    """

    def value(wildcards):
        declared = model_facts(wildcards.model)["train_resources"]
        if key == "runtime":
            return runtime_minutes(declared, entry(wildcards)["train"])
        return declared["gpus" if key == "gpu" else key]

    return value


def train_resources(entry):
    """The ``runtime``, ``mem_mb`` and ``gpu`` resources of a train rule (see train_resource)."""
    return {key: train_resource(key, entry) for key in ("runtime", "mem_mb", "gpu")}


def model_entry_of(group):
    """A function of the job's wildcards: the model's config entry in ``group``."""

    def entry(wildcards):
        return model_entry(group, wildcards.dataset, wildcards.model)

    return entry
