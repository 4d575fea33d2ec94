"""Assemble docs/results/trajectories/umaze_{planners,offline_rl}.json from a U-Maze run's rollout and
offline-RL JSONs (the protocol and control measurements of the trajectories notes). Usage, from the
repository root after the snakemake targets named in the files' provenance: python
bench/trajectories_protocol_tables.py "<commit(s) that ran>"."""
from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMIT = sys.argv[1]
OUT = ROOT / "docs/results/trajectories"
R = ROOT / "results/trajectories/pointmaze-umaze/maze-diffuser/seed0"
B = ROOT / "resources/trajectories/pointmaze-umaze"
O = ROOT / "results/trajectories/pointmaze-umaze/offline-rl"
MACHINE = "2 CPU cores, no GPU (shared with 2-3 other agents' jobs)"
DATE = "2026-12-06"
CONFIG = ("workflows/config/default.yaml + workflows/config/overlays/offline-rl.yaml, dataset pointmaze-umaze "
          "(100 expert episodes x 1,000 steps, noise 0.1; maze-diffuser dim 16, 4,500 steps, seed 0; 500 plans); "
          "rollout: 100 episodes, seed 0, protocols [d4rl, multi2d]; offline_rl: IQL, 10,000 updates; model seeds 1-2: "
          "+ workflows/config/overlays/umaze-planner-seeds.yaml (committed after the run as a copy of the overlay "
          "used, /tmp/traj/seeds.yaml)")
SNAKE = ("PYTHONPATH=$PWD OMP_NUM_THREADS=1 snakemake --configfile workflows/config/default.yaml "
         "workflows/config/overlays/offline-rl.yaml --cores 1 --max-threads 1 --rerun-triggers mtime ")


def read(path):
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def r1(x):
    return None if x is None else round(float(x), 1)


published = list(csv.DictReader(open(ROOT / "dgm_science/domains/trajectories/published/maze2d_planners.csv")))

# ---- planners
rows = []
RS = ROOT / "results/trajectories/pointmaze-umaze/maze-diffuser"
planners_seeds = {}
for protocol in ("d4rl", "multi2d"):
    for label, suffix in (("maze-diffuser, map-free (one plan per goal, 1 sample; headline)", ""),
                          ("maze-diffuser, map-aided (shortest path stitched + best of 16 by wall hits)",
                           "_map-aided")):
        scores, success = [], []
        for seed in (0, 1, 2):
            s = read(RS / f"seed{seed}" / f"rollout_{protocol}{suffix}.json")
            if s is None:
                continue
            scores.append(s["normalized_score"])
            success.append(s["success_rate"])
            rows.append([protocol, f"{label}, model seed {seed}", "measured", round(s["success_rate"], 2),
                         r1(s["normalized_score"]), r1(s["normalized_score_sem"]), int(s["episodes"]),
                         r1(s.get("steps_to_goal")), r1(s["seconds"])])
        planners_seeds[f"{protocol}{suffix}"] = len(scores)
        if len(scores) > 1:
            rows.append([protocol, f"{label}, mean +- sd over {len(scores)} model seeds", "measured",
                         round(statistics.mean(success), 2), r1(statistics.mean(scores)), r1(statistics.stdev(scores)),
                         None, None, None])
    for name, template in (("expert planner (shortest path + PD)", B / "expert_rollout_{p}.json"),
                           ("no planner (PD controller straight at the goal)", B / "straight_rollout_{p}.json")):
        s = read(str(template).format(p=protocol))
        if s is None:
            continue
        rows.append([protocol, name, "measured", round(s["success_rate"], 2), r1(s["normalized_score"]),
                     r1(s["normalized_score_sem"]), int(s["episodes"]), r1(s.get("steps_to_goal")), r1(s["seconds"])])
    for row in published:
        if row["maze"] == "umaze" and row["protocol"] == protocol:
            note = "" if row["checked"] != "no" else " [not checked against the paper]"
            rows.append([protocol, f"{row['method']} (published)", row["source"] + note, None, float(row["score"]),
                         float(row["error"]), None, None, None])
