# Robot trajectories: expert PointMaze data (simulator -> Minari) -> prepare (episode split); per
# run: closed-loop rollouts (success and D4RL-normalised score) with the expert's own beside, the
# sampled plans executed in the simulator (experience for RL), their two-sample test against the
# expert data, and offline RL agents (TorchRL) trained on each configured source. Train -> sample
# (a Minari dataset of plans) -> evaluate (open-loop dynamic consistency) are models.smk's rules
# over this domain's MODEL_RULES entry.
# Helpers: common.smk beside this file.


rule trajectories_collect:
    """The expert's trajectories as a local Minari dataset, and collect.json (steps, episodes, goals reached)."""
    output:
        data=directory("resources/trajectories/{dataset}/raw/minari"),
        stats="resources/trajectories/{dataset}/raw/collect.json",
    log:
        "logs/trajectories/{dataset}/collect.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/collect.tsv"
    wildcard_constraints:
        dataset=TRAJECTORY_BUILT_IN,
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    params:
        flags=trajectories_collect_flags,
        maze=trajectory_maze_of,
        out=output_folder("stats"),
    shell:
        "dgm collect {params.maze} --out {params.out} {params.flags} --threads 1 2> {log}"


rule trajectories_prepare:
    input:
        data="resources/trajectories/{dataset}/raw/minari",
        stats="resources/trajectories/{dataset}/raw/collect.json",
    output:
        expand(
            "resources/trajectories/{{dataset}}/data/{split}.npz",
            split=["train", "valid"],
        ),
        stats="resources/trajectories/{dataset}/data/prepare.json",
    log:
        "logs/trajectories/{dataset}/prepare.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/prepare.tsv"
    wildcard_constraints:
        dataset=TRAJECTORY_BUILT_IN,
    priority: PRIORITY.data
    conda:
        "../../../envs/conda.yaml"
    params:
        maze=trajectory_maze_of,
        raw=input_folder("stats"),
        out=output_folder("stats"),
    shell:
        "dgm prepare pointmaze-{params.maze} --raw {params.raw} --out {params.out} 2> {log}"


rule trajectories_rollout:
    """Closed loop under one evaluation protocol (d4rl: the maze's fixed goal; multi2d: random
    goals): the model's map-free planner (one plan per goal, one sample, as Diffuser) over seeded
    episodes; plans drawn over the maze."""
    input:
        "results/trajectories/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        summary="results/trajectories/{dataset}/{model}/seed{seed}/rollout_{protocol}.json",
        plot=report(
            "results/trajectories/{dataset}/{model}/seed{seed}/plans_{protocol}.png",
            caption="../../../report/plans.rst",
            category="Robot trajectories",
            subcategory="{dataset}",
            labels={"model": "{model}", "seed": "{seed}", "protocol": "{protocol}"},
        ),
    log:
        "logs/trajectories/{dataset}/{model}/seed{seed}/rollout_{protocol}.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{model}/seed{seed}/rollout_{protocol}.tsv"
    wildcard_constraints:
        dataset=TRAJECTORY_MAZES,
        protocol="d4rl|multi2d",
    conda:
        "../../../envs/conda.yaml"
    threads: 8
    params:
        flags=trajectories_rollout_flags,
        maze=trajectory_maze_of,
    shell:
        "dgm rollout --checkpoint {input} --maze {params.maze} {params.flags} --candidates 1"
        " --out {output.summary} --plot {output.plot} --threads {threads} 2> {log}"


rule trajectories_rollout_map_aided:
    """The map-aided planner row (rollout.map_aided): plans stitched along the maze's shortest path
    and/or the best of several candidates ranked by wall hits: map knowledge Diffuser does not have.
    """
    input:
        "results/trajectories/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        summary="results/trajectories/{dataset}/{model}/seed{seed}/rollout_{protocol}_map-aided.json",
    log:
        "logs/trajectories/{dataset}/{model}/seed{seed}/rollout_{protocol}_map-aided.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{model}/seed{seed}/rollout_{protocol}_map-aided.tsv"
    wildcard_constraints:
        dataset=TRAJECTORY_MAZES,
        protocol="d4rl|multi2d",
    conda:
        "../../../envs/conda.yaml"
    threads: 8
    params:
        flags=trajectories_rollout_flags,
        maze=trajectory_maze_of,
        planner=trajectories_map_aided_flags,
    shell:
        "dgm rollout --checkpoint {input} --maze {params.maze} {params.flags} {params.planner}"
        " --out {output.summary} --threads {threads} 2> {log}"


rule trajectories_execute:
    """The sampled plans executed in the simulator (PD tracking from each start): dynamically
    consistent transitions with the env's own rewards, a Minari dataset for offline RL.
    """
    input:
        "results/trajectories/{dataset}/{model}/seed{seed}/samples.minari",
    output:
        executed=directory(
            "results/trajectories/{dataset}/{model}/seed{seed}/executed.minari"
        ),
        stats="results/trajectories/{dataset}/{model}/seed{seed}/execute.json",
    log:
        "logs/trajectories/{dataset}/{model}/seed{seed}/execute.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{model}/seed{seed}/execute.tsv"
    wildcard_constraints:
        dataset=TRAJECTORY_BUILT_IN,
    conda:
        "../../../envs/conda.yaml"
    shell:
        "dgm execute --plans {input} --out {output.executed} --stats {output.stats} --threads 1 2> {log}"


