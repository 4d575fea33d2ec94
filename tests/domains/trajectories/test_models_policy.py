"""Trajectory models, samples as Minari datasets, the planner policy and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dgm_science.base import Samples
from dgm_science import api, checkpoint, registry
from dgm_science.config import SampleConfig, TrainConfig, from_dict
from dgm_science.domains.trajectories.data import OBS_DIM, Trajectory, normalize
from dgm_science.errors import DataError
from dgm_science.families.diffusion import GaussianDiffusion
from tests.domains.trajectories.fixtures import TINY_CONFIGS, prepared

MODELS = sorted(TINY_CONFIGS)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepared(tmp_path_factory.mktemp("traj"))


def _loaded(name, data_dir, tmp_path, train_steps=0):
    """A checkpointed tiny model (optionally trained a few steps), loaded through the API."""
    spec = registry.get("model", name)
    domain = registry.get("domain", "trajectories")
    cfg = from_dict(spec.Config, TINY_CONFIGS[name], name)
    state = domain.fit_state(data_dir, spec, cfg)
    torch.manual_seed(0)
    model = spec.build(cfg, state)
    config = api.RunConfig(cfg, TrainConfig(), SampleConfig(n=8, batch_size=8))
    path = tmp_path / f"{name}.ckpt"
    checkpoint.save(path, domain="trajectories", model_name=name, config=config.to_dict(),
                    state_dict=model.state_dict(), domain_state=state)
    return api.load(path, device="cpu")


@pytest.mark.parametrize("name", MODELS)
def test_inpainting_keeps_start_and_goal_exactly(name, data_dir, tmp_path):
    loaded = _loaded(name, data_dir, tmp_path)
    start, goal = (-1.0, 1.1), (1.2, -0.9)  # two free U-Maze cells
    items = loaded.sample(6, seed=1, start=start, goal=goal)
    condition, _ = loaded.domain.draw_conditions(6, loaded.state, start=start, goal=goal)
    raw = loaded.model.sample(6, generator=torch.Generator().manual_seed(1), condition=condition)
    known = torch.isfinite(condition)
    assert torch.equal(raw[known], condition[known])  # bit for bit in the model's space
    assert not torch.isfinite(condition[:, 1:-1]).any()  # everything between is the model's
    for item in items:
        np.testing.assert_allclose(item.observations[0], [*start, 0.0, 0.0], atol=1e-5)
        np.testing.assert_allclose(item.observations[-1, :2], goal, atol=1e-5)
        np.testing.assert_array_equal(item.goal, goal)
    from dgm_science.domains.trajectories.mazes import Maze

    maze = Maze("umaze")
    for item in loaded.sample(5, seed=2):  # starts and goals drawn in distinct free cells
        cells = {tuple(maze.xy_to_cell(p)) for p in (item.observations[0, :2], item.goal)}
        assert len(cells) == 2 and all(maze.is_free(p) for p in (item.observations[0, :2], item.goal))


def test_gaussian_diffusion_elbo_bounds_the_exact_likelihood():
    """For x ~ N(0, I) the ideal denoiser is x_hat = E[x | z_t] = alpha_t z_t with error sigma_t^2
    per dimension, so the expected ELBO has a closed form; the Monte Carlo bound must match it and
    lie below the exact log-density (a 64-step chain is loose by about a nat per dimension)."""

    class Ideal(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = None
            self.dummy = torch.nn.Parameter(torch.zeros(()))

        def forward(self, z, t):
            gamma = self.model.gamma[(t * self.model.T).round().long()].view(-1, 1, 1)
            return torch.sigmoid(-gamma).sqrt() * z

    ideal = Ideal()
    model = GaussianDiffusion(ideal, (8, 3), steps=64, schedule="cosine", clip=None)
    ideal.model = model
    x = torch.randn(20000, 8, 3, generator=torch.Generator().manual_seed(0))
    draws = model.log_prob({"x": x}, generator=torch.Generator().manual_seed(1))
    elbo, error = draws.mean().item(), 4 * draws.std().item() / math.sqrt(len(x))  # one t per draw: noisy
    exact = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum((1, 2)).mean().item()
    g = model.gamma.double()
    alpha2, sigma2 = torch.sigmoid(-g), torch.sigmoid(g)
    diffusion = (0.5 * (torch.exp(-g[:-1]) - torch.exp(-g[1:])) * sigma2[1:]).sum()
    decoder = 0.5 * alpha2[0] + 0.5 * g[0] + 0.5 * math.log(2 * math.pi)
    prior = 0.5 * (sigma2[-1] + alpha2[-1]) - 0.5 * torch.log(sigma2[-1]) - 0.5
    closed = -24 * float(diffusion + decoder + prior)
    assert abs(elbo - closed) < error < 0.5 * 24
    assert exact - closed > 0.3 * 24  # a bound, and a loose one at 64 steps
    half = torch.full_like(x, math.nan)
    half[:, 0] = x[:, 0]  # a known first row: the bound covers the 21 free entries only
    conditional = model.log_prob({"x": x, "condition": half}, generator=torch.Generator().manual_seed(1))
    assert abs(conditional.mean().item() - closed * 21 / 24) < 4 * conditional.std().item() / math.sqrt(len(x))


def test_samples_round_trip_through_minari(data_dir, tmp_path):
    import minari

    loaded = _loaded("traj-arm", data_dir, tmp_path)
    items, columns = loaded.sample_table(6, seed=0)
    items[2] = None  # an invalid draw is counted, not written
    ll = loaded.log_likelihood(items)
    assert np.isfinite(ll[[0, 1, 3]]).all() and np.isnan(ll[2])
    path = tmp_path / "samples.minari"
    assert loaded.domain.write_samples(path, Samples(items, ll, columns=columns), state=loaded.state) == 5
    back = loaded.domain.read_samples(path)
    assert back[2] is None and len(back) == 6
    for a, b in zip(items, back):
        if a is not None:
            np.testing.assert_array_equal(a.observations, b.observations)
            np.testing.assert_array_equal(a.goal, b.goal)
            np.testing.assert_array_equal(np.clip(a.actions[:-1], -1, 1).astype(np.float32), b.actions[:-1])
    dataset = minari.MinariDataset(path / "data")  # what an RL library sees
    assert dataset.total_episodes == 5
    episode = next(dataset.iterate_episodes())
    assert episode.observations["observation"].shape == (16, OBS_DIM) and episode.actions.shape == (15, 2)
    env = dataset.recover_environment()
    assert env.observation_space["observation"].shape == (OBS_DIM,)


def test_prepare_rejects_a_dataset_with_another_observation_shape(tmp_path):
    from dgm_science.domains.trajectories.data import prepare_trajectories
    from dgm_science.domains.trajectories.expert import collect, write_expert_dataset

    write_expert_dataset(tmp_path / "raw", "umaze", episodes=2, episode_steps=20, seed=0)
    good = prepare_trajectories("umaze", tmp_path / "raw", tmp_path / "data")
    assert good["train_episodes"] + good["valid_episodes"] == 2
    from dgm_science.domains.trajectories import data

    episodes = collect("umaze", episodes=2, episode_steps=20, seed=0)["episodes"]
    for e in episodes:  # an AntMaze-like observation: 6 numbers per step
        e["observations"] = {**e["observations"], "observation": np.zeros((21, 6))}
    with pytest.raises(DataError, match=r"observations \(21, 6\).*observation \(T \+ 1, 4\)"):
        data._episode_arrays(episodes, tmp_path / "other")
    with pytest.raises(DataError, match="holds 'umaze' data, not 'medium'"):
        prepare_trajectories("medium", tmp_path / "raw", tmp_path / "data2")


def test_bad_start_goal_and_observations_give_one_clear_error(data_dir, tmp_path):
    from dgm_science.domains.trajectories.mazes import maze_spec
    from dgm_science.domains.trajectories.policy import PlannerPolicy

    loaded = _loaded("maze-diffuser", data_dir, tmp_path)
    with pytest.raises(ValueError, match="goal .* outside"):
        loaded.sample(2, goal=(9.0, 9.0))
    with pytest.raises(ValueError, match="start .* wall"):
        loaded.sample(2, start=(0.0, 0.0))  # the U-Maze's inner wall
    with pytest.raises(ValueError, match="unknown .*PointMaze_Spiral-v3"):
        maze_spec("PointMaze_Spiral-v3")
    policy = PlannerPolicy(loaded)
    with pytest.raises(ValueError, match=r"observation of shape \(6,\) does not match the model's \(4,\)"):
        policy.act({"observation": np.zeros(6), "desired_goal": np.zeros(2)})
    with pytest.raises(ValueError, match="dict observations"):
        policy.act(np.zeros(4))
    with pytest.raises(ValueError, match="goal .* outside"):
        policy.act({"observation": np.array([1.0, 1.0, 0, 0]), "desired_goal": np.array([5.0, 0.0])})


def test_closed_loop_counts_success_and_normalises_the_return():
    """The expert on a few seeded episodes: every goal reached; the score is D4RL's formula."""
    from dgm_science.domains.trajectories.mazes import maze_spec
    from dgm_science.domains.trajectories.policy import ExpertBatch
    from dgm_science.domains.trajectories.rollout import closed_loop

    summary, per_episode = closed_loop("umaze", ExpertBatch("umaze"), episodes=3, seed=5, max_steps=200)
    assert summary["success_rate"] == 1.0
    spec = maze_spec("umaze")
    np.testing.assert_allclose(per_episode["score"], 100 * (per_episode["returns"] - 23.85) / (161.86 - 23.85))
    assert spec.d4rl_random_score == 23.85 and spec.d4rl_expert_score == 161.86
    assert (per_episode["first_success"] > 0).all()
    # the return counts the steps spent within 0.45 of the goal, from the first arrival on
    assert (per_episode["returns"] <= 200 - per_episode["first_success"] + 1).all()
    again, _ = closed_loop("umaze", ExpertBatch("umaze"), episodes=3, seed=5, max_steps=200)
    assert again["return_mean"] == summary["return_mean"]