commands = [SNAKE.replace("offline-rl.yaml", "offline-rl.yaml workflows/config/overlays/umaze-planner-seeds.yaml")
            + "results/trajectories/pointmaze-umaze/maze-diffuser/seed{0,1,2}/{rollout_d4rl,rollout_multi2d,"
              "rollout_d4rl_map-aided,rollout_multi2d_map-aided}.json (one seed's pair at a time)",
            SNAKE + " ".join(f"results/trajectories/pointmaze-umaze/maze-diffuser/seed0/{f}" for f in
                             ("rollout_d4rl.json", "rollout_multi2d.json", "rollout_d4rl_map-aided.json",
                              "rollout_multi2d_map-aided.json")),
            SNAKE + " ".join(f"resources/trajectories/pointmaze-umaze/{b}_rollout_{p}.json"
                             for b in ("expert", "straight") for p in ("d4rl", "multi2d"))]
planners = {
    "title": "PointMaze U-Maze closed loop under D4RL's fixed-goal protocol and Multi2D (random goals): map-free "
             "and map-aided diffusion planner, baselines, and published rows of the same protocol",
    "provenance": {"commit": COMMIT, "command": " ; ".join(commands), "config": CONFIG, "date": DATE,
                   "machine": MACHINE},
    "columns": ["protocol", "policy", "source", "success_rate", "normalized_score", "sem_or_published_error",
                "episodes", "steps_to_goal", "wall_seconds"],
    "rows": rows,
    "notes": [
        "d4rl: D4RL maze2d-umaze-v1's fixed goal (the G cell, row 1 col 1 of D4RL's U_MAZE = (-1, 1) in "
        "gymnasium-robotics' coordinates), the start cell uniform over the 7 free cells (goal cell included, as D4RL) "
        "from the episode seed; multi2d: gymnasium-robotics' reset, random start and goal cells. 300 steps, reward 1 "
        "within 0.45 of the goal, D4RL's reference returns.",
        "Ours: maze-diffuser models of seeds 0-2 (each trained 4,500 steps or 10 min, whichever first; seeds 1-2 "
        "with the overlay /tmp/traj/seeds.yaml = default.yaml's model block with seeds [0, 1, 2]), 100 seeded "
        "episodes each; per seed +- is the standard error over episodes; the mean row's +- is the sd over model "
        "seeds. Rows per protocol run: " + json.dumps(planners_seeds) + ". Published +- as printed (Diffuser: "
        "standard error).",
        "Published rows are the papers' numbers on D4RL's mujoco-py maze2d with a 0.5 goal radius and D4RL's data; "
        "ours run gymnasium-robotics' port (0.45 radius) with our own expert data: indicative, not exact.",
        "The map-aided row uses the maze's map (BFS shortest path, wall-hit ranking of 16 candidates); Diffuser and "
        "the hierarchical diffuser do not.",
    ],
}
(OUT / "umaze_planners.json").write_text(json.dumps(planners, indent=1) + "\n")

# ---- offline RL
sources = [("expert", "expert data as collected (continuing episodes)"),
           ("expert-reshaped", "expert data reshaped into the plans' single-goal episodes (control 1)"),
           ("expert-executed", "expert segments executed as the plans are, from rest, goal held (control 2)"),
           ("maze-diffuser", "maze-diffuser plans, executed in the simulator"),
           ("expert+maze-diffuser", "expert data as collected + executed plans, pooled"),
           ("expert+expert-executed", "expert data as collected + control 2, pooled (control for the pooled row)")]
