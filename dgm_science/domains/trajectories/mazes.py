"""PointMaze (gymnasium-robotics, MuJoCo) mazes: specs, env factory and grid geometry.

The three D4RL-style mazes (U-Maze / Medium / Large) exist in gymnasium-robotics as
``PointMaze_{UMaze,Medium,Large}-v3``. An observation is a dict: ``observation`` = [x, y, vx, vy],
``achieved_goal`` = [x, y], ``desired_goal`` = [gx, gy]; an action is a force in Box(-1, 1, (2,));
the goal counts as reached at distance <= 0.45 (:data:`GOAL_RADIUS`).

:class:`Maze` reproduces the env's cell <-> xy convention without creating an env (a MuJoCo env
writes a temporary XML file and compiles a model): cell (row, col) has its center at
``x = (col + 0.5) * s - n_cols * s / 2``, ``y = n_rows * s / 2 - (row + 0.5) * s`` (row 0 is the top,
y grows upwards), and the maze spans ``[-n_cols s/2, n_cols s/2] x [-n_rows s/2, n_rows s/2]``.
"""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("MUJOCO_GL", "egl")

from collections import deque  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import numpy as np  # noqa: E402

GOAL_RADIUS = 0.45
"""Distance at which PointMaze counts the goal as reached (``MazeEnv.compute_reward``)."""

_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right in (row, col)


@dataclass(frozen=True)
class MazeSpec:
    """One D4RL maze2d task as a gymnasium-robotics PointMaze env.

    ``max_episode_steps`` is the env's registered time limit (the same as D4RL maze2d-*-v1's);
    ``horizon`` is Diffuser's planning horizon; ``d4rl_random_score`` / ``d4rl_expert_score`` are
    D4RL's REF_MIN_SCORE / REF_MAX_SCORE of maze2d-*-v1 (d4rl/infos.py), which normalise a return
    to ``100 * (R - random) / (expert - random)`` (published scores: ``published/maze2d_planners.csv``);
    ``d4rl_goal_cell`` is
    the (row, col) of the "G" tile of D4RL's maze string (``d4rl/pointmaze/maze_model.py``: U_MAZE,
    MEDIUM_MAZE, LARGE_MAZE), the fixed goal of maze2d-*-v1 (``reset_target=False``).

    D4RL's maze arrays and gymnasium-robotics' maps are the same rows (``maze_arr[w][h]`` is line
    ``w``, character ``h``), but D4RL places cell (row, col) at MuJoCo (x, y) = (row, col) (+1),
    gymnasium-robotics at x = col + 0.5 - n_cols / 2, y = n_rows / 2 - row - 0.5: the same maze
    turned by 90 degrees, so the goal *cell* carries over unchanged and only its xy differs.
    """

    name: str
    env_id: str
    max_episode_steps: int
    horizon: int
    d4rl_random_score: float
    d4rl_expert_score: float
    map_name: str
    d4rl_goal_cell: tuple[int, int] | None
    custom_map: tuple[tuple[int | str, ...], ...] | None = None
    """a user's maze map (``map:`` names, :func:`custom_maze_name`); None for the three D4RL mazes"""

    @property
    def d4rl_id(self) -> str:
        return f"maze2d-{self.name}-v1"

    @property
    def map_kwargs(self) -> dict[str, Any]:
        """The env's keyword arguments that select this maze beside ``env_id``: the map of a user's maze."""
        return {} if self.custom_map is None else {"maze_map": [list(row) for row in self.custom_map]}

    def plain(self) -> MazeSpec:
        """This maze with its goal / reset cells ("g", "r", "c") made plain free cells: the expert's collection
        draws goals anywhere, as D4RL's does (the env would otherwise resample the same goal cell)."""
        if self.custom_map is None:
            return self
        rows = [[1 if c == 1 else 0 for c in row] for row in self.custom_map]
        return maze_spec(custom_maze_name(rows))

    @property
    def label(self) -> str:
        """The maze's name where a name must be short (dataset ids, titles): "custom" for a user's map."""
        return "custom" if self.custom_map is not None else self.name

    def normalized_score(self, episode_return: float | np.ndarray) -> float | np.ndarray:
        """D4RL normalised score (0 = random, 100 = D4RL's expert) of an undiscounted return."""
        return 100.0 * (episode_return - self.d4rl_random_score) / (self.d4rl_expert_score - self.d4rl_random_score)


