"""Robot-trajectories section of the report: the expert data; per evaluation protocol (D4RL's
fixed goal, Multi2D's random goals) the closed-loop success and D4RL-normalised score of the
map-free planner, the map-aided planner (its own row), the baselines and the published rows of the
same protocol only, and offline RL agents beside them (CORL's rows under the fixed-goal protocol
only); open-loop plan quality beside real data, and the sampled plans drawn over each maze."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from dgm_science.domains.trajectories.mazes import MAZES
from dgm_science.domains.trajectories.offline_rl import ALGORITHMS
from dgm_science.domains.trajectories.rollout import PROTOCOLS, published_planners
from dgm_science.registry import register
from dgm_science.report_parts import (
    MISSING, Figure, Inputs, Table, bold, collect_runs, format_count, format_number, format_values, input_json,
    png_data_uri, render, run_scale,
)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _score(summary: dict[str, Any]) -> str:
    if "normalized_score" not in summary:
        return MISSING
    score, sem = summary["normalized_score"], summary.get("normalized_score_sem", 0)
    return f"{format_number(score, 1)} ± {format_number(sem, 1)}"


def _seconds(value: float) -> str:
    return f"{format_number(value, 0)} s"


def _data_table(prepared: dict[str, Any]) -> Table:
    collect = prepared.get("collect", {})
    stats = collect.get("stats", collect)
    goals = stats.get("goals_reached")
    cells = [format_count(prepared.get("train_episodes", 0) + prepared.get("valid_episodes", 0)),
             format_count(prepared.get("train_steps", 0) + prepared.get("valid_steps", 0)),
             f"{format_count(prepared.get('train_episodes', 0))} / {format_count(prepared.get('valid_episodes', 0))}",
             format_number(stats.get("noise", collect.get("noise")), 2),
             format_count(goals) if isinstance(goals, int) else MISSING,
             format_number(stats.get("planner_success_rate"), 3)]
    return Table(["episodes", "steps", "train / valid episodes", "action noise", "goals reached",
                  "planner success rate (data)"], [("ours", cells)])


def _baseline_cells(name: str, summary: dict[str, Any]) -> list[Any]:
    return [name, MISSING, format_number(summary.get("success_rate"), 3), _score(summary),
            format_number(summary.get("return_mean"), 1), format_number(summary.get("steps_to_goal"), 1),
            format_count(summary.get("episodes", 0)), MISSING, _seconds(summary.get("seconds", 0))]


PROTOCOL_TITLES = {"d4rl": "D4RL maze2d protocol: the maze's fixed goal, random start",
                   "multi2d": "Multi2D protocol: random start and random goal"}
"""Headings of the per-protocol tables."""


def _planner_cells(label: str, run: dict[str, Any], summary: dict[str, Any]) -> list[Any]:
    return [label, run_scale(run["dir"], "windows"), format_number(summary.get("success_rate"), 3),
            _score(summary), format_number(summary.get("return_mean"), 1),
            format_number(summary.get("steps_to_goal"), 1), format_count(summary.get("episodes", 0)),
            str(summary.get("replan_every") or "once per goal"), _seconds(summary.get("seconds", 0))]


def _closed_loop_table(dataset: str, runs: list[dict], inputs: Inputs | None, protocol: str) -> Table | None:
    """Closed loop under ``protocol``: the map-free planner (headline), the map-aided planner
    (shortest path and/or candidates ranked by wall hits: its own row), the baselines, and the
    published rows measured under the same protocol (never the other's)."""
    table = Table(["policy", "scale", "success rate ↑", "normalised score ↑", "return", "steps to goal ↓",
                   "episodes", "re-plan every", "wall time"])
    maze = None
    for run in sorted(runs, key=lambda r: (r["model"], r["seed"])):
        summary = _read(run["dir"] / f"rollout_{protocol}.json")
        if summary:
            maze = summary.get("maze", maze)
            table.rows.append(("ours", _planner_cells(bold(run["model"]) + f" (ours, map-free, seed {run['seed']})",
                                                      run, summary)))
        aided = _read(run["dir"] / f"rollout_{protocol}_map-aided.json")
        if aided:
            maze = aided.get("maze", maze)
            how = " + ".join(part for part, on in (("shortest path", aided.get("stitch")),
                                                   (f"best of {aided.get('candidates')} by wall hits",
                                                    aided.get("candidates", 1) > 1)) if on)
            table.rows.append(("ours", _planner_cells(bold(run["model"]) + f" (ours, map-aided: {how}; seed "
                                                      f"{run['seed']})", run, aided)))
    expert = input_json(inputs, f"trajectories/{dataset}/expert_rollout_{protocol}")
    if expert:
        maze = expert.get("maze", maze)
        table.rows.append(("ours", _baseline_cells("Expert planner (shortest path + PD, no noise)", expert)))
    straight = input_json(inputs, f"trajectories/{dataset}/straight_rollout_{protocol}")
    if straight:
        table.rows.append(("ours", _baseline_cells("No planner: the same controller straight at the goal", straight)))
    if not table.rows:
        return None
    for row in published_planners(maze, protocol) if maze else []:
        checked = "" if row["checked"] != "no" else " (not checked against the paper)"
        table.rows.append(("published", [f"{row['method']} ({row['source']}){checked}", "published", MISSING,
                                         format_number(row["score"], 1) if row["error"] is None else
                                         f"{format_number(row['score'], 1)} ± {format_number(row['error'], 1)}",
                                         MISSING, MISSING, MISSING, "once", MISSING]))
    return table


OPEN_LOOP = [("valid", "finite ↑"), ("dynamic_position_error", "dynamic error, position ↓"),
             ("dynamic_velocity_error", "dynamic error, velocity ↓"), ("wall_fraction", "states in walls ↓"),
             ("goal_distance", "final distance to goal ↓"), ("reaches_goal", "plan ends at goal ↑"),
             ("path_length", "path length"), ("trajectories", "plans")]


def _open_loop_table(runs: list[dict]) -> Table:
    digits = {"trajectories": 0}
    table = Table(["model"] + [label for _, label in OPEN_LOOP])
    for run in sorted(runs, key=lambda r: (r["model"], r["seed"])):
        table.rows.append(("ours", [bold(run["model"]) + f" (seed {run['seed']})"] +
                           [format_number(run["metrics"].get(key), digits.get(key, 3)) for key, _ in OPEN_LOOP]))
    data = {key[len("data_"):]: value for key, value in runs[0]["metrics"].items() if key.startswith("data_")}
    if data:
        table.rows.append(("published", ["Data: validation windows of the expert"] +
                           [format_number(data.get(key, 1.0 if key == "valid" else None), digits.get(key, 3))
                            for key, _ in OPEN_LOOP]))
    return table


ALGORITHM_NAMES = {name: algorithm.published for name, algorithm in ALGORITHMS.items()}


SOURCE_NAMES = {"expert": "expert data, as collected",
                "expert-reshaped": "expert data, reshaped into single-goal episodes shaped like the plans (control)",
                "expert-executed": "expert data, reshaped and executed as the plans are (control)"}


def _source_name(source: str) -> str:
    return " + ".join(SOURCE_NAMES.get(part, f"{part} plans, executed") for part in source.split("+"))


def _mean_sd(values: list[float], digits: int) -> str:
    return format_values(values, digits, separator=" ± ")


def _offline_rl_table(folder: Path, closed_loop: Table | None, protocol: str) -> Table | None:
    """One row per (algorithm, source): success and normalised score under ``protocol`` over seeds
    (mean ± sd), then the maze's other policies under the same protocol (the closed-loop rows) and,
    under the fixed-goal protocol only, CORL's published rows."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*/*/seed*/offline_rl.json")):
        run = _read(path)
        if protocol in run.get("rollouts", {}):
            groups.setdefault((path.parts[-3], path.parts[-4]), []).append(run)
    if not groups:
        return None
    table = Table(["agent", "data", "seeds", "success rate ↑", "normalised score ↑", "transitions",
                   "rewarded transitions", "updates", "updates / s", "wall time"])
    order = list(ALGORITHM_NAMES)
    published: dict[str, dict[str, Any]] = {}
    for (algo, source), runs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order
                                                                       else len(order), kv[0][1])):
        rollouts = [r["rollouts"][protocol] for r in runs]
        published[algo] = runs[0]
        fractions = runs[0].get("dataset_reward_fraction")
        transitions = runs[0].get("dataset_transitions")
        rewarded = (format_number(sum(f * n for f, n in zip(fractions, transitions)) / sum(transitions), 3)
                    if fractions and transitions else MISSING)
        table.rows.append(("ours", [bold(ALGORITHM_NAMES.get(algo, algo)) + " (TorchRL)", _source_name(source),
                                    str(len(runs)), _mean_sd([r["success_rate"] for r in rollouts], 2),
                                    _mean_sd([r["normalized_score"] for r in rollouts], 1),
                                    format_count(runs[0].get("transitions", 0)), rewarded,
                                    format_count(runs[0].get("updates", 0)),
                                    _mean_sd([r["updates_per_second"] for r in runs], 0),
                                    _seconds(statistics.mean(r["seconds"] + r["rollouts"][protocol]["seconds"]
                                                             for r in runs))]))
    for kind, cells in (closed_loop.rows if closed_loop else []):  # the planners and baselines, not the papers'
        if kind == "ours":
            table.rows.append(("ours", [cells[0], "planner / baseline", MISSING, cells[2], cells[3], MISSING,
                                        MISSING, MISSING, MISSING, cells[-1]]))
    if protocol == "d4rl":  # CORL evaluates on D4RL's fixed goal only
        for algo, run in published.items():
            if "corl_last" in run:
                table.rows.append(("published", [
                    f"{ALGORITHM_NAMES.get(algo, algo)}, CORL (D4RL {run['maze']} maze2d-v1, 1M updates)",
                    "D4RL's noisy-waypoint data", MISSING, MISSING,
                    f"last {format_number(run['corl_last'], 1)} ± {format_number(run['corl_last_sd'], 1)}; best "
                    f"{format_number(run['corl_best'], 1)} ± {format_number(run['corl_best_sd'], 1)}",
                    MISSING, MISSING, "1,000,000", MISSING, MISSING]))
    return table


def _realism_table(runs: list[dict]) -> Table | None:
    """Per model run: its plans' two-sample AUROC against the expert data, raw and executed, and
    how far execution strays from the plan."""
    table = Table(["model", "AUROC, plans as sampled ↓", "AUROC, plans executed ↓", "executed path − plan (mean)",
                   "executed path ends at goal", "transitions", "execution speed"])
    calibration = None
    for run in sorted(runs, key=lambda r: (r["model"], r["seed"])):
        tests, execute = _read(run["dir"] / "two_sample.json"), _read(run["dir"] / "execute.json")
        if not tests:
            continue
        calibration = tests.get("real_vs_real", calibration)
        auroc = {Path(test["synthetic"]).name: format_number(test["auroc"], 3) for test in tests.get("tests", [])}
        table.rows.append(("ours", [bold(run["model"]) + f" (seed {run['seed']})",
                                    auroc.get("samples.minari", MISSING), auroc.get("executed.minari", MISSING),
                                    format_number(execute.get("plan_deviation_mean"), 3),
                                    format_number(execute.get("reaches_goal"), 3),
                                    format_count(execute.get("transitions", 0)),
                                    f"{format_count(round(execute.get('transitions_per_second', 0)))} / s"]))
    if calibration:
        table.rows.append(("published", ["Real against real (two halves of the expert episodes)",
                                         format_number(calibration["auroc"], 3), MISSING, MISSING, MISSING,
                                         MISSING, MISSING]))
    return table if table.rows else None


NOTE = ("Closed loop: each policy runs the same seeded episodes of gymnasium-robotics PointMaze under two "
        "protocols, each set only beside the published rows measured under it. D4RL maze2d (Diffuser's "
        "Maze2D rows, CORL): the maze's fixed goal, the centre of the goal cell of D4RL's maze2d-*-v1, the "
        "start in a random free cell. Multi2D (Diffuser's Multi2D rows): start and goal in random cells; "
        "an easier task on D4RL's scale, where a controller aimed straight at the goal scores above D4RL's expert "
        "(100). Both: continuing task, the environment's episode length (U-Maze 300, Medium 600, Large 800 steps), "
        "reward 1 per step within 0.45 of the goal. Success: the goal was reached at least once. Normalised score: "
        "100 (return − random) / (expert − random) with D4RL's reference returns of maze2d-*-v1 (random / expert: "
        "U-Maze 23.85 / 161.86, Medium 13.13 / 277.39, Large 6.7 / 273.99); gymnasium-robotics' PointMaze is the "
        "maintained port of D4RL's maze2d, with a 0.45 instead of 0.5 goal radius, so the published scores compare "
        "closely, not exactly. The map-free planner is Diffuser's setting: one plan per goal, one sample, followed "
        "with Diffuser's Maze2D controller. The map-aided planner also uses the maze's map (plans stitched along the "
        "maze's shortest path and/or the best of several candidates ranked by wall hits), which Diffuser does not; "
        "it is its own row. Open loop: dynamic error is the distance between each planned next state and the "
        "simulator's next state from the planned state and action (data row: real transitions, ~0). Offline RL: "
        "TorchRL's IQL, TD3+BC and CQL with CORL's maze2d hyperparameters, trained on the expert data as collected "
        "(continuing episodes, goals resampled on arrival), on the control (the same expert transitions cut into "
        "single-goal episodes of the executed plans' count and lengths, goal = each segment's end, the env's reward), "
        "or on sampled plans executed in the simulator (PD tracking from each plan's start: every transition is the "
        "simulator's, every reward the environment's), evaluated on the same seeded episodes as the planners. "
        "CORL's rows use D4RL's maze2d data (a noisy waypoint controller, 1-4M steps) and 1M updates, and the fixed "
        "goal only. Realism: a gradient-boosted classifier tells (state, action, next state) of the synthetic data "
        "from the expert's; out-of-fold AUROC, 0.5 = indistinguishable.")


@register("report", "trajectories")
def trajectories_section(results: Path, inputs: Inputs | None = None) -> str:
    """HTML for every trajectory run under ``results``; empty if there is none. Inputs
    ``trajectories/<dataset>/{expert,straight}_rollout_<protocol>`` and ``trajectories/<dataset>/prepare``
    add the baselines' rows and the data table."""
    runs = collect_runs(results, "trajectories")
    if not runs:
        return ""
    datasets = []
    order = [f"pointmaze-{name}" for name in MAZES]  # U-Maze, Medium, Large: by difficulty
    names = sorted({r["dataset"] for r in runs}, key=lambda d: (order.index(d) if d in order else len(order), d))
    for dataset in names:
        ds_runs = [r for r in runs if r["dataset"] == dataset]
        prepared = input_json(inputs, f"trajectories/{dataset}/prepare")
        plans = [Figure(f"{r['model']} ({protocol})", png_data_uri(path.read_bytes()), f"{r['model']} plans")
                 for r in ds_runs for protocol in PROTOCOLS for path in [r["dir"] / f"plans_{protocol}.png"]
                 if path.is_file()]
        protocols = []
        for protocol in PROTOCOLS:
            closed_loop = _closed_loop_table(dataset, ds_runs, inputs, protocol)
            offline_rl = _offline_rl_table(results / "trajectories" / dataset / "offline-rl", closed_loop, protocol)
            if closed_loop or offline_rl:
                protocols.append({"name": protocol, "title": PROTOCOL_TITLES[protocol], "closed_loop": closed_loop,
                                  "offline_rl": offline_rl})
        datasets.append({"name": dataset, "data": _data_table(prepared) if prepared else None,
                         "protocols": protocols, "open_loop": _open_loop_table(ds_runs), "plans": plans,
                         "realism": _realism_table(ds_runs)})
    return render(Path(__file__).with_name("report.html.j2"), datasets=datasets, footnote=NOTE)
