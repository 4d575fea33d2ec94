"""The trajectories report section: mazes in order of difficulty; per evaluation protocol, our rows
(the map-free planner, the map-aided planner as its own row, the baselines) beside the published
rows of that protocol only; offline RL beside CORL only under the fixed-goal protocol."""

import json

from dgm_science.domains.trajectories.report import trajectories_section
from dgm_science.domains.trajectories.rollout import published_planners


def _write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def _section(html, title):
    """The HTML from the heading containing ``title`` to the end of its table."""
    start = html.index(title)
    return html[start:html.index("</table>", start)]


def test_published_rows_are_filtered_by_protocol_and_maze():
    d4rl = {row["method"]: row["score"] for row in published_planners("umaze", "d4rl")}
    multi2d = {row["method"]: row["score"] for row in published_planners("PointMaze_UMaze-v3", "multi2d")}
    assert d4rl["Diffuser"] == 113.9 and multi2d["Diffuser"] == 128.9
    assert multi2d["Hierarchical Diffuser"] == 144.1 and "Hierarchical Diffuser" not in d4rl  # not checked
    assert all(row["error"] is None and row["checked"] == "no" for row in published_planners("umaze", "d4rl"))
    assert {row["score"] for row in published_planners("large", "multi2d")} == {132.1, 165.5}


def test_section_orders_mazes_and_places_rows_by_protocol(tmp_path):
    results = tmp_path / "results"
    inputs = {}
    for dataset, maze, score in [("pointmaze-large", "large", 61.3), ("pointmaze-umaze", "umaze", 132.5)]:
        run = results / "trajectories" / dataset / "maze-diffuser" / "seed0"
        _write(run / "metrics.json", {"dynamic_position_error": 0.06, "data_dynamic_position_error": 1e-8})
        _write(run / "rollout_d4rl.json", {"maze": maze, "protocol": "d4rl", "success_rate": 1.0,
                                           "normalized_score": score, "normalized_score_sem": 2.0, "episodes": 100})
        _write(run / "rollout_multi2d.json", {"maze": maze, "protocol": "multi2d", "success_rate": 1.0,
                                              "normalized_score": score + 10, "normalized_score_sem": 3.0,
                                              "episodes": 100})
        _write(run / "rollout_multi2d_map-aided.json", {"maze": maze, "protocol": "multi2d", "success_rate": 1.0,
                                                        "normalized_score": 150.5, "normalized_score_sem": 1.0,
                                                        "episodes": 100, "candidates": 16, "stitch": True})
        expert = _write(tmp_path / "resources" / "trajectories" / dataset / "expert_rollout_d4rl.json",
                        {"maze": maze, "success_rate": 1.0, "normalized_score": 160.0, "episodes": 100})
        inputs[f"trajectories/{dataset}/expert_rollout_d4rl"] = expert
    html = trajectories_section(results, inputs)
    umaze, large = html.index("<h3>pointmaze-umaze</h3>"), html.index("<h3>pointmaze-large</h3>")
    assert umaze < large
    umaze_html = html[umaze:large]
    fixed = _section(umaze_html, "Closed loop in the simulator, D4RL maze2d protocol")
    multi = _section(umaze_html, "Closed loop in the simulator, Multi2D protocol")
    # the fixed-goal table: our map-free planner, the expert, then the Maze2D rows only
    assert fixed.index("132.5 ± 2.0") < fixed.index("Expert planner") < fixed.index("113.9")
    assert "Hierarchical Diffuser" not in fixed and "(not checked against the paper)" in fixed
    assert "128.9" not in fixed and "144.1" not in fixed and "map-aided" not in fixed
    # the random-goal table: map-free first, the map-aided row labelled as such, then the Multi2D rows only
    assert multi.index("142.5 ± 3.0") < multi.index("map-aided: shortest path + best of 16 by wall hits")
    assert multi.index("150.5") < multi.index("128.9") < multi.index("144.1")
    assert "113.9" not in multi and "Expert planner" not in multi
    assert "123.0" in _section(html[large:], "D4RL maze2d protocol") and "132.1" in html[large:]
    assert html.count("Expert planner") == 2
    assert trajectories_section(tmp_path / "empty") == ""


def test_offline_rl_rows_per_protocol_and_corl_only_with_the_fixed_goal(tmp_path):
    results = tmp_path / "results"
    run = results / "trajectories" / "pointmaze-umaze" / "maze-diffuser" / "seed0"
    _write(run / "metrics.json", {"dynamic_position_error": 0.06})
    for protocol, score in (("d4rl", 106.5), ("multi2d", 118.0)):
        _write(run / f"rollout_{protocol}.json", {"maze": "umaze", "success_rate": 0.88, "normalized_score": score,
                                                  "normalized_score_sem": 5.6, "episodes": 100, "seconds": 2})
    _write(run / "execute.json", {"plan_deviation_mean": 0.705, "reaches_goal": 0.512, "transitions": 63500,
                                  "transitions_per_second": 15000})
    _write(run / "two_sample.json", {"real_vs_real": {"auroc": 0.587}, "tests": [
        {"synthetic": str(run / "samples.minari"), "auroc": 0.989},
        {"synthetic": str(run / "executed.minari"), "auroc": 0.949}]})
    base = results / "trajectories" / "pointmaze-umaze" / "offline-rl"
    for source, algo, seed, score in [("expert", "iql", 0, 100.0), ("expert", "iql", 1, 110.0),
                                      ("expert-reshaped", "iql", 0, 90.0), ("expert+maze-diffuser", "td3bc", 0, 80.0)]:
        _write(base / source / algo / f"seed{seed}" / "offline_rl.json", {
            "maze": "umaze", "algo": algo, "transitions": 100000, "updates": 10000, "updates_per_second": 80.0,
            "seconds": 125.0, "dataset_transitions": [100000], "dataset_reward_fraction": [0.015],
            "rollouts": {"d4rl": {"success_rate": 1.0, "normalized_score": score, "seconds": 5.0},
                         "multi2d": {"success_rate": 1.0, "normalized_score": score + 50, "seconds": 5.0}},
            "corl_last": 42.11, "corl_last_sd": 0.58, "corl_best": 50.92, "corl_best_sd": 4.23})
    html = trajectories_section(results, {})
    fixed = _section(html, "Offline RL on real and generated experience, D4RL maze2d protocol")
    multi = _section(html, "Offline RL on real and generated experience, Multi2D protocol")
    # IQL's two seeds: mean 105.0 ± sd 7.1; the control next; TD3+BC on the pooled data after IQL; the planner;
    # then CORL, under the fixed goal only
    control = "reshaped into single-goal episodes shaped like the plans"
    assert fixed.index("<td>105.0 ± 7.1</td>") < fixed.index(control)
    assert fixed.index("<td>90.0</td>") < fixed.index("expert data, as collected + maze-diffuser plans, executed")
    assert fixed.index("80.0") < fixed.index("<b>maze-diffuser</b> (ours, map-free, seed 0)") < fixed.index(
        "IQL, CORL (D4RL umaze maze2d-v1, 1M updates)")
    assert "last 42.1 ± 0.6; best 50.9 ± 4.2" in fixed and "<td>130 s</td>" in fixed and "<td>0.015</td>" in fixed
    assert "<td>155.0 ± 7.1</td>" in multi and "118.0" in multi and "CORL" not in multi and "106.5" not in multi
    realism = html[html.index("Sampled plans as experience"):html.index("Offline RL on real")]
    assert realism.index("0.989") < realism.index("0.949") < realism.index("0.705") < realism.index("0.587")