def test_dynamic_consistency_is_zero_for_real_transitions_and_not_for_shifted_ones(data_dir):
    from dgm_science.domains.trajectories.data import read_split
    from dgm_science.domains.trajectories.metrics import plan_metrics

    episode = read_split(data_dir / "train.npz")[0].astype(np.float64)
    real = Trajectory(episode[:40, :4], episode[:40, 4:], episode[39, :2])
    metrics = plan_metrics("umaze", [real])
    assert metrics["dynamic_position_error"] < 1e-6 and metrics["wall_fraction"] == 0.0
    shifted = Trajectory(real.observations, np.roll(real.actions, 5, axis=0), real.goal)
    assert plan_metrics("umaze", [shifted])["dynamic_velocity_error"] > 1e-3
    assert normalize(np.zeros((1, 6)), {"low": [-1] * 6, "high": [1] * 6}).tolist() == [[0.0] * 6]


def test_the_domain_state_records_the_datas_mean_step_length(data_dir):
    """What stitched planning's reach is made of: the mean distance between consecutive positions of
    the training episodes (not of the windows, not across episode boundaries)."""
    from dgm_science.domains.trajectories.data import read_split

    spec = registry.get("model", "maze-diffuser")
    cfg = from_dict(spec.Config, TINY_CONFIGS["maze-diffuser"], "maze-diffuser")
    state = registry.get("domain", "trajectories").fit_state(data_dir, spec, cfg)
    episodes = read_split(data_dir / "train.npz")
    steps = np.concatenate([np.linalg.norm(np.diff(e[:, :2], axis=0), axis=1) for e in episodes])
    assert len(steps) == sum(len(e) for e in episodes) - len(episodes)
    assert state["step_length"] == pytest.approx(float(steps.mean()), rel=1e-6)
    assert 0.005 < state["step_length"] < 0.2  # PointMaze moves a few hundredths of a cell per step


