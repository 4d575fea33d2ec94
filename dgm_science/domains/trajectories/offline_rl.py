"""Offline RL on PointMaze experience with TorchRL's objectives: IQL, CQL and TD3+BC.

A Minari dataset (the expert data ``dgm collect`` writes, plans executed in the simulator by
``dgm execute``, or any other PointMaze dataset) becomes transitions: the agent's observation is
the env's ``observation`` (x, y, vx, vy) with its ``desired_goal`` (gx, gy), the action, the
env's sparse reward and the next observation. TorchRL's loss modules (``IQLLoss``, ``CQLLoss``,
``TD3BCLoss``) train an actor and critics on uniform minibatches, updated as TorchRL's own offline
scripts update them; the observations are standardised with the data's mean and std (as CORL
does for maze2d). The trained actor acts deterministically (the Tanh-Normal's mode, or the TD3
actor's output) as a closed-loop policy (``act_batch``), and is saved with what rebuilds it
(``save_policy`` / ``load_policy``, weights only).

TorchRL, not d3rlpy: d3rlpy 2.8 pins gymnasium 1.0 and needs the old gym; the project runs
gymnasium 1.4. TorchRL's C++ extension does not load beside torch 2.13 (an ABI mismatch), so only
what needs none of it is used: uniform sampling from a ``LazyTensorStorage``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from dgm_science.errors import DataError

log = logging.getLogger(__name__)

OBS_KEYS = ("observation", "desired_goal")
"""What the agent observes of PointMaze's dict observation, concatenated: (x, y, vx, vy, gx, gy)."""
ACTION_EPS = 1e-4
"""Dataset actions are clipped into (-1 + eps, 1 - eps) for Tanh-Normal actors (log-prob of +-1 is -inf)."""


