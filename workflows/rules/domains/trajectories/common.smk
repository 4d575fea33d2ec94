# The trajectories domain's helpers (for rules.smk beside this file) and its entry in the table of
# model rules (MODEL_RULES: train, sample and evaluate are models.smk's rules).


def trajectories_config(dataset):
    return lookup(dpath=f"trajectories/{dataset}", within=config)


TRAJECTORY_BUILT_IN = "pointmaze-(umaze|medium|large)(-[a-z0-9]+)?"
"""The dataset wildcard of the rules that collect, prepare and use the expert data of the built-in mazes
(and their variants pointmaze-<maze>-<tag>); a user dataset (a source block) is prepared by the import rule."""
USER_MAZES = user_datasets("trajectories", "trajectories")
USER_MAZES = {
    name: block for name, block in USER_MAZES.items() if block["kind"] == "maze"
}
"""User datasets of kind maze (a maze map): their models roll out in the simulator like the built-in mazes'."""
USER_ENVS = {
    name: block
    for name, block in user_datasets("trajectories", "trajectories").items()
    if block["kind"] != "maze"
}
"""User datasets of another environment (kind minari): closed loop in that environment if installed."""
TRAJECTORY_MAZES = f"{TRAJECTORY_BUILT_IN}|{one_of(USER_MAZES)}"
"""The datasets with a maze: the rollout and baseline rules' dataset wildcard."""


def trajectory_maze_of(wildcards):
    """The maze of pointmaze-<maze> and of its variants pointmaze-<maze>-<tag>; a user maze's ``map:`` name."""
    if (
        wildcards.dataset in USER_MAZES
    ):  # mazes.custom_maze_name's encoding (a dry run imports no domain)
        rows = USER_MAZES[wildcards.dataset]["maze_map"]
        return "map:" + "/".join(
            "".join(str(cell).lower() for cell in row) for row in rows
        )
    return wildcards.dataset.removeprefix("pointmaze-").split("-")[0]


def trajectories_collect_flags(wildcards):
    collect = trajectories_config(wildcards.dataset)["collect"]
    return (
        f"--episodes {collect['episodes']} --episode-steps {collect['episode_steps']}"
        f" --noise {collect['noise']} --seed {collect['seed']}"
    )


def trajectories_data_files(wildcards):
    data = data_folder("trajectories", wildcards.dataset)
    return [f"{data}/train.npz", f"{data}/valid.npz", f"{data}/prepare.json"]


def trajectories_rollout_flags(wildcards):
    """Episodes, seed, re-planning and the evaluation protocol (the {protocol} wildcard)."""
    rollout = trajectories_config(wildcards.dataset).get("rollout", {})
    return (
        f"--episodes {rollout.get('episodes', 100)} --seed {rollout.get('seed', 0)} --protocol {wildcards.protocol}"
        f" {optional_flag('--replan-every', rollout.get('replan_every'))}"
    )


def trajectories_map_aided_flags(wildcards):
    """The map-aided planner row: candidates ranked by wall hits and/or stitching along the shortest path."""
    aided = trajectories_config(wildcards.dataset)["rollout"].get("map_aided") or {}
    return f"--candidates {aided.get('candidates', 16)}" + (
        " --stitch" if aided.get("stitch", True) else ""
    )


def trajectories_protocols(dataset):
    default = ["multi2d"] if dataset in USER_MAZES else ["d4rl", "multi2d"]
    return trajectories_config(dataset).get("rollout", {}).get("protocols", default)


def trajectories_sample_flags(wildcards):
    """Where the plans' goals are drawn: anywhere, or within each plan's reach of its start."""
    plans = trajectories_config(wildcards.dataset).get("plans", {})
    return "--within-reach" if plans.get("within_reach") else ""


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
        if dataset in USER_ENVS:  # another environment: its own resets (protocol env)
            targets += [
                f"{run_dir('trajectories', dataset, model, seed)}/rollout_env.json"
                for model in trajectories_config(dataset)["models"]
                for seed in model_seeds("trajectories", dataset, model)
            ]
            continue
        rollout = trajectories_config(dataset).get("rollout", {})
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


MODEL_RULES["trajectories"] = ModelRules(
    train_inputs=trajectories_data_files,
    # plans between drawn starts and goals as a Minari dataset (synthetic experience) + samples.csv
    samples={
        "trajectories_sample": {
            "samples": directory("samples.minari"),
            "table": "samples.csv",
        }
    },
    sample_flags=trajectories_sample_flags,
    # open-loop plan quality in the simulator (dynamic consistency, walls, goal reach)
    evaluate_inputs=lambda wildcards: {
        "table": f"{run_dir('trajectories', wildcards.dataset, wildcards.model, wildcards.seed)}/samples.csv",
        "data": trajectories_data_files(wildcards),
    },
    evaluate_threads=1,
    # a user dataset (dgm_science/domains/trajectories/sources.py: kinds minari and maze)
    prepared={"trajectories": ["train.npz", "valid.npz", "test.npz", "prepare.json"]},
    # beside each run's metrics: its closed-loop rollouts, its plans executed in the simulator and
    # their two-sample test; per dataset: the baselines' rollouts, data stats and offline RL agents
    extras=trajectory_rollout_targets()
    + [  # the two-sample test compares with the collected expert data: the built-in mazes'
        target
        for target in domain_targets("trajectories", "two_sample.json")
        if re.fullmatch(TRAJECTORY_BUILT_IN, target.split("/")[2])
    ]
    + offline_rl_targets()
    + [
        f"resources/trajectories/{dataset}/data/prepare.json"
        for dataset in config.get("trajectories", {})
    ],
)