rule trajectories_reshape:
    """The offline RL controls: the expert's transitions cut into single-goal episodes of this run's
    executed plans' shape (same count and lengths; the env's sparse reward): expert-reshaped (goal =
    the segment's final position) and expert-executed (each segment executed as a plan, from rest,
    the goal held once reached, as the sampled plans are)."""
    input:
        expert="resources/trajectories/{dataset}/raw/minari",
        like="results/trajectories/{dataset}/{model}/seed{seed}/executed.minari",
    output:
        data=directory(
            "results/trajectories/{dataset}/{model}/seed{seed}/expert_{variant}.minari"
        ),
        stats="results/trajectories/{dataset}/{model}/seed{seed}/expert_{variant}.json",
    log:
        "logs/trajectories/{dataset}/{model}/seed{seed}/reshape_{variant}.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{model}/seed{seed}/reshape_{variant}.tsv"
    wildcard_constraints:
        dataset=TRAJECTORY_BUILT_IN,
        variant="reshaped|executed",
    conda:
        "../../../envs/conda.yaml"
    params:
        execute=lambda wildcards: (
            " --execute" if wildcards.variant == "executed" else ""
        ),
    shell:
        "dgm reshape --expert {input.expert} --like {input.like} --seed {wildcards.seed}{params.execute}"
        " --out {output.data} --stats {output.stats} 2> {log}"


rule trajectories_two_sample:
    """Realism of the synthetic transitions: a classifier two-sample test of (s, a, s') against the
    expert data, for the raw plans and the executed ones."""
    input:
        real="resources/trajectories/{dataset}/raw/minari",
        plans="results/trajectories/{dataset}/{model}/seed{seed}/samples.minari",
        executed="results/trajectories/{dataset}/{model}/seed{seed}/executed.minari",
    output:
        "results/trajectories/{dataset}/{model}/seed{seed}/two_sample.json",
    log:
        "logs/trajectories/{dataset}/{model}/seed{seed}/two_sample.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{model}/seed{seed}/two_sample.tsv"
    wildcard_constraints:
        dataset=TRAJECTORY_BUILT_IN,
    conda:
        "../../../envs/conda.yaml"
    threads: 2
    shell:
        "dgm two-sample --real {input.real} --synthetic {input.plans} {input.executed}"
        " --seed {wildcards.seed} --out {output} --threads {threads} 2> {log}"


rule trajectories_offline_rl:
    """An offline RL agent (TorchRL) on a source's transitions (expert data, executed plans, or
    both pooled), evaluated closed loop on the maze's seeded episodes."""
    input:
        offline_rl_source_files,
    output:
        summary=f"{OFFLINE_RL_DIR}/offline_rl.json",
        policy=f"{OFFLINE_RL_DIR}/policy.pt",
    log:
        "logs/trajectories/{dataset}/offline-rl/{source}/{algo}/seed{seed}.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/offline-rl/{source}/{algo}/seed{seed}.tsv"
    wildcard_constraints:
        dataset=TRAJECTORY_BUILT_IN,
        source="[a-z0-9-]+(\\+[a-z0-9-]+)*",
        algo="iql|cql|td3bc",
    priority: PRIORITY.sample
    conda:
        "../../../envs/conda.yaml"
    threads: 1
    params:
        flags=offline_rl_flags,
    shell:
        "dgm offline-rl --dataset {input} --algo {wildcards.algo} --seed {wildcards.seed} {params.flags}"
        " --out {output.summary} --policy {output.policy} --threads {threads} 2> {log}"


rule trajectories_baseline_rollout:
    """Policies without a model on the same seeded episodes of a protocol: the expert planner (the
    reference row) and the controller aimed straight at the goal (what a plan adds)."""
    output:
        summary="resources/trajectories/{dataset}/{baseline}_rollout_{protocol}.json",
    log:
        "logs/trajectories/{dataset}/{baseline}_rollout_{protocol}.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{baseline}_rollout_{protocol}.tsv"
    wildcard_constraints:
        dataset=TRAJECTORY_MAZES,
        baseline="expert|straight",
        protocol="d4rl|multi2d",
    conda:
        "../../../envs/conda.yaml"
    params:
        flags=trajectories_rollout_flags,
        maze=trajectory_maze_of,
    shell:
        "dgm rollout --baseline {wildcards.baseline} --maze {params.maze} {params.flags} --out {output.summary}"
        " --threads 1 2> {log}"


rule trajectories_env_rollout:
    """A model of a user's Minari dataset in that dataset's environment (dgm rollout --protocol env): its
    resets, the plan's actions executed and re-planned, the return beside a random policy's and the data's;
    when the environment is not installed, rollout_env.json says that the closed loop was skipped and why.
    """
    input:
        "results/trajectories/{dataset}/{model}/seed{seed}/model.ckpt",
    output:
        "results/trajectories/{dataset}/{model}/seed{seed}/rollout_env.json",
    log:
        "logs/trajectories/{dataset}/{model}/seed{seed}/rollout_env.log",
    benchmark:
        "benchmarks/trajectories/{dataset}/{model}/seed{seed}/rollout_env.tsv"
    wildcard_constraints:
        dataset=one_of(USER_ENVS),
    conda:
        "../../../envs/conda.yaml"
    threads: 1
    params:
        flags=lambda wildcards: trajectories_rollout_flags(
            SimpleNamespace(dataset=wildcards.dataset, protocol="env")
        ),
    shell:
        "dgm rollout --checkpoint {input} {params.flags} --out {output} --threads {threads} 2> {log}"