MAZES: dict[str, MazeSpec] = {
    "umaze": MazeSpec("umaze", "PointMaze_UMaze-v3", 300, 128, 23.85, 161.86, "U_MAZE", (1, 1)),
    "medium": MazeSpec("medium", "PointMaze_Medium-v3", 600, 256, 13.13, 277.39, "MEDIUM_MAZE", (6, 6)),
    "large": MazeSpec("large", "PointMaze_Large-v3", 800, 384, 6.7, 273.99, "LARGE_MAZE", (7, 9)),
}


CUSTOM_PREFIX = "map:"
"""A user maze's name: ``map:`` and its rows joined by "/", one character a cell (1 wall, 0 free, g goal,
r reset, c goal or reset), e.g. ``map:11111/1g001/11101/1r001/11111``: the name carries the map through
the checkpoint, prepare.json and the command lines, so every command builds the same env."""

_CELL_CHARS = {1: "1", 0: "0", "g": "g", "r": "r", "c": "c"}


def check_maze_map(maze_map: Any, where: str = "maze_map") -> list[list[int | str]]:
    """A user's maze map (rows of 1 = wall, 0 = free, "g" / "r" / "c" = free goal / reset / both cells, as
    gymnasium-robotics' ``maze_map`` takes) after checking it; ``ValueError`` naming the first problem: not a
    list of rows, not rectangular, an unknown cell, fewer than two free cells, an outer cell that is not a
    wall (PointMaze builds walls only where the map has them: the point would leave the maze), free cells
    not all connected (the expert could not reach every goal)."""
    if not isinstance(maze_map, (list, tuple)) or not maze_map or \
            not all(isinstance(row, (list, tuple)) and row for row in maze_map):
        raise ValueError(f"{where}: a maze map is a non-empty list of non-empty rows, e.g. "
                         "[[1,1,1,1],[1,0,0,1],[1,1,1,1]]")
    widths = sorted({len(row) for row in maze_map})
    if len(widths) > 1:
        lengths = ", ".join(str(len(row)) for row in maze_map)
        raise ValueError(f"{where}: not rectangular (row lengths {lengths}); every row needs the same number of cells")
    rows = []
    for i, row in enumerate(maze_map):
        cells = []
        for j, cell in enumerate(row):
            value = cell.lower() if isinstance(cell, str) else cell
            if isinstance(value, bool) or value not in _CELL_CHARS:
                raise ValueError(f"{where}: row {i}, column {j} is {cell!r}; a cell is 1 (wall), 0 (free), "
                                 "'g' (goal), 'r' (reset) or 'c' (goal or reset)")
            cells.append(value)
        rows.append(cells)
    walls = np.array([[c == 1 for c in row] for row in rows])
    free = int((~walls).sum())
    if free < 2:
        raise ValueError(f"{where}: {free} free cell(s); a maze needs at least two (a start and a goal)")
    border = np.concatenate([walls[0], walls[-1], walls[:, 0], walls[:, -1]])
    if not border.all():
        raise ValueError(f"{where}: not enclosed by walls (the first and last rows and columns must be all 1: "
                         "PointMaze builds a wall only where the map has one)")
    geometry = Maze(rows, name="custom")
    first = geometry.free_cells[0]
    reached = geometry.distances_to(first) >= 0
    if int(reached.sum()) < free:
        raise ValueError(f"{where}: {free - int(reached.sum())} of the {free} free cells cannot be reached from "
                         f"cell {first}; every free cell must be connected")
    return rows


def custom_maze_name(maze_map: Any, where: str = "maze_map") -> str:
    """The ``map:`` name of a user's maze map (checked by :func:`check_maze_map`)."""
    rows = check_maze_map(maze_map, where)
    return CUSTOM_PREFIX + "/".join("".join(_CELL_CHARS[c] for c in row) for row in rows)


