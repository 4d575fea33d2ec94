"""The workflow's static contract: the SLURM profile names real rules, puts every rule that loads a
model on a GPU, and gives each job exactly the CPUs its command uses; `snakemake --lint` finds
nothing; the Snakefile and rule files are snakefmt-formatted; every config key is documented."""

from __future__ import annotations

import concurrent.futures
import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import workflow_plan
from tests.workflow_fixtures import executed_jobs

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflows/profiles/slurm/config.yaml"
PAPER = "workflows/config/paper.yaml"
RULE_FILES = sorted((ROOT / "workflows/rules").rglob("*.smk"))
# `dgm` subcommands that load a trained model: their rules must run on a GPU under the profile.
MODEL_COMMAND = re.compile(r"\bdgm (train|sample|likelihood|compress|optimize|decorate|rollout --checkpoint)\b")


def snakemake(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def shell_commands(result: subprocess.CompletedProcess, starts: str = "") -> list[str]:
    """The shell commands a ``snakemake -n -p`` run printed, those starting with ``starts``."""
    commands = [line.removeprefix("Shell command:").strip() for line in result.stdout.splitlines()
                if line.startswith("Shell command:")]
    return [c for c in commands if c.startswith(starts)]


def rule_shells() -> dict[str, str]:
    """Each rule's shell command, as its first job in the committed plans (tests/data/workflow/, which
    test_the_rules_plan_the_committed_jobs_and_commands keeps equal to the dry runs): the model rules
    are written once in a loop (models.smk), so their names are not in the rule files' text."""
    shells = {}
    for path in sorted(workflow_plan.PLANS.glob("plan-*.txt")):
        for job in path.read_text().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in job.strip().splitlines())
            shells.setdefault(fields["rule"], "" if fields.get("shell") == "None" else fields.get("shell", ""))
    return shells


@pytest.fixture(scope="module")
def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


@pytest.fixture(scope="module")
def paper_rules() -> set[str]:
    result = snakemake("--list-rules", "--configfile", PAPER)
    assert result.returncode == 0, result.stderr[-3000:]
    # one rule a line, its docstring after it (continuation lines indented)
    rules = {line.split()[0] for line in result.stdout.splitlines() if line and not line[0].isspace()}
    assert {"molecules_train", "report", "all"} <= rules
    return rules


def test_every_rule_has_a_job_in_a_committed_plan(paper_rules):
    # no rule the default, paper and overlay configs never run (and the plans know every rule), but the
    # target rule of each config block (`snakemake molecules`, `snakemake design`)
    planned = set(rule_shells())
    blocks = set(yaml.safe_load((ROOT / "workflows/schemas/config.schema.yaml").read_text())["properties"])
    assert planned <= paper_rules and paper_rules - planned <= blocks, (planned ^ paper_rules)
    assert {"molecules", "structures", "sequences", "trajectories", "design", "prediction"} <= paper_rules


def test_profile_names_only_rules_that_exist(profile, paper_rules):
    named = set(profile["set-threads"]) | set(profile["set-resources"])
    assert named <= paper_rules, f"not rules of the workflow: {sorted(named - paper_rules)}"


def test_every_rule_that_loads_a_model_gets_a_gpu(profile):
    model_rules = {name for name, shell in rule_shells().items() if MODEL_COMMAND.search(shell)}
    assert {"molecules_train", "conformers_sample", "sequences_likelihood", "trajectories_rollout"} <= model_rules
    cpu_partition = profile["default-resources"]["slurm_partition"]
    for rule in sorted(model_rules):
        resources = profile["set-resources"].get(rule)
        assert resources, f"{rule} loads a model but the profile gives it no resources (CPU partition)"
        if not rule.endswith("_train"):  # a train job's GPUs are its model's (test_every_model_declares...)
            assert resources.get("gpu", 0) >= 1, f"{rule} gets no GPU"
        else:
            assert not {"gpu", "runtime", "mem_mb"} & set(resources), f"{rule}: the profile hides the model's resources"
        assert resources["slurm_partition"] != cpu_partition, f"{rule} is left on the CPU partition"
        # one Slurm task per job: no --ntasks-per-gpu, whatever the plugin version's default
        assert resources.get("tasks_per_gpu") == 0, rule
        if not rule.endswith("_train"):  # a train job's runtime and memory are its model's (below)
            assert resources["mem_mb"] >= 16000 and resources["runtime"] >= 120, rule


