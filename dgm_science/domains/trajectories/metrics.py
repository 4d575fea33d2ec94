"""Open-loop quality of planned trajectories in the simulator: dynamic consistency (Janner et al.
2022 judge plans by whether the environment can follow them), wall crossings and goal reach."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dgm_science.domains.trajectories.mazes import GOAL_RADIUS


def simulate_transitions(maze: str, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The simulator's next observation for each (observation, action) pair: (N, 4) from
    observations (N, 4) and actions (N, 2), by setting the point's state and taking one step of
    the environment's own dynamics (action and velocity clipped as PointMaze does)."""
    from dgm_science.domains.trajectories.mazes import make_env

    env = make_env(maze)
    env.reset(seed=0)
    point = env.unwrapped.point_env
    out = np.empty_like(np.asarray(observations, dtype=np.float64))
    for i, (obs, action) in enumerate(zip(observations, actions)):
        point.set_state(np.asarray(obs[:2], dtype=np.float64), np.asarray(obs[2:4], dtype=np.float64))
        out[i] = point.step(np.asarray(action, dtype=np.float64))[0]
    env.close()
    return out


def plan_metrics(maze: str, trajectories: Sequence[Any]) -> dict[str, float]:
    """Mean over trajectories of: ``dynamic_position_error`` / ``dynamic_velocity_error`` (the
    distance between each planned next state and the simulator's next state from the planned
    state and action; positions in maze units, velocities in units/s), ``wall_fraction`` (planned
    positions inside a wall cell or outside the maze), ``goal_distance`` (final position to the
    goal), ``reaches_goal`` (final position within 0.45 of the goal) and ``path_length``."""
    from dgm_science.domains.trajectories.mazes import Maze

    if not trajectories:
        return {}
    geometry = Maze(maze)
    obs = np.stack([t.observations for t in trajectories]).astype(np.float64)  # (N, H, 4)
    actions = np.stack([t.actions for t in trajectories]).astype(np.float64)
    goals = np.stack([t.goal for t in trajectories]).astype(np.float64)
    n, horizon, _ = obs.shape
    predicted = simulate_transitions(maze, obs[:, :-1].reshape(-1, 4), actions[:, :-1].reshape(-1, 2))
    predicted = predicted.reshape(n, horizon - 1, 4)
    position_error = np.linalg.norm(predicted[..., :2] - obs[:, 1:, :2], axis=-1)
    velocity_error = np.linalg.norm(predicted[..., 2:] - obs[:, 1:, 2:], axis=-1)
    inside = geometry.is_free_batch(obs[..., :2].reshape(-1, 2)).reshape(n, horizon)
    goal_distance = np.linalg.norm(obs[:, -1, :2] - goals, axis=-1)
    return {
        "trajectories": float(n),
        "dynamic_position_error": float(position_error.mean()),
        "dynamic_velocity_error": float(velocity_error.mean()),
        "wall_fraction": float(1 - inside.mean()),
        "goal_distance": float(goal_distance.mean()),
        "reaches_goal": float((goal_distance <= GOAL_RADIUS).mean()),
        "path_length": float(np.linalg.norm(np.diff(obs[..., :2], axis=1), axis=-1).sum(1).mean()),
    }


def transition_tuples(episodes: Sequence[dict[str, Any]]) -> np.ndarray:
    """(state, action, next state) rows (N, 10) of Minari PointMaze episodes: what the two-sample
    test compares (the goal is left out: it says where a dataset sends the robot, not how it moves)."""
    rows = []
    for episode in episodes:
        obs = episode["observations"]
        obs = np.asarray(obs["observation"] if isinstance(obs, dict) else obs, dtype=np.float64)
        rows.append(np.concatenate([obs[:-1], np.asarray(episode["actions"], dtype=np.float64), obs[1:]], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, 10))


def two_sample_auroc(real: np.ndarray, synthetic: np.ndarray, *, max_per_class: int = 20_000, folds: int = 5,
                     seed: int = 0) -> dict[str, float]:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017): a gradient-boosted classifier
    (scikit-learn's HistGradientBoostingClassifier) learns to tell real rows from synthetic ones;
    its out-of-fold AUROC (``folds``-fold cross-validation) is reported. 0.5 = indistinguishable,
    1.0 = always told apart. Each class is subsampled to the same size (at most ``max_per_class``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    real, synthetic = np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)
    n = min(len(real), len(synthetic), max_per_class)
    if n < folds * 2:
        raise ValueError(f"the two-sample test needs at least {2 * folds} rows of each, got {len(real)} real and "
                         f"{len(synthetic)} synthetic")
    rng = np.random.default_rng(seed)
    x = np.concatenate([real[rng.choice(len(real), n, replace=False)],
                        synthetic[rng.choice(len(synthetic), n, replace=False)]])
    y = np.r_[np.ones(n), np.zeros(n)]
    classifier = HistGradientBoostingClassifier(random_state=seed)
    scores = cross_val_predict(classifier, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                               method="predict_proba")[:, 1]
    return {"auroc": float(roc_auc_score(y, scores)), "rows_per_class": float(n), "folds": float(folds)}


def realism(real: Sequence[dict[str, Any]], synthetic: dict[str, Sequence[dict[str, Any]]], *,
            max_per_class: int = 20_000, seed: int = 0) -> dict[str, Any]:
    """Two-sample AUROC of each synthetic set of episodes against the real episodes (``tests``, in
    the order given), and the calibration row "real_vs_real": two random halves of the real
    episodes against each other (transitions within an episode are correlated, so even real data
    is not exactly 0.5)."""
    order = np.random.default_rng(seed).permutation(len(real))
    half = len(real) // 2
    out: dict[str, Any] = {}
    if half >= 1:
        out["real_vs_real"] = two_sample_auroc(transition_tuples([real[i] for i in order[:half]]),
                                               transition_tuples([real[i] for i in order[half:]]),
                                               max_per_class=max_per_class, seed=seed)
    real_rows = transition_tuples(real)
    out["tests"] = [{"synthetic": name, **two_sample_auroc(real_rows, transition_tuples(episodes),
                                                          max_per_class=max_per_class, seed=seed)}
                    for name, episodes in synthetic.items()]
    return out