@dataclasses.dataclass(frozen=True)
class OfflineRLConfig:
    """Hyperparameters; the defaults are the published ones (CORL's maze2d configs) except ``updates``."""

    algo: str = "iql"
    updates: int = 20_000
    batch_size: int = 256
    hidden: tuple[int, ...] = (256, 256)
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    expectile: float = 0.7  # IQL (Kostrikov et al. 2022)
    temperature: float = 3.0  # IQL's beta
    alpha: float = 2.5  # TD3+BC (Fujimoto & Gu 2021)
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    cql_weight: float = 5.0  # CQL (Kumar et al. 2020): min_q_weight
    cql_bc_steps: int = 1_000  # CQL's behaviour-cloning warm-up of the actor (policy_eval_start)

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"unknown offline RL algorithm {self.algo!r}; known: {', '.join(ALGORITHMS)}")
        for name in ("updates", "batch_size", "policy_delay"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# ----------------------------------------------------------------------------- data


def transitions(episodes: Sequence[dict[str, Any]], path: Any = "dataset") -> dict[str, np.ndarray]:
    """Flat (s, a, r, s', done) arrays of Minari PointMaze episodes; s = observation ++ desired_goal.
    A dataset without PointMaze's dict observations is a DataError naming ``path``."""
    obs, nxt, act, rew, done = [], [], [], [], []
    for i, episode in enumerate(episodes):
        observations = episode["observations"]
        if not isinstance(observations, dict) or any(k not in observations for k in OBS_KEYS):
            raise DataError(f"{path}: episode {i} has no PointMaze dict observations ({', '.join(OBS_KEYS)})")
        o = np.concatenate([np.asarray(observations[k], dtype=np.float32) for k in OBS_KEYS], axis=1)
        if o.shape[1] != 6 or np.shape(episode["actions"]) != (len(o) - 1, 2):
            raise DataError(f"{path}: episode {i} has observations {o.shape} and actions "
                            f"{np.shape(episode['actions'])}; PointMaze needs (T + 1, 6) and (T, 2)")
        obs.append(o[:-1])
        nxt.append(o[1:])
        act.append(np.asarray(episode["actions"], dtype=np.float32))
        rew.append(np.asarray(episode["rewards"], dtype=np.float32))
        done.append(np.asarray(episode["terminations"], dtype=bool))
    if not obs:
        raise DataError(f"{path}: no episodes")
    data = {"observation": np.concatenate(obs), "next_observation": np.concatenate(nxt),
            "action": np.concatenate(act), "reward": np.concatenate(rew), "done": np.concatenate(done)}
    bad = [k for k, v in data.items() if v.dtype != bool and not np.isfinite(v).all()]
    if bad:
        raise DataError(f"{path}: non-finite values in {', '.join(bad)}")
    return data


def concatenate(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _tensordict(data: dict[str, np.ndarray], clip_actions: bool) -> Any:
    from tensordict import TensorDict

    action = torch.as_tensor(data["action"])
    if clip_actions:
        action = action.clamp(-1 + ACTION_EPS, 1 - ACTION_EPS)
    done = torch.as_tensor(data["done"])[:, None]
    return TensorDict({
        "observation": torch.as_tensor(data["observation"]), "action": action,
        ("next", "observation"): torch.as_tensor(data["next_observation"]),
        ("next", "reward"): torch.as_tensor(data["reward"])[:, None],
        ("next", "done"): done, ("next", "terminated"): done.clone(),
    }, batch_size=[len(action)])


# ----------------------------------------------------------------------------- networks


class Standardize(torch.nn.Module):
    """(x - mean) / std with the dataset's statistics, saved with the weights."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _QNet(torch.nn.Module):
    def __init__(self, norm: Standardize, act_dim: int, hidden: Sequence[int]) -> None:
        from torchrl.modules import MLP

        super().__init__()
        self.norm = norm
        self.mlp = MLP(in_features=len(norm.mean) + act_dim, out_features=1, num_cells=list(hidden))

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.norm(observation), action], -1))


def build_actor(algo: str, obs_dim: int, act_dim: int, hidden: Sequence[int], norm: Standardize) -> Any:
    """The algorithm's actor: a Tanh-Normal ``ProbabilisticActor`` (IQL, CQL) or a deterministic
    Tanh MLP (TD3+BC), reading "observation" and writing "action"."""
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from torchrl.modules import MLP, ProbabilisticActor, TanhNormal

    if ALGORITHMS[algo].stochastic:
        net = torch.nn.Sequential(norm, MLP(in_features=obs_dim, out_features=2 * act_dim, num_cells=list(hidden)),
                                  NormalParamExtractor())
        return ProbabilisticActor(TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
                                  in_keys=["loc", "scale"], distribution_class=TanhNormal,
                                  distribution_kwargs={"low": -1.0, "high": 1.0}, return_log_prob=True)
    net = torch.nn.Sequential(norm, MLP(in_features=obs_dim, out_features=act_dim, num_cells=list(hidden)),
                              torch.nn.Tanh())
    return TensorDictModule(net, in_keys=["observation"], out_keys=["action"])


def _critics(obs_dim: int, act_dim: int, hidden: Sequence[int], norm: Standardize) -> tuple[Any, Any]:
    from torchrl.modules import MLP, ValueOperator

    qvalue = ValueOperator(_QNet(norm, act_dim, hidden), in_keys=["observation", "action"])
    value = ValueOperator(torch.nn.Sequential(norm, MLP(in_features=obs_dim, out_features=1, num_cells=list(hidden))),
                          in_keys=["observation"])
    return qvalue, value


def _action_spec(act_dim: int) -> Any:
    from torchrl.data import Bounded

    return Bounded(low=-1.0, high=1.0, shape=(act_dim,))  # PointMaze's force: Box(-1, 1, (2,))


# ----------------------------------------------------------------------------- algorithms


class Algorithm:
    """An offline RL algorithm: TorchRL's loss module and the update its own offline script makes."""

    stochastic: ClassVar[bool] = True
    published: ClassVar[str] = ""
    """The algorithm's name as papers and CORL's tables write it."""

    def __init__(self, cfg: OfflineRLConfig, actor: Any, qvalue: Any, value: Any, act_dim: int) -> None:
        self.cfg = cfg
        self.loss = self.make_loss(actor, qvalue, value, act_dim)
        self.loss.make_value_estimator(gamma=cfg.gamma)
        from torchrl.objectives import SoftUpdate

        self.target = SoftUpdate(self.loss, tau=cfg.tau)
        self.optimiser = torch.optim.Adam(self.loss.parameters(), lr=cfg.lr)

    def make_loss(self, actor: Any, qvalue: Any, value: Any, act_dim: int) -> Any:
        raise NotImplementedError

    def total(self, out: Any, step: int) -> torch.Tensor:
        raise NotImplementedError

    def update(self, batch: Any, step: int) -> Any:
        out = self.loss(batch)
        self.optimiser.zero_grad(set_to_none=True)
        self.total(out, step).backward()
        self.optimiser.step()
        self.target.step()
        return out


class IQL(Algorithm):
    """Implicit Q-learning (Kostrikov et al. 2022): expectile value, advantage-weighted actor."""

    published = "IQL"

    def make_loss(self, actor: Any, qvalue: Any, value: Any, act_dim: int) -> Any:
        from torchrl.objectives import IQLLoss

        return IQLLoss(actor, qvalue, value, expectile=self.cfg.expectile, temperature=self.cfg.temperature)

    def total(self, out: Any, step: int) -> torch.Tensor:
        return out["loss_actor"] + out["loss_qvalue"] + out["loss_value"]


class CQL(Algorithm):
    """Conservative Q-learning (Kumar et al. 2020) on SAC, fixed CQL weight, a behaviour-cloning
    warm-up of the actor (as TorchRL's cql_offline.py and CQL's code)."""

    published = "CQL"

    def make_loss(self, actor: Any, qvalue: Any, value: Any, act_dim: int) -> Any:
        from torchrl.objectives import CQLLoss

        return CQLLoss(actor, qvalue, action_spec=_action_spec(act_dim), min_q_weight=self.cfg.cql_weight,
                       with_lagrange=False)

    def total(self, out: Any, step: int) -> torch.Tensor:
        actor = out["loss_actor"] if step >= self.cfg.cql_bc_steps else out["loss_actor_bc"]
        return actor + out["loss_qvalue"] + out["loss_cql"] + out["loss_alpha"]


class TD3BC(Algorithm):
    """TD3+BC (Fujimoto & Gu 2021): the critic every step, the actor and the targets every
    ``policy_delay`` steps (TorchRL's td3_bc.py), separate optimisers."""

    stochastic = False
    published = "TD3+BC"

    def __init__(self, cfg: OfflineRLConfig, actor: Any, qvalue: Any, value: Any, act_dim: int) -> None:
        super().__init__(cfg, actor, qvalue, value, act_dim)
        self.critic_optimiser = torch.optim.Adam(list(self.loss.qvalue_network_params.values(True, True)), lr=cfg.lr)
        self.optimiser = torch.optim.Adam(list(self.loss.actor_network_params.values(True, True)), lr=cfg.lr)

    def make_loss(self, actor: Any, qvalue: Any, value: Any, act_dim: int) -> Any:
        from torchrl.objectives import TD3BCLoss

        return TD3BCLoss(actor, qvalue, action_spec=_action_spec(act_dim), alpha=self.cfg.alpha,
                         policy_noise=self.cfg.policy_noise, noise_clip=self.cfg.noise_clip)

    def update(self, batch: Any, step: int) -> dict[str, torch.Tensor]:
        q_loss, _ = self.loss.qvalue_loss(batch)
        self.critic_optimiser.zero_grad(set_to_none=True)
        q_loss.backward()
        self.critic_optimiser.step()
        out = {"loss_qvalue": q_loss.detach()}
        if step % self.cfg.policy_delay == 0:
            actor_loss, _ = self.loss.actor_loss(batch)
            self.optimiser.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.optimiser.step()
            self.target.step()
            out["loss_actor"] = actor_loss.detach()
        return out


ALGORITHMS: dict[str, type[Algorithm]] = {"iql": IQL, "cql": CQL, "td3bc": TD3BC}


# ----------------------------------------------------------------------------- training


def train(data: dict[str, np.ndarray], cfg: OfflineRLConfig, *, seed: int = 0,
          progress: Callable[[int, dict[str, float]], None] | None = None, log_every: int = 1000,
          device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """``cfg.updates`` minibatch updates on ``data`` (``transitions``, held on ``device`` with the
    networks); returns the actor and a summary (updates / s, the last logged losses)."""
    device = torch.device(device)
    torch.manual_seed(seed)
    algo = ALGORITHMS[cfg.algo]
    td = _tensordict(data, clip_actions=algo.stochastic).to(device)
    obs_dim, act_dim = td["observation"].shape[-1], td["action"].shape[-1]
    obs = td["observation"]
    norm = Standardize(obs.mean(0), obs.std(0))
    generator = torch.Generator(device=device).manual_seed(seed)
    actor = build_actor(cfg.algo, obs_dim, act_dim, cfg.hidden, norm).to(device)
    qvalue, value = (net.to(device) for net in _critics(obs_dim, act_dim, cfg.hidden, norm))
    trainer = algo(cfg, actor, qvalue, value, act_dim)
    start, last = time.perf_counter(), {}
    for step in range(cfg.updates):
        index = torch.randint(len(td), (cfg.batch_size,), generator=generator, device=device)
        out = trainer.update(td[index], step)
        if step % log_every == 0 or step == cfg.updates - 1:
            last.update({k: float(v.detach()) for k, v in out.items() if k.startswith("loss_")})
            bad = [k for k, v in last.items() if not np.isfinite(v)]
            if bad:
                raise FloatingPointError(f"{cfg.algo}: non-finite {', '.join(bad)} at update {step}")
            if progress is not None:
                progress(step, last)
    seconds = time.perf_counter() - start
    summary = {"algo": cfg.algo, "updates": cfg.updates, "seconds": seconds, "device": str(device),
               "updates_per_second": cfg.updates / seconds, "losses": last, "transitions": len(td),
               "config": dataclasses.asdict(cfg)}
    return actor.cpu(), summary


class ActorPolicy:
    """A trained actor as a closed-loop policy over PointMaze dict observations (``act``,
    ``act_batch``): the deterministic action."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def act_batch(self, observations: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
        from tensordict import TensorDict
        from torchrl.envs.utils import ExplorationType, set_exploration_type

        obs = np.stack([np.concatenate([np.asarray(o[k], dtype=np.float32) for k in OBS_KEYS]) for o in observations])
        td = TensorDict({"observation": torch.as_tensor(obs)}, batch_size=[len(obs)])
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            return self.actor(td)["action"].numpy()

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return self.act_batch([observation])[0]


def save_policy(path: Path, actor: Any, summary: dict[str, Any], maze: str) -> None:
    """The actor's weights with what rebuilds it (algorithm, sizes, maze), loadable with weights_only."""
    from dgm_science.utils import atomic_path

    cfg = summary["config"]
    with atomic_path(Path(path)) as tmp:
        torch.save({"format": "dgm-offline-rl-policy", "algo": cfg["algo"], "hidden": list(cfg["hidden"]),
                    "obs_keys": list(OBS_KEYS), "obs_dim": 6, "act_dim": 2, "maze": maze,
                    "state_dict": actor.state_dict()}, tmp)


def load_policy(path: Path) -> tuple[ActorPolicy, dict[str, Any]]:
    """(policy, its description) of a file ``save_policy`` wrote; a clear error for anything else."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a file that is not its own
        raise DataError(f"{path}: not an offline RL policy file ({type(err).__name__}: {err})") from None
    if not isinstance(saved, dict) or saved.get("format") != "dgm-offline-rl-policy" or saved.get("algo") \
            not in ALGORITHMS:
        raise DataError(f"{path}: not an offline RL policy written by `dgm offline-rl --policy`")
    norm = Standardize(torch.zeros(saved["obs_dim"]), torch.ones(saved["obs_dim"]))
    actor = build_actor(saved["algo"], saved["obs_dim"], saved["act_dim"], saved["hidden"], norm)
    actor.load_state_dict(saved["state_dict"])
    return ActorPolicy(actor.eval()), {k: v for k, v in saved.items() if k != "state_dict"}


CORL_SOURCE = ("Tarasov et al. 2023, \"CORL: Research-oriented Deep Offline Reinforcement Learning Library\", "
               "NeurIPS Datasets and Benchmarks: the README's D4RL Maze2d tables (commit 022e449), last and best "
               "score, mean ± sd over seeds, 1M updates on D4RL's maze2d-*-v1 data")
"""Where ``published/corl_maze2d.csv`` comes from (``published/README.md``)."""
CORL_CHECKED = "checked against that README (`dgm_science/domains/trajectories/published/README.md`)"


def published_rows(algo: str, maze: str) -> dict[str, float]:
    """CORL's published maze2d scores of ``algo`` on ``maze`` (``published/corl_maze2d.csv``)."""
    import csv

    table = Path(__file__).parent / "published" / "corl_maze2d.csv"
    with open(table, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["algo"] == algo and row["maze"] == maze:
                return {f"corl_{k}": float(v) for k, v in row.items() if k not in ("algo", "maze")}
    return {}


def run_offline_rl(datasets: Sequence[Path], cfg: OfflineRLConfig, *, seed: int = 0, episodes: int = 100,
                   eval_seed: int = 0, policy_path: Path | None = None, device: str = "auto",
                   protocols: Sequence[str] = ("d4rl",)) -> dict[str, Any]:
    """``dgm offline-rl``: train ``cfg.algo`` on the transitions of the Minari ``datasets`` (all of
    one maze) and evaluate its actor closed loop on ``episodes`` seeded episodes (seeds
    ``eval_seed`` ..., the episodes every other policy of the maze is evaluated on) under each
    evaluation protocol (``rollout.PROTOCOLS``): ``rollouts[protocol]``. CORL's published rows
    (``corl_*``) were measured under ``d4rl`` only."""
    from dgm_science.domains.trajectories.execute import dataset_maze
    from dgm_science.domains.trajectories.minari_io import read_minari
    from dgm_science.domains.trajectories.rollout import closed_loop, get_protocol

    protocols = list(dict.fromkeys(protocols))
    for name in protocols:
        get_protocol(name)
    if not protocols:
        raise ValueError("offline RL needs at least one evaluation protocol")
    mazes = {str(path): dataset_maze(path) for path in datasets}
    if len(set(mazes.values())) != 1:
        raise DataError("the datasets are of different mazes: " + ", ".join(f"{p} ({m})" for p, m in mazes.items()))
    maze = next(iter(mazes.values()))
    parts = [transitions(read_minari(path), path) for path in datasets]
    data = concatenate(parts)
    log.info("%s on %s: %d transitions from %s", cfg.algo, maze, len(data["action"]),
             ", ".join(f"{p} ({len(d['action'])})" for p, d in zip(datasets, parts)))
    from dgm_science.api import resolve_device

    actor, summary = train(data, cfg, seed=seed, device=resolve_device(device),
                           progress=lambda step, losses: log.info("update %d: %s", step, losses))
    policy = ActorPolicy(actor.eval())
    rollouts = {name: closed_loop(maze, policy, episodes=episodes, seed=eval_seed, protocol=name)[0]
                for name in protocols}
    if policy_path is not None:
        save_policy(policy_path, actor, summary, maze)
    return {"maze": maze, "datasets": [str(p) for p in datasets],
            "dataset_transitions": [int(len(d["action"])) for d in parts],
            "dataset_reward_fraction": [float((d["reward"] > 0).mean()) for d in parts],
            "seed": seed, "eval_seed": eval_seed, **summary,
            "protocols": protocols, "rollouts": rollouts, **published_rows(cfg.algo, maze)}