def _custom_spec(name: str) -> MazeSpec:
    """The spec of a ``map:`` maze. Episode length 100 + 50 x the map's diameter (the longest shortest path
    in cells: U-Maze's 4 gives its 300 steps); Diffuser's horizon 128 per 6 cells of diameter; no D4RL reference
    returns (the normalised score is NaN); the d4rl protocol's fixed goal is the first "g" cell, if any."""
    cells = [[1 if ch == "1" else 0 if ch == "0" else ch for ch in row]
             for row in name[len(CUSTOM_PREFIX):].split("/")]
    rows = check_maze_map(cells, name)
    geometry = Maze(rows, name="custom")
    diameter = max(int(geometry.distances_to(cell).max()) for cell in geometry.free_cells)
    goals = [(i, j) for i, row in enumerate(rows) for j, c in enumerate(row) if c in ("g", "c")]
    return MazeSpec(name, "PointMaze_UMaze-v3", 100 + 50 * diameter, 128 * max(1, -(-diameter // 6)),
                    float("nan"), float("nan"), "", goals[0] if goals else None,
                    custom_map=tuple(tuple(row) for row in rows))


def maze_spec(name_or_env_id: str | MazeSpec) -> MazeSpec:
    """The :class:`MazeSpec` for "umaze", "PointMaze_UMaze-v3", "maze2d-umaze-v1", "pointmaze-umaze", ...,
    or a user's map named ``map:...`` (:data:`CUSTOM_PREFIX`)."""
    if isinstance(name_or_env_id, MazeSpec):
        return name_or_env_id
    key = str(name_or_env_id).strip()
    if key.startswith(CUSTOM_PREFIX):
        return _custom_spec(key)
    for spec in MAZES.values():
        if key in (spec.name, spec.env_id, spec.d4rl_id):
            return spec
    low = key.lower()
    for prefix in ("pointmaze-", "pointmaze_", "maze2d-", "d4rl/pointmaze/"):
        if low.startswith(prefix):
            low = low[len(prefix):]
    low = low.split("-v")[0].split("-")[0].replace("_", "")
    if low in MAZES:
        return MAZES[low]
    known = ", ".join(f"{s.name} ({s.env_id})" for s in MAZES.values())
    raise ValueError(f"unknown maze {name_or_env_id!r}; known mazes: {known}")


def gym_make(env_id: str, **kwargs: Any):
    """``gym.make(env_id, **kwargs)`` (gymnasium-robotics envs registered on first use), leaving no
    file behind: a maze env writes its generated MJCF to ``<temp folder>/ant_maze<time>.xml`` and
    never deletes it (``Maze.make_maze``, gymnasium-robotics 1.4); MuJoCo compiled the model from it
    while the env was built (``MujocoEnv.__init__``) and never reads it again, so it is removed here."""
    import gymnasium as gym
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    env = gym.make(env_id, **kwargs)
    written = getattr(env.unwrapped, "tmp_xml_file_path", None)
    if written is not None:
        with contextlib.suppress(OSError):
            os.unlink(written)
    return env


def make_env(maze: str | MazeSpec, *, continuing_task: bool = True, reset_target: bool = False,
             max_episode_steps: int | None = None, **kwargs: Any):
    """The maze's PointMaze env (:func:`gym_make`: no file left in the temp folder).

    The defaults are the env's registered ones (= D4RL's evaluation protocol: a fixed goal, the
    episode runs ``max_episode_steps`` steps, reward 1 for every step spent within 0.45 of it).
    """
    spec = maze_spec(maze)
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(max_episode_steps)
    elif spec.custom_map is not None:
        kwargs["max_episode_steps"] = spec.max_episode_steps
    if spec.custom_map is not None:
        kwargs["maze_map"] = [list(row) for row in spec.custom_map]
    return gym_make(spec.env_id, continuing_task=continuing_task, reset_target=reset_target, **kwargs)


def maze_map(maze: str | MazeSpec) -> list[list[int | str]]:
    """The maze's map list from ``gymnasium_robotics.envs.maze.maps`` (1 = wall)."""
    from gymnasium_robotics.envs.maze import maps

    spec = maze_spec(maze)
    if spec.custom_map is not None:
        return [list(row) for row in spec.custom_map]
    return getattr(maps, spec.map_name)


class Maze:
    """Grid geometry of a PointMaze map: cells <-> xy, free-space tests, BFS shortest paths.

    ``maze`` is a maze name / env id / :class:`MazeSpec` (the map from gymnasium-robotics, no env
    created) or a map: a list of rows (1 = wall; 0, "g", "r", "c" = free); ``scaling`` is the
    cell size (1 for PointMaze). :meth:`from_env` reads an env's own maze object.
    """

    def __init__(self, maze: str | MazeSpec | Sequence[Sequence[int | str]], *, scaling: float = 1.0,
                 name: str | None = None):
        if isinstance(maze, (str, MazeSpec)):
            spec = maze_spec(maze)
            maze, name = maze_map(spec), name or spec.label
        self.name = name or "custom"
        self.maze_map = [list(row) for row in maze]
        self.walls = np.array([[cell == 1 for cell in row] for row in self.maze_map], dtype=bool)
        if self.walls.ndim != 2 or self.walls.size == 0:
            raise ValueError(f"maze map of {self.name!r} must be a non-empty rectangular list of rows")
        self.scaling = float(scaling)
        self.n_rows, self.n_cols = self.walls.shape
        self.x_center = self.n_cols / 2 * self.scaling
        self.y_center = self.n_rows / 2 * self.scaling
        self._dist: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def from_env(cls, env: Any, name: str = "custom") -> Maze:
        """From a (wrapped) PointMaze/AntMaze env's ``unwrapped.maze`` object."""
        maze = env.unwrapped.maze
        return cls(maze.maze_map, scaling=maze.maze_size_scaling, name=name)

    def __repr__(self) -> str:
        return f"Maze({self.name!r}, {self.n_rows}x{self.n_cols}, {len(self.free_cells)} free cells)"

    # -- cells and coordinates -------------------------------------------------------------------
    @property
    def free_cells(self) -> list[tuple[int, int]]:
        rows, cols = np.nonzero(~self.walls)
        return [(int(r), int(c)) for r, c in zip(rows, cols)]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of the whole maze (outer walls included)."""
        return -self.x_center, self.x_center, -self.y_center, self.y_center

    def cell_to_xy(self, cell: Sequence[int] | np.ndarray) -> np.ndarray:
        """Center xy of cell(s) (row, col); shape (2,) or (N, 2)."""
        rc = np.asarray(cell, dtype=np.float64)
        x = (rc[..., 1] + 0.5) * self.scaling - self.x_center
        y = self.y_center - (rc[..., 0] + 0.5) * self.scaling
        return np.stack([x, y], axis=-1)

    def xy_to_cell(self, xy: Sequence[float] | np.ndarray) -> np.ndarray:
        """(row, col) int array of the cell(s) containing xy (may lie outside the grid)."""
        p = np.asarray(xy, dtype=np.float64)
        row = np.floor((self.y_center - p[..., 1]) / self.scaling)
        col = np.floor((p[..., 0] + self.x_center) / self.scaling)
        return np.stack([row, col], axis=-1).astype(np.int64)

    def _inside(self, cells: np.ndarray) -> np.ndarray:
        rows, cols = cells[..., 0], cells[..., 1]
        return (rows >= 0) & (rows < self.n_rows) & (cols >= 0) & (cols < self.n_cols)

    def is_free_batch(self, xy: np.ndarray) -> np.ndarray:
        """Bool (N,): whether each point lies inside the maze in a non-wall cell."""
        cells = self.xy_to_cell(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
        inside = self._inside(cells)
        free = np.zeros(len(cells), dtype=bool)
        free[inside] = ~self.walls[cells[inside, 0], cells[inside, 1]]
        return free

    def is_free(self, xy: Sequence[float] | np.ndarray) -> bool:
        return bool(self.is_free_batch(np.asarray(xy, dtype=np.float64).reshape(1, 2))[0])

    def check_point(self, xy: Sequence[float] | np.ndarray, what: str = "goal") -> np.ndarray:
        """``xy`` as a float array (2,) after checking that it lies in a free cell of the maze;
        ``ValueError`` naming the point when it is outside the maze or in a wall cell."""
        p = np.asarray(xy, dtype=np.float64).reshape(-1)
        if p.shape != (2,) or not np.all(np.isfinite(p)):
            raise ValueError(f"{what} must be a finite (x, y) point, got {xy!r}")
        row, col = (int(v) for v in self.xy_to_cell(p))
        x0, x1, y0, y1 = self.bounds
        if not self._inside(np.array([row, col])):
            raise ValueError(f"{what} ({p[0]:.2f}, {p[1]:.2f}) is outside the {self.name} maze "
                             f"(x in [{x0:g}, {x1:g}], y in [{y0:g}, {y1:g}])")
        if self.walls[row, col]:
            raise ValueError(f"{what} ({p[0]:.2f}, {p[1]:.2f}) lies in a wall cell (row {row}, col {col}) "
                             f"of the {self.name} maze")
        return p.copy()

    def wall_rectangles(self) -> np.ndarray:
        """(W, 4) array of the wall cells' (x0, y0, x1, y1), for plotting."""
        rows, cols = np.nonzero(self.walls)
        centers = self.cell_to_xy(np.stack([rows, cols], axis=-1))
        half = self.scaling / 2
        return np.concatenate([centers - half, centers + half], axis=-1).reshape(-1, 4)

    # -- shortest paths ----------------------------------------------------------------------------
    def distances_to(self, cell: Sequence[int]) -> np.ndarray:
        """(n_rows, n_cols) BFS distances (4-neighbour moves) to ``cell``; -1 for walls/unreachable."""
        key = (int(cell[0]), int(cell[1]))
        if key not in self._dist:
            dist = np.full(self.walls.shape, -1, dtype=np.int64)
            dist[key] = 0
            queue = deque([key])
            while queue:
                r, c = queue.popleft()
                for dr, dc in _MOVES:
                    nr, nc = r + dr, c + dc
                    if 0 <= nr < self.n_rows and 0 <= nc < self.n_cols and not self.walls[nr, nc] and dist[nr, nc] < 0:
                        dist[nr, nc] = dist[r, c] + 1
                        queue.append((nr, nc))
            self._dist[key] = dist
        return self._dist[key]

    def cell_path(self, start_cell: Sequence[int], goal_cell: Sequence[int]) -> list[tuple[int, int]]:
        """Cells of a shortest 4-neighbour path, start and goal included (ties: up, down, left, right)."""
        dist = self.distances_to(goal_cell)
        r, c = int(start_cell[0]), int(start_cell[1])
        if dist[r, c] < 0:
            raise ValueError(f"no path from cell {(r, c)} to cell {tuple(goal_cell)} in the {self.name} maze")
        path = [(r, c)]
        while dist[r, c] > 0:
            for dr, dc in _MOVES:
                nr, nc = r + dr, c + dc
                if 0 <= nr < self.n_rows and 0 <= nc < self.n_cols and dist[nr, nc] == dist[r, c] - 1:
                    r, c = nr, nc
                    break
            path.append((r, c))
        return path

    def shortest_path(self, start_xy: Sequence[float] | np.ndarray,
                      goal_xy: Sequence[float] | np.ndarray) -> np.ndarray:
        """(K, 2) waypoints from ``start_xy`` to ``goal_xy``: the centers of the path's cells after the
        start cell, the last one replaced by the exact goal; K = max(BFS distance, 1)."""
        start = self.xy_to_cell(self.check_point(start_xy, "start"))
        goal_point = self.check_point(goal_xy, "goal")
        cells = self.cell_path(start, self.xy_to_cell(goal_point))[1:]
        waypoints = self.cell_to_xy(np.array(cells, dtype=np.int64).reshape(-1, 2))
        return np.concatenate([waypoints[:-1], goal_point[None]]) if len(waypoints) else goal_point[None]

    # -- sampling ------------------------------------------------------------------------------------
    def draw_start_goal(self, n: int, generator: Any = None, noise: float = 0.25,
                        max_cells: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (start, goal) pairs as gymnasium-robotics resets draw them: two distinct free cells,
        each point uniform within +-``noise`` cell sizes of its cell's center; the start at rest.
        ``max_cells``: the goal's cell at most that many moves from the start's along the maze's
        shortest path (uniform over those cells; the start uniform over cells that have one).
        Returns starts (n, 4) = (x, y, 0, 0) and goals (n, 2). ``generator``: a numpy Generator,
        an int seed, a ``torch.Generator`` or None."""
        rng = _numpy_rng(generator)
        free = np.array(self.free_cells, dtype=np.int64)
        if len(free) < 2:
            raise ValueError(f"the {self.name} maze needs two free cells to draw a start and a goal")
        if max_cells is None:
            first = rng.integers(0, len(free), size=n)
            second = (first + rng.integers(1, len(free), size=n)) % len(free)  # uniform over the other cells
        else:
            if max_cells < 1:
                raise ValueError(f"max_cells must be >= 1 (a goal at least one cell away), got {max_cells}")
            moves = np.stack([self.distances_to(cell)[free[:, 0], free[:, 1]] for cell in free])  # (F, F)
            allowed = (moves >= 1) & (moves <= max_cells)
            counts = allowed.sum(1)
            starts_with_goal = np.flatnonzero(counts)
            if not len(starts_with_goal):
                raise ValueError(f"no two free cells of the {self.name} maze are connected")
            first = starts_with_goal[rng.integers(0, len(starts_with_goal), size=n)]
            order = np.argsort(~allowed, axis=1, kind="stable")  # each row: its allowed goal cells first
            second = order[first, (rng.random(n) * counts[first]).astype(np.int64)]
        jitter = rng.uniform(-noise, noise, size=(2, n, 2)) * self.scaling
        starts = np.zeros((n, 4))
        starts[:, :2] = self.cell_to_xy(free[first]) + jitter[0]
        goals = self.cell_to_xy(free[second]) + jitter[1]
        return starts, goals


def _numpy_rng(generator: Any) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None or isinstance(generator, (int, np.integer)):
        return np.random.default_rng(generator)
    if hasattr(generator, "manual_seed"):  # torch.Generator: draw a seed from it
        import torch

        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)))
    raise TypeError(f"generator must be a numpy Generator, an int, a torch.Generator or None, not {type(generator)}")