def test_cpus_asked_of_slurm_are_the_threads_the_command_uses(profile):
    """The executor asks for --cpus-per-task = threads unless cpus_per_task / cpus_per_gpu is
    set: the profile sets neither, so the CPUs come from set-threads, which the commands get."""
    for rule, resources in {"default-resources": profile["default-resources"], **profile["set-resources"]}.items():
        assert not {"cpus_per_task", "cpus_per_gpu"} & set(resources), rule
    for path in [*RULE_FILES, ROOT / "Snakefile"]:
        assert "workflow.cores" not in path.read_text(), f"{path.name}: threads must not follow --cores"
    # every rule whose command takes a thread count has its threads set by the profile
    # (the rules of models.smk, written in a loop, all pass {threads}; the others say so in their text)
    templates = {}
    for path in RULE_FILES:
        blocks = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.M)
        templates.update((name, body.split("\n\n\n")[0]) for name, body in zip(blocks[1::2], blocks[2::2]))
    threaded = {name for name, body in templates.items() if "{threads}" in body}
    threaded |= set(rule_shells()) - set(templates) - {"all"}
    assert threaded - {"ala2_simulate"} <= set(profile["set-threads"]), threaded - set(profile["set-threads"])
    # the dry run of the paper config under the profile: each command's --threads / --jobs is the
    # rule's set-threads value (no --cores needed; --cores 64 only lifts the dry run's 1-core cap)
    result = snakemake("-n", "-p", "--profile", str(PROFILE.parent), "--configfile", PAPER, "--cores", "64")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = {}
    for rule, block in re.findall(r"^rule (\w+):\n(.*?)(?=^\[|\Z)", result.stdout, flags=re.M | re.S):
        threads = re.search(r"--(?:threads|jobs) (\d+)", block)
        if threads and rule in profile["set-threads"]:
            seen.setdefault(rule, set()).add(int(threads.group(1)))
    assert seen and all(values == {profile["set-threads"][rule]} for rule, values in seen.items()), seen


def test_paper_config_parses_under_the_slurm_profile_without_cores():
    result = snakemake("-n", "--quiet", "rules", "--profile", str(PROFILE.parent), "--configfile", PAPER)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("configfile", ["workflows/config/default.yaml", PAPER])
def test_lint_finds_nothing(configfile):
    result = snakemake("--lint", "--configfile", configfile)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "Lints for" not in out, out[-5000:]
    assert "Congratulations, your workflow is in a good condition!" in out


