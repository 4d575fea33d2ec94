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
