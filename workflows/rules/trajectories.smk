# Robot trajectories: expert PointMaze data (simulator -> Minari) -> prepare (episode split) ->
# train -> sample (a Minari dataset of plans) -> evaluate (open-loop dynamic consistency) and
# rollout (closed-loop success and D4RL-normalised score), with the expert's own rollout beside.


def trajectories_config(dataset):
    return config["trajectories"][dataset]


def trajectory_maze(dataset):
    return dataset.removeprefix("pointmaze-")


def trajectory_maze_of(wildcards):
    return trajectory_maze(wildcards.dataset)


def trajectories_collect_flags(wildcards):
    collect = trajectories_config(wildcards.dataset)["collect"]
    return (f"--episodes {collect['episodes']} --episode-steps {collect['episode_steps']}"
            f" --noise {collect['noise']} --seed {collect['seed']}")


rule trajectories_collect:
    """The expert's trajectories as a local Minari dataset, and collect.json (steps, episodes, goals reached)."""
    output:
        data=directory("resources/trajectories/{dataset}/raw/minari"),
        stats="resources/trajectories/{dataset}/raw/collect.json",
    params:
        flags=trajectories_collect_flags,
        maze=trajectory_maze_of,
    log:
        "logs/trajectories/{dataset}/collect.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/collect.tsv"
    shell:
        "{DGM} collect {params.maze} --out resources/trajectories/{wildcards.dataset}/raw {params.flags}"
        " --threads 1 2> {log}"


rule trajectories_prepare:
    input:
        data="resources/trajectories/{dataset}/raw/minari",
        stats="resources/trajectories/{dataset}/raw/collect.json",
    output:
        expand("resources/trajectories/{{dataset}}/data/{split}.npz", split=["train", "valid"]),
        stats="resources/trajectories/{dataset}/data/prepare.json",
    log:
        "logs/trajectories/{dataset}/prepare.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/prepare.tsv"
    shell:
        "{DGM} prepare {wildcards.dataset} --raw resources/trajectories/{wildcards.dataset}/raw"
        " --out resources/trajectories/{wildcards.dataset}/data 2> {log}"


def trajectories_data_files(wildcards):
    data = f"resources/trajectories/{wildcards.dataset}/data"
    return [f"{data}/train.npz", f"{data}/valid.npz", f"{data}/prepare.json"]


def trajectories_model_config(wildcards):
    return model_config_json("trajectories", wildcards.dataset, wildcards.model)


rule trajectories_train:
    input:
        trajectories_data_files,
    output:
        "results/trajectories/{dataset}/{model}/seed{seed}/model.ckpt",
    params:
        config=trajectories_model_config,
    threads: workflow.cores
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=60,
    log:
        "logs/trajectories/{dataset}/{model}/seed{seed}/train.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{model}/seed{seed}/train.tsv"
    shell:
        "{DGM} train --model {wildcards.model} --data resources/trajectories/{wildcards.dataset}/data"
        " --config '{params.config}' --seed {wildcards.seed} --out {output} --threads {threads} 2> {log}"


def trajectories_sample_n(wildcards):
    return trajectories_config(wildcards.dataset)["models"][wildcards.model].get("sample", {}).get("n", 10000)


rule trajectories_sample:
    """Plans between drawn starts and goals as a Minari dataset (synthetic experience) + samples.csv."""
    input:
        "results/trajectories/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        samples=directory("results/trajectories/{dataset}/{model}/seed{seed}/samples.minari"),
        table="results/trajectories/{dataset}/{model}/seed{seed}/samples.csv",
    params:
        n=trajectories_sample_n,
    threads: workflow.cores
    log:
        "logs/trajectories/{dataset}/{model}/seed{seed}/sample.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{model}/seed{seed}/sample.tsv"
    shell:
        "{DGM} sample --checkpoint {input} -n {params.n} --seed {wildcards.seed} --out {output.samples}"
        " --threads {threads} 2> {log}"


rule trajectories_evaluate:
    """Open-loop plan quality in the simulator (dynamic consistency, walls, goal reach), data row beside."""
    input:
        samples="results/trajectories/{dataset}/{model}/seed{seed}/samples.minari",
        table="results/trajectories/{dataset}/{model}/seed{seed}/samples.csv",
        data=trajectories_data_files,
    output:
        "results/trajectories/{dataset}/{model}/seed{seed}/metrics.json",
    threads: 1
    log:
        "logs/trajectories/{dataset}/{model}/seed{seed}/evaluate.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{model}/seed{seed}/evaluate.tsv"
    shell:
        "{DGM} evaluate --domain trajectories --samples {input.samples}"
        " --reference resources/trajectories/{wildcards.dataset}/data --out {output} 2> {log}"


def trajectories_rollout_flags(wildcards):
    rollout = trajectories_config(wildcards.dataset)["rollout"]
    return (f"--episodes {rollout['episodes']} --seed {rollout['seed']}"
            f" {optional_flag('--replan-every', rollout['replan_every'])}")


def trajectories_candidates(wildcards):
    return trajectories_config(wildcards.dataset)["rollout"]["candidates"]


rule trajectories_rollout:
    """Closed loop: the model's planner policy over seeded episodes; plans drawn over the maze."""
    input:
        "results/trajectories/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        summary="results/trajectories/{dataset}/{model}/seed{seed}/rollout.json",
        plot="results/trajectories/{dataset}/{model}/seed{seed}/plans.png",
    params:
        flags=trajectories_rollout_flags,
        maze=trajectory_maze_of,
        candidates=trajectories_candidates,
    threads: workflow.cores
    log:
        "logs/trajectories/{dataset}/{model}/seed{seed}/rollout.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{model}/seed{seed}/rollout.tsv"
    shell:
        "{DGM} rollout --checkpoint {input} --maze {params.maze} {params.flags} --candidates {params.candidates}"
        " --out {output.summary}"
        " --plot {output.plot} --threads {threads} 2> {log}"


rule trajectories_baseline_rollout:
    """Policies without a model on the same seeded episodes: the expert planner (the reference row)
    and the controller aimed straight at the goal (what a plan adds)."""
    output:
        summary="resources/trajectories/{dataset}/{baseline}_rollout.json",
    params:
        flags=trajectories_rollout_flags,
        maze=trajectory_maze_of,
    wildcard_constraints:
        baseline="expert|straight",
    log:
        "logs/trajectories/{dataset}/{baseline}_rollout.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{baseline}_rollout.tsv"
    shell:
        "{DGM} rollout --baseline {wildcards.baseline} --maze {params.maze} {params.flags} --out {output.summary}"
        " --threads 1 2> {log}"


# Beside each run's metrics: its closed-loop rollout; per dataset: the baselines' rollouts and data stats.
TRAJECTORY_EXTRAS = domain_targets("trajectories", "rollout.json") + domain_targets("trajectories", "plans.png") + [
    f"resources/trajectories/{dataset}/{name}"
    for dataset in config.get("trajectories", {})
    for name in ("expert_rollout.json", "straight_rollout.json", "data/prepare.json")
]


rule trajectories:
    input:
        domain_targets("trajectories", "metrics.json"),
        TRAJECTORY_EXTRAS,