def test_workflow_is_snakefmt_formatted():
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent)) or shutil.which("snakefmt")
    if snakefmt is None:
        pytest.skip("snakefmt is not installed (pip install snakefmt)")
    result = subprocess.run([snakefmt, "--check", "Snakefile", "workflows"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_the_conda_env_and_the_env_exists():
    env = ROOT / "workflows/envs/conda.yaml"
    assert yaml.safe_load(env.read_text())["name"] == "dgm-science"
    assert (ROOT / "envs/conda.yaml").resolve() == env.resolve()
    for path in RULE_FILES:
        # every rule of the file (`rule name:`, or `rule:` in a loop) that runs a command has the env
        text = path.read_text()
        depth = len(path.relative_to(ROOT / "workflows/rules").parts)
        for rule in re.split(r"^ *rule\b", text, flags=re.M)[1:]:
            if re.search(r"^ *shell:", rule, flags=re.M):
                assert re.search(rf'^ *conda:\n *"{"../" * depth}envs/conda.yaml"', rule, flags=re.M), path.name


def schema_keys() -> tuple[set[str], set[tuple[str, str]]]:
    """Every key the config schema allows: dotted paths (`<dataset>` where a domain's datasets
    share one definition, `train.*` / `sample.*` for every model's blocks) and (model, `model.*`)."""
    from dgm_science.schema import pipeline_schema

    schema = pipeline_schema()
    defs = schema["$defs"]

    def resolve(node):
        return defs[node["$ref"].split("/")[-1]] if "$ref" in node else node

    keys, model_keys = {"seeds"}, set()

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            keys.add(f"{path}.{key}")
            if key != "models":
                walk(resolve(sub), f"{path}.{key}")
                continue
            for model, blocks in sub["properties"].items():
                for block, ref in blocks["properties"].items():
                    if block == "seeds":  # a model's own seeds: one key, not a block
                        keys.add("models.<model>.seeds")
                        continue
                    for name in resolve(ref)["properties"]:
                        if block == "model":
                            model_keys.add((model, f"model.{name}"))
                        else:
                            keys.add(f"{block}.{name}")

    for domain, node in schema["properties"].items():
        if domain == "seeds":
            continue
        keys.add(domain)
        if domain in ("design", "prediction"):  # blocks of their own, not domains of datasets
            walk(node, domain)
            continue
        datasets = node["properties"]
        shared = len({ref["$ref"] for ref in datasets.values()}) == 1
        for dataset, ref in datasets.items():
            path = f"{domain}.{'<dataset>' if shared else dataset}"
            keys.add(path)
            walk(resolve(ref), path)
    return keys, model_keys


def test_config_readme_documents_every_key():
    readme = (ROOT / "workflows/config/README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \| (?!`)", readme, flags=re.M))
    documented_models = set(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", readme, flags=re.M))
    keys, model_keys = schema_keys()
    assert len(keys) > 50 and len(model_keys) > 80
    assert not keys - documented, sorted(keys - documented)
    assert not model_keys - documented_models, sorted(model_keys - documented_models)
    # and nothing documented that the schema does not have
    assert not documented - keys, sorted(documented - keys)


def test_train_rules_launch_one_task_per_device_when_the_profile_sets_mpi():
    """With the `mpi` resource (e.g. `mpi: srun`, `tasks: 2`) the train command is started by it,
    so each of the job's Slurm tasks runs one training process; without it, `dgm train` runs alone."""
    target = "results/trajectories/pointmaze-umaze/traj-arm/seed0/model.ckpt"
    plain = snakemake("-n", "-p", "--forceall", target)
    assert plain.returncode == 0, plain.stderr[-3000:]
    train = [line.removeprefix("Shell command:").strip() for line in plain.stdout.splitlines() if "dgm train" in line]
    assert train and all(line.startswith("dgm train") for line in train), train
    launched = snakemake("-n", "-p", "--forceall", target, "--set-resources",
                         "trajectories_train:mpi='srun'", "trajectories_train:tasks=2")
    assert launched.returncode == 0, launched.stderr[-3000:]
    train = [line.removeprefix("Shell command:").strip() for line in launched.stdout.splitlines()
             if "dgm train" in line]
    assert train and all(line.startswith("srun --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 dgm train") for line in train), train


def test_a_dataset_variant_runs_on_its_maze_and_stitching_reaches_only_the_planners():
    """pointmaze-umaze-10ep (offline-rl overlay) collects its own 10 episodes of U-Maze and prepares
    them as the U-Maze dataset; all-mazes' stitched planning is a flag of model rollouts only;
    all-mazes-offline-rl's agents train on all-mazes' data and plans."""
    overlay = "workflows/config/overlays/offline-rl.yaml"
    target = "results/trajectories/pointmaze-umaze-10ep/offline-rl/expert+maze-diffuser/iql/seed0/offline_rl.json"
    result = snakemake("-n", "-p", "--forceall", target, "--configfile", "workflows/config/default.yaml", overlay)
    assert result.returncode == 0, result.stderr[-3000:]
    commands = shell_commands(result)
    collect = [c for c in commands if c.startswith("dgm collect")]
    assert collect and collect[0].startswith("dgm collect umaze --out resources/trajectories/pointmaze-umaze-10ep/raw "
                                             "--episodes 10 "), collect
    assert any(c.startswith("dgm prepare pointmaze-umaze --raw resources/trajectories/pointmaze-umaze-10ep/raw")
               for c in commands), commands
    assert any(c.startswith("dgm train --model maze-diffuser --data resources/trajectories/pointmaze-umaze-10ep/data")
               for c in commands), commands
    overlay = "workflows/config/overlays/all-mazes.yaml"
    targets = ["results/trajectories/pointmaze-large/maze-diffuser/seed0/rollout_d4rl.json",
               "results/trajectories/pointmaze-large/maze-diffuser/seed0/rollout_multi2d_map-aided.json",
               "resources/trajectories/pointmaze-large/straight_rollout_d4rl.json"]
    result = snakemake("-n", "-p", "--forceall", *targets, "--configfile", "workflows/config/default.yaml", overlay)
    assert result.returncode == 0, result.stderr[-3000:]
    rollouts = shell_commands(result, "dgm rollout")
    planner = [c for c in rollouts if "--checkpoint" in c]
    baseline = [c for c in rollouts if "--baseline" in c]
    # the headline planner is map-free under the fixed goal; the map-aided row is its own rule
    assert len(planner) == 2, rollouts
    free = [c for c in planner if "rollout_d4rl.json" in c]
    aided = [c for c in planner if "rollout_multi2d_map-aided.json" in c]
    assert free and "--protocol d4rl" in free[0] and "--candidates 1 " in free[0] and "--stitch" not in free[0]
    assert aided and "--protocol multi2d" in aided[0] and "--candidates 16 --stitch" in aided[0], rollouts
    assert len(baseline) == 1 and "--stitch" not in baseline[0], rollouts
    # all-mazes-offline-rl.yaml, stacked on all-mazes: agents on Large's expert data pooled with the
    # executed plans of all-mazes' diffuser
    target = "results/trajectories/pointmaze-large/offline-rl/expert+maze-diffuser/td3bc/seed2/offline_rl.json"
    result = snakemake("-n", "-p", "--forceall", target, "--configfile", "workflows/config/default.yaml", overlay,
                       "workflows/config/overlays/all-mazes-offline-rl.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    agents = shell_commands(result, "dgm offline-rl")
    assert agents == [
        "dgm offline-rl --dataset resources/trajectories/pointmaze-large/raw/minari "
        "results/trajectories/pointmaze-large/maze-diffuser/seed0/executed.minari --algo td3bc --seed 2 "
        "--updates 10000 --episodes 100 --eval-seed 0 --protocol d4rl multi2d --out " + target
        + " --policy " + target.replace("offline_rl.json", "policy.pt")
        + " --threads 1 2> logs/trajectories/pointmaze-large/offline-rl/"
        "expert+maze-diffuser/td3bc/seed2.log"], agents


def test_the_prediction_overlay_evaluates_the_hybrid_and_the_regressor_at_each_of_its_seeds():
    """prediction.seeds [0, 1, 2]: each seed's hybrid and regressor is trained and evaluated on its
    own (results/prediction/{model}/seed{seed}/metrics.json), beside the first-seed predictors."""
    result = snakemake("-n", "-p", "--forceall", "prediction", "--configfile", "workflows/config/default.yaml",
                       "workflows/config/overlays/prediction.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluations = shell_commands(result, "dgm evaluate-predictor")
    per_seed = {re.search(r"--out (\S+)", c).group(1): re.search(r"--checkpoint (\S+)", c).group(1)
                for c in evaluations if "/seed" in c.split("--out ")[1]}
    assert per_seed == {f"results/prediction/{model}/seed{seed}/metrics.json":
                        f"results/prediction/{model}/seed{seed}/model.ckpt"
                        for model in ("hybrid-arm", "regressor-arm") for seed in (0, 1, 2)}
    assert {"results/prediction/hybrid-arm/metrics.json", "results/prediction/ensemble/metrics.json"} <= {
        re.search(r"--out (\S+)", c).group(1) for c in evaluations}


def test_the_reshaped_expert_control_is_cut_from_the_expert_data_in_the_plans_shape():
    """offline-rl.yaml's expert-reshaped source: `dgm reshape` of the expert data in the shape of
    maze-diffuser's executed plans (seed plans_seed), then the agent on it."""
    overlay = "workflows/config/overlays/offline-rl.yaml"
    target = "results/trajectories/pointmaze-umaze/offline-rl/expert-reshaped/iql/seed1/offline_rl.json"
    result = snakemake("-n", "-p", "--forceall", target, "--configfile", "workflows/config/default.yaml", overlay)
    assert result.returncode == 0, result.stderr[-3000:]
    commands = shell_commands(result)
    run = "results/trajectories/pointmaze-umaze/maze-diffuser/seed0"
    reshape = [c for c in commands if c.startswith("dgm reshape")]
    assert reshape and reshape[0].startswith(
        f"dgm reshape --expert resources/trajectories/pointmaze-umaze/raw/minari --like {run}/executed.minari "
        f"--seed 0 --out {run}/expert_reshaped.minari"), reshape
    agents = [c for c in commands if c.startswith("dgm offline-rl")]
    assert agents and agents[0].startswith(
        f"dgm offline-rl --dataset {run}/expert_reshaped.minari --algo iql --seed 1"), agents
    # expert-executed: the same segments executed as the plans are
    target = target.replace("expert-reshaped", "expert-executed")
    result = snakemake("-n", "-p", "--forceall", target, "--configfile", "workflows/config/default.yaml", overlay)
    assert result.returncode == 0, result.stderr[-3000:]
    reshape = [line for line in result.stdout.splitlines() if line.startswith("Shell command: dgm reshape")]
    assert reshape and f"--seed 0 --execute --out {run}/expert_executed.minari" in reshape[0], reshape


def test_the_slurm_tests_config_runs_every_rule_of_the_tiny_config_in_fewer_jobs():
    """tests/cluster/tiny-slurm.yaml (make test-cluster) must keep up with tests/data/tiny.yaml (test_pipeline):
    the same rules, each through Slurm, in fewer jobs."""
    configs = ["tests/data/tiny.yaml", "tests/cluster/tiny-slurm.yaml"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(lambda c: workflow_plan.dry_run([c]), configs))
    jobs = [executed_jobs(out) for out in outs]
    assert set(jobs[1]) == set(jobs[0]) and len(jobs[1]) < len(jobs[0]) * 0.7, (sorted(set(jobs[0]) - set(jobs[1])),
                                                                               len(jobs[1]), len(jobs[0]))


@pytest.fixture(scope="module")
def plans() -> dict[str, str]:
    """The plan of every config (workflow_plan.configs()), the dry runs run side by side (one per core)."""
    configs = workflow_plan.configs()
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        stdouts = dict(zip(configs, pool.map(workflow_plan.dry_run, configs.values())))
    return {name: workflow_plan.plan(stdout) for name, stdout in stdouts.items()}


@pytest.mark.parametrize("name", list(workflow_plan.configs()))
def test_the_rules_plan_the_committed_jobs_and_commands(name, plans):
    # tests/data/workflow/plan-<name>.txt: every job of the config's dry run, its files and its shell
    # command; a change of the rules that changes one fails here (rewrite with `python -m
    # tests.workflow_plan --write` only when the change is meant).
    planned = plans[name]
    committed = (workflow_plan.PLANS / f"plan-{name}.txt").read_text()
    diff = list(difflib.unified_diff(committed.splitlines(), planned.splitlines(), "committed", "planned",
                                     lineterm="", n=1))
    assert not diff, "\n".join(diff[:60])
