"""The trajectories report section: mazes in order of difficulty, our rows beside the expert's and
the published Diffuser score of the right maze."""

import json

from dgm_science.domains.trajectories.report import trajectories_section


def _write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def test_section_orders_mazes_and_places_baselines(tmp_path):
    results = tmp_path / "results"
    published = {"pointmaze-umaze": 113.9, "pointmaze-large": 123.0}
    inputs = {}
    for dataset, score in [("pointmaze-large", 61.3), ("pointmaze-umaze", 132.5)]:
        run = results / "trajectories" / dataset / "maze-diffuser" / "seed0"
        _write(run / "metrics.json", {"dynamic_position_error": 0.06, "data_dynamic_position_error": 1e-8})
        _write(run / "rollout.json", {"success_rate": 1.0, "normalized_score": score, "normalized_score_sem": 2.0,
                                      "episodes": 100, "diffuser_published_score": published[dataset]})
        expert = tmp_path / "resources" / "trajectories" / dataset / "expert_rollout.json"
        _write(expert, {"success_rate": 1.0, "normalized_score": 160.0, "episodes": 100,
                        "diffuser_published_score": published[dataset]})
        inputs[f"trajectories/{dataset}/expert_rollout"] = expert
    html = trajectories_section(results, inputs)
    umaze, large = html.index("<h3>pointmaze-umaze</h3>"), html.index("<h3>pointmaze-large</h3>")
    assert umaze < large
    assert html.index("132.5 ± 2.0") < html.index("113.9") < large < html.index("61.3 ± 2.0") < html.index("123.0")
    assert html.count("Expert planner") == 2
    assert trajectories_section(tmp_path / "empty") == ""


def test_offline_rl_rows_average_seeds_beside_the_planners_and_corl(tmp_path):
    results = tmp_path / "results"
    run = results / "trajectories" / "pointmaze-umaze" / "maze-diffuser" / "seed0"
    _write(run / "metrics.json", {"dynamic_position_error": 0.06})
    _write(run / "rollout.json", {"success_rate": 0.88, "normalized_score": 106.5, "normalized_score_sem": 5.6,
                                  "episodes": 100, "seconds": 2, "diffuser_published_score": 113.9})
    _write(run / "execute.json", {"plan_deviation_mean": 0.705, "reaches_goal": 0.512, "transitions": 63500,
                                  "transitions_per_second": 15000})
    _write(run / "two_sample.json", {"real_vs_real": {"auroc": 0.587}, "tests": [
        {"synthetic": str(run / "samples.minari"), "auroc": 0.989},
        {"synthetic": str(run / "executed.minari"), "auroc": 0.949}]})
    base = results / "trajectories" / "pointmaze-umaze" / "offline-rl"
    for source, algo, seed, score in [("expert", "iql", 0, 100.0), ("expert", "iql", 1, 110.0),
                                      ("expert+maze-diffuser", "td3bc", 0, 80.0)]:
        _write(base / source / algo / f"seed{seed}" / "offline_rl.json", {
            "maze": "umaze", "algo": algo, "transitions": 100000, "updates": 10000, "updates_per_second": 80.0,
            "seconds": 125.0, "rollout": {"success_rate": 1.0, "normalized_score": score, "seconds": 5.0},
            "corl_last": 42.11, "corl_last_sd": 0.58, "corl_best": 50.92, "corl_best_sd": 4.23})
    html = trajectories_section(results, {})
    offline = html[html.index("Offline RL on real and generated experience"):]
    # IQL's two seeds: mean 105.0 ± sd 7.1; TD3+BC on the pooled data after IQL; then the planner, then CORL
    assert offline.index("<td>105.0 ± 7.1</td>") < offline.index("expert data + maze-diffuser plans, executed")
    assert offline.index("80.0") < offline.index("<b>maze-diffuser</b> (ours, seed 0)") < offline.index(
        "IQL, CORL (D4RL umaze maze2d-v1, 1M updates)")
    assert "last 42.1 ± 0.6; best 50.9 ± 4.2" in offline and "<td>130 s</td>" in offline
    realism = html[html.index("Sampled plans as experience"):html.index("Offline RL on real")]
    assert realism.index("0.989") < realism.index("0.949") < realism.index("0.705") < realism.index("0.587")