def test_plans_drawn_within_reach_can_arrive(data_dir, tmp_path):
    """dgm sample --within-reach: each goal cell at most reach = step length x (horizon - 1) whole
    cells from its start's along the maze's shortest path; a model that goes less than a cell is
    refused."""
    from dgm_science.domains.trajectories.mazes import Maze

    loaded = _loaded("maze-diffuser", data_dir, tmp_path)
    horizon = loaded.state["horizon"]
    with pytest.raises(ValueError, match="less than one cell of the umaze maze"):
        loaded.sample(4, seed=0, within_reach=True)  # the tiny model's horizon at the data's pace
    loaded.state["step_length"] = 2.5 / (horizon - 1)  # a reach of 2.5 cells: goals 1 or 2 moves away
    maze = Maze("umaze")
    items = loaded.sample(40, seed=0, within_reach=True)
    moves = [maze.distances_to(maze.xy_to_cell(item.goal))[tuple(maze.xy_to_cell(item.observations[0, :2]))]
             for item in items]
    assert set(moves) == {1, 2}, moves
    anywhere = loaded.sample(40, seed=0)
    assert max(maze.distances_to(maze.xy_to_cell(item.goal))[tuple(maze.xy_to_cell(item.observations[0, :2]))]
               for item in anywhere) > 2
