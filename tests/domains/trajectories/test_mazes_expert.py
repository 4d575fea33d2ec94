"""PointMaze geometry, the shortest-path expert, seeded collection and the Minari round trip."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("gymnasium_robotics")
pytest.importorskip("minari")

from dgm_science.domains.trajectories.expert import ExpertPolicy, collect, evaluate, write_expert_dataset  # noqa: E402
from dgm_science.domains.trajectories.mazes import MAZES, Maze, make_env, maze_spec  # noqa: E402

MAZE_NAMES = list(MAZES)


@pytest.mark.parametrize("name", MAZE_NAMES)
def test_geometry_matches_the_env(name: str) -> None:
    env = make_env(name)
    try:
        env_maze = env.unwrapped.maze
        assert env.spec.max_episode_steps == MAZES[name].max_episode_steps
        maze = Maze(name)
        assert maze.free_cells and len(maze.free_cells) == sum(cell != 1 for row in env_maze.maze_map for cell in row)
        rng = np.random.default_rng(0)
        for cell in maze.free_cells:
            xy = maze.cell_to_xy(cell)
            np.testing.assert_allclose(xy, env_maze.cell_rowcol_to_xy(np.array(cell)))
            for point in xy + rng.uniform(-0.49, 0.49, size=(5, 2)):  # anywhere inside the cell
                assert tuple(maze.xy_to_cell(point)) == tuple(env_maze.cell_xy_to_rowcol(point)) == cell
                assert maze.is_free(point)
        # the reset positions the env draws lie in free cells
        for seed in range(5):
            obs, _ = env.reset(seed=seed)
            assert maze.is_free_batch(np.stack([obs["achieved_goal"], obs["desired_goal"]])).all()
        assert len(maze.wall_rectangles()) == int(maze.walls.sum())
    finally:
        env.close()


def test_maze_spec_lookup() -> None:
    assert maze_spec("PointMaze_Medium-v3") is maze_spec("medium") is maze_spec("pointmaze-medium")
    assert maze_spec("maze2d-large-v1").name == "large"
    with pytest.raises(ValueError, match=r"unknown maze 'hexmaze'.*umaze.*PointMaze_Large-v3"):
        maze_spec("hexmaze")


def test_check_point_and_free_batch() -> None:
    maze = Maze("umaze")
    with pytest.raises(ValueError, match=r"goal \(5\.00, 0\.20\) is outside the umaze maze \(x in \[-2\.5, 2\.5\]"):
        maze.check_point((5.0, 0.2))
    with pytest.raises(ValueError, match=r"start \(0\.00, 0\.00\) lies in a wall cell \(row 2, col 2\)"):
        maze.check_point((0.0, 0.0), "start")
    np.testing.assert_allclose(maze.check_point((1.1, -0.9)), [1.1, -0.9])
    points = np.array([[1.1, -0.9], [0.0, 0.0], [5.0, 0.2], [-1.0, 1.0], [-2.4, -2.4]])
    np.testing.assert_array_equal(maze.is_free_batch(points), [True, False, False, True, False])


def test_shortest_path_hand_checked_umaze() -> None:
    maze = Maze("umaze")
    # top-left cell (1, 1) to bottom-left cell (3, 1): around the U, 6 moves
    start, goal = maze.cell_to_xy((1, 1)) + 0.1, maze.cell_to_xy((3, 1)) - 0.2
    path = maze.shortest_path(start, goal)
    np.testing.assert_allclose(path, [[0, 1], [1, 1], [1, 0], [1, -1], [0, -1], goal])
    assert len(maze.shortest_path(start, start + 0.05)) == 1  # same cell: straight to the goal


@pytest.mark.parametrize("name", MAZE_NAMES)
def test_shortest_paths_never_cross_walls(name: str) -> None:
    maze = Maze(name)
    cells = maze.free_cells
    rng = np.random.default_rng(1)
    for _ in range(40):
        a, b = (cells[i] for i in rng.choice(len(cells), size=2, replace=False))
        start, goal = maze.cell_to_xy(a), maze.cell_to_xy(b) + rng.uniform(-0.25, 0.25, 2)
        path = maze.shortest_path(start, goal)
        assert len(path) == maze.distances_to(b)[a]
        visited = np.concatenate([maze.xy_to_cell(start)[None], maze.xy_to_cell(path)])
        assert (np.abs(np.diff(visited, axis=0)).sum(axis=1) == 1).all()  # 4-neighbour moves only
        assert maze.is_free_batch(path).all()
        np.testing.assert_array_equal(path[-1], goal)


@pytest.mark.parametrize("name", ["medium", "large"])
def test_goals_drawn_within_reach_are_at_most_that_many_moves_away(name: str) -> None:
    """dgm sample --within-reach: every goal cell 1 to max_cells moves from its start's along the
    shortest path, every such pair drawn, every free cell a start; the same seed, the same draws."""
    maze = Maze(name)
    starts, goals = maze.draw_start_goal(4000, 3, max_cells=3)
    first, second = maze.xy_to_cell(starts[:, :2]), maze.xy_to_cell(goals)
    moves = np.array([maze.distances_to(b)[tuple(a)] for a, b in zip(first, second)])
    assert moves.min() == 1 and moves.max() == 3
    assert {tuple(c) for c in first} == set(maze.free_cells)
    pairs = {(tuple(a), tuple(b)) for a, b in zip(first, second)}
    within = {(a, b) for a in maze.free_cells for b in maze.free_cells if 1 <= maze.distances_to(b)[a] <= 3}
    assert pairs == within
    np.testing.assert_array_equal(maze.draw_start_goal(4000, 3, max_cells=3)[1], goals)
    starts, goals = maze.draw_start_goal(4000, 3)  # the default: goals anywhere
    first, second = maze.xy_to_cell(starts[:, :2]), maze.xy_to_cell(goals)
    assert max(maze.distances_to(b)[tuple(a)] for a, b in zip(first, second)) > 3
    with pytest.raises(ValueError, match="max_cells must be >= 1"):
        maze.draw_start_goal(5, 0, max_cells=0)


def test_expert_reaches_goals_on_umaze() -> None:
    result = evaluate("umaze", episodes=5, seed=0)
    assert result["success_rate"] == 1.0 and result["max_steps_to_goal"] < MAZES["umaze"].max_episode_steps
    # the longest trip: around the U from one arm's end to the other's
    env = make_env("umaze")
    try:
        policy = ExpertPolicy(Maze("umaze"))
        obs, _ = env.reset(seed=3, options={"reset_cell": np.array([1, 1]), "goal_cell": np.array([3, 1])})
        for step in range(MAZES["umaze"].max_episode_steps):
            obs, reward, *_ = env.step(policy.act(obs))
            if reward:
                break
        assert reward == 1.0 and step < 200
    finally:
        env.close()


def test_collect_is_seeded() -> None:
    first = collect("umaze", episodes=2, episode_steps=150, noise=0.3, seed=7)
    again = collect("umaze", episodes=2, episode_steps=150, noise=0.3, seed=7)
    other = collect("umaze", episodes=2, episode_steps=150, noise=0.3, seed=8)
    for a, b in zip(first["episodes"], again["episodes"]):
        for key in ("actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(a[key], b[key])
        for key, value in a["observations"].items():
            np.testing.assert_array_equal(value, b["observations"][key])
    assert not np.array_equal(first["episodes"][0]["actions"], other["episodes"][0]["actions"])
    episode = first["episodes"][0]
    assert episode["observations"]["observation"].shape == (151, 4) and episode["actions"].shape == (150, 2)
    assert episode["truncations"][-1] and not episode["truncations"][:-1].any() and not episode["terminations"].any()
    assert np.abs(episode["actions"]).max() <= 1.0
    stats = first["stats"]
    assert stats["goals_reached"] == sum(int(e["rewards"].sum()) for e in first["episodes"]) > 0
    assert stats["planner_success_rate"] == 1.0 and stats["total_steps"] == 300


def test_minari_round_trip(tmp_path) -> None:
    import minari

    from dgm_science.domains.trajectories.minari_io import load_minari, read_minari

    stats = write_expert_dataset(tmp_path / "umaze", "umaze", episodes=2, episode_steps=120, noise=0.1, seed=3)
    assert (tmp_path / "umaze" / "collect.json").is_file() and stats["episodes"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["umaze"]  # no temporary folder left behind
    written = collect("umaze", episodes=2, episode_steps=120, noise=0.1, seed=3)["episodes"]

    dataset = minari.MinariDataset(tmp_path / "umaze" / "minari" / "data")
    assert dataset.total_episodes == 2 and dataset.total_steps == 240
    for episode, expected in zip(dataset.iterate_episodes(), written):
        assert set(episode.observations) == {"observation", "achieved_goal", "desired_goal"}
        for key, value in expected["observations"].items():
            np.testing.assert_array_equal(episode.observations[key], value)
        for key in ("actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(episode, key), expected[key])
    for episode, expected in zip(read_minari(tmp_path / "umaze" / "minari"), written):
        np.testing.assert_array_equal(episode["actions"], expected["actions"])
        assert episode["seed"] == expected["seed"]
    env, eval_env = dataset.recover_environment(), dataset.recover_environment(eval_env=True)
    reference = make_env("umaze")
    try:
        for recovered in (env, eval_env):
            assert recovered.observation_space == reference.observation_space == dataset.observation_space
            assert recovered.action_space == reference.action_space == dataset.action_space
        assert env.unwrapped.reset_target and not eval_env.unwrapped.reset_target
        assert env.spec.max_episode_steps == 120 and eval_env.spec.max_episode_steps == 300
    finally:
        for e in (env, eval_env, reference):
            e.close()
    assert load_minari(tmp_path / "umaze" / "minari").id == "dgm/pointmaze-umaze-noisy-expert-v0"
    with pytest.raises(FileExistsError):
        write_expert_dataset(tmp_path / "umaze", "umaze", episodes=1, episode_steps=10)


def test_missing_or_garbled_dataset(tmp_path) -> None:
    from dgm_science.domains.trajectories.minari_io import read_minari

    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_minari(tmp_path / "nowhere")
    (tmp_path / "bad" / "data").mkdir(parents=True)
    (tmp_path / "bad" / "data" / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad: not a readable Minari dataset"):
        read_minari(tmp_path / "bad")
