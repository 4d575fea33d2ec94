"""Robot-trajectories section of the report: the expert data, closed-loop success and
D4RL-normalised score beside the expert planner and the published Diffuser score, open-loop plan
quality beside real data, and the sampled plans drawn over each maze."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dgm_science.domains.trajectories.mazes import MAZES
from dgm_science.registry import register
from dgm_science.report import collect_runs, png_data_uri, run_scale, table_html


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _score(summary: dict[str, Any]) -> str:
    if "normalized_score" not in summary:
        return "–"
    return f"{summary['normalized_score']:.1f} ± {summary.get('normalized_score_sem', 0):.1f}"


def _data_table(resources: Path) -> str:
    prepared = _read(resources / "data" / "prepare.json")
    collect = prepared.get("collect", {})
    if not prepared:
        return ""
    stats = collect.get("stats", collect)
    cells = [f"{prepared.get('train_episodes', 0) + prepared.get('valid_episodes', 0):,}",
             f"{prepared.get('train_steps', 0) + prepared.get('valid_steps', 0):,}",
             f"{prepared.get('train_episodes', 0):,} / {prepared.get('valid_episodes', 0):,}",
             _num(stats.get("noise", collect.get("noise")), 2),
             f"{stats.get('goals_reached', '–'):,}" if isinstance(stats.get("goals_reached"), int) else "–",
             _num(stats.get("planner_success_rate"))]
    header = ["episodes", "steps", "train / valid episodes", "action noise", "goals reached",
              "planner success rate (data)"]
    return table_html(header, [("ours", cells)])


def _closed_loop_table(runs: list[dict], resources: Path) -> str:
    header = ["policy", "scale", "success rate ↑", "normalised score ↑", "return", "steps to goal ↓",
              "episodes", "re-plan every", "wall time"]
    rows: list[tuple[str, list[str]]] = []
    published = None
    for run in sorted(runs, key=lambda r: (r["model"], r["seed"])):
        summary = _read(run["dir"] / "rollout.json")
        if not summary:
            continue
        published = summary.get("diffuser_published_score", published)
        rows.append(("ours", [f"<b>{run['model']}</b> (ours, seed {run['seed']})", run_scale(run["dir"], "windows"),
                              _num(summary.get("success_rate")), _score(summary), _num(summary.get("return_mean"), 1),
                              _num(summary.get("steps_to_goal"), 1), f"{int(summary.get('episodes', 0))}",
                              str(summary.get("replan_every") or "once per goal"),
                              f"{summary.get('seconds', 0):.0f} s"]))
    expert = _read(resources / "expert_rollout.json")
    if expert:
        published = expert.get("diffuser_published_score", published)
        rows.append(("ours", ["Expert planner (shortest path + PD, no noise)", "–", _num(expert.get("success_rate")),
                              _score(expert), _num(expert.get("return_mean"), 1), _num(expert.get("steps_to_goal"), 1),
                              f"{int(expert.get('episodes', 0))}", "–", f"{expert.get('seconds', 0):.0f} s"]))
    straight = _read(resources / "straight_rollout.json")
    if straight:
        rows.append(("ours", ["No planner: the same controller straight at the goal", "–",
                              _num(straight.get("success_rate")), _score(straight), _num(straight.get("return_mean"), 1),
                              _num(straight.get("steps_to_goal"), 1), f"{int(straight.get('episodes', 0))}", "–",
                              f"{straight.get('seconds', 0):.0f} s"]))
    if published is not None:
        rows.append(("published", ["Diffuser (Janner et al. 2022, Table 1; D4RL maze2d-v1)", "published", "–",
                                   f"{published:.1f}", "–", "–", "–", "once", "–"]))
    return table_html(header, rows) if rows else ""


OPEN_LOOP = [("valid", "finite ↑"), ("dynamic_position_error", "dynamic error, position ↓"),
             ("dynamic_velocity_error", "dynamic error, velocity ↓"), ("wall_fraction", "states in walls ↓"),
             ("goal_distance", "final distance to goal ↓"), ("reaches_goal", "plan ends at goal ↑"),
             ("path_length", "path length"), ("trajectories", "plans")]


def _open_loop_table(runs: list[dict]) -> str:
    header = ["model"] + [label for _, label in OPEN_LOOP]
    rows = [("ours", [f"<b>{run['model']}</b> (seed {run['seed']})"] +
             [_num(run["metrics"].get(key), 0 if key == "trajectories" else 3) for key, _ in OPEN_LOOP])
            for run in sorted(runs, key=lambda r: (r["model"], r["seed"]))]
    data = {key[len("data_"):]: value for key, value in runs[0]["metrics"].items() if key.startswith("data_")}
    if data:
        rows.append(("published", ["Data: validation windows of the expert"] +
                     [_num(data.get(key, 1.0 if key == "valid" else None), 0 if key == "trajectories" else 3)
                      for key, _ in OPEN_LOOP]))
    return table_html(header, rows)


NOTE = ("Closed loop: each policy runs the same seeded episodes of gymnasium-robotics PointMaze (start and goal in "
        "random distinct cells; continuing task, the environment's episode length: U-Maze 300, Medium 600, Large "
        "800 steps; reward 1 per step within 0.45 of the goal). Success: the goal was reached at least once. "
        "Normalised score: 100 (return − random) / (expert − random) with D4RL's reference returns of "
        "maze2d-*-v1 (random / expert: U-Maze 23.85 / 161.86, Medium 13.13 / 277.39, Large 6.7 / 273.99); "
        "gymnasium-robotics' PointMaze is the maintained port of D4RL's maze2d, with a 0.45 instead of 0.5 goal "
        "radius, so the published Diffuser scores compare closely, not exactly. The planner follows its plan with "
        "Diffuser's Maze2D controller. Open loop: dynamic error is the distance between each planned next state "
        "and the simulator's next state from the planned state and action (data row: real transitions, ~0).")


@register("report", "trajectories")
def trajectories_section(results: Path) -> str:
    """HTML for every trajectory run under ``results``; empty if there is none."""
    runs = collect_runs(results, "trajectories")
    if not runs:
        return ""
    parts = ["<h2>Robot trajectories (PointMaze)</h2>"]
    order = [f"pointmaze-{name}" for name in MAZES]  # U-Maze, Medium, Large: by difficulty
    for dataset in sorted({r["dataset"] for r in runs}, key=lambda d: (order.index(d) if d in order else len(order), d)):
        ds_runs = [r for r in runs if r["dataset"] == dataset]
        resources = results.parent / "resources" / "trajectories" / dataset
        parts.append(f"<h3>{dataset}</h3>")
        data = _data_table(resources)
        if data:
            parts.append("<h4>Expert data (a local Minari dataset)</h4>" + data)
        parts.append("<h4>Closed loop in the simulator</h4>" + _closed_loop_table(ds_runs, resources))
        parts.append("<h4>Sampled plans, open loop</h4>" + _open_loop_table(ds_runs))
        images = [f'<figure style="display:inline-block;margin:0 1em"><img src="{png_data_uri(p.read_bytes())}" '
                  f'width="360"><figcaption>{r["model"]}</figcaption></figure>'
                  for r in ds_runs for p in [r["dir"] / "plans.png"] if p.is_file()]
        parts.extend(images)
    parts.append(f'<p class="note">{NOTE}</p>')
    return "\n".join(parts)