rows, seeds_run = [], {}
for protocol in ("d4rl", "multi2d"):
    for source, label in sources:
        runs = [read(p) for p in sorted((O / source / "iql").glob("seed*/offline_rl.json"))]
        runs = [r for r in runs if r and protocol in r.get("rollouts", {})]
        if not runs:
            continue
        seeds_run[source] = sorted(r["seed"] for r in runs)
        scores = [r["rollouts"][protocol]["normalized_score"] for r in runs]
        success = [r["rollouts"][protocol]["success_rate"] for r in runs]
        fractions = runs[0]["dataset_reward_fraction"]
        counts = runs[0]["dataset_transitions"]
        rewarded = sum(f * n for f, n in zip(fractions, counts)) / sum(counts)
        rows.append([protocol, "IQL (TorchRL)", label, "measured", len(runs), round(statistics.mean(success), 2),
                     r1(statistics.mean(scores)), r1(statistics.stdev(scores)) if len(scores) > 1 else None,
                     " / ".join(f"{s:.1f}" for s in scores), int(sum(counts)), round(rewarded, 4),
                     runs[0]["updates"]])
    if protocol == "d4rl":
        for row in csv.DictReader(open(ROOT / "dgm_science/domains/trajectories/published/corl_maze2d.csv")):
            if row["maze"] == "umaze" and row["algo"] == "iql":
                rows.append([protocol, "IQL, CORL (published)", "D4RL maze2d-umaze-v1 data (noisy waypoint controller)",
                             "CORL README (Tarasov et al. 2023), commit 022e449: last score, mean +- sd over seeds",
                             None, None, float(row["last"]), float(row["last_sd"]), None, None, None, 1000000])
reshape = read(R / "expert_reshaped.json")
executed_control = read(R / "expert_executed.json")
execute = read(R / "execute.json")
agent_cmd = (SNAKE + "results/trajectories/pointmaze-umaze/offline-rl/{expert,expert-reshaped,expert-executed,"
             "maze-diffuser,expert+maze-diffuser,expert+expert-executed}/iql/seed{0,1,2}/offline_rl.json (one target "
             "at a time)")
offline = {
    "title": "Offline RL (IQL) on PointMaze U-Maze: expert data as collected, the same data reshaped into the "
             "executed plans' single-goal episodes (control), executed diffusion plans, and pooled; both protocols",
    "provenance": {"commit": COMMIT, "command": agent_cmd, "config": CONFIG, "date": DATE, "machine": MACHINE},
    "columns": ["protocol", "agent", "data", "source", "seeds", "success_rate_mean", "normalized_score_mean",
                "normalized_score_sd_over_seeds", "per_seed_scores", "transitions", "rewarded_fraction", "updates"],
    "rows": rows,
    "notes": [
        "Seeds run per source: " + json.dumps(seeds_run) + ". Each score is the mean over the same 100 seeded "
        "episodes (rollout seed 0) under the protocol; sd is over agent seeds.",
        "All agents train once and are evaluated under both protocols. 10,000 updates (CORL: 1,000,000).",
        "CORL's row is on D4RL's fixed-goal task only, so it appears under d4rl only; their data and update count "
        "differ from ours.",
        "expert-reshaped: " + (json.dumps({k: reshape[k] for k in ("episodes", "transitions", "reward_fraction",
                                                                   "template_reward_fraction", "expert_reward_fraction",
                                                                   "start_speed_mean", "template_start_speed_mean")})
                               if reshape else "not run"),
        "expert-executed: " + (json.dumps({k: executed_control[k] for k in (
            "episodes", "transitions", "reward_fraction", "rest_at_goal_fraction", "template_rest_at_goal_fraction",
            "start_speed_mean")}) if executed_control else "not run"),
        "Episodes that earn a reward at least once: executed plans 0.584, expert-executed 0.994, expert-reshaped "
        "1.000 (computed afterwards from the Minari files).",
        "rest_at_goal_fraction = transitions rewarded at a speed below 0.5 (the point held at the goal). "
        "expert-reshaped "
        "was made by commit 125c8f8, before this statistic existed: 0.005 for it, 0.126 for the executed plans, 0.000 "
        "for the expert data as collected (computed afterwards from the same files).",
    ],
}
(OUT / "umaze_offline_rl.json").write_text(json.dumps(offline, indent=1) + "\n")
print(json.dumps(planners["rows"], indent=0))
print(json.dumps(offline["rows"], indent=0))
