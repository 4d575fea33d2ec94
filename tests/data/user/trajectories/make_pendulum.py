"""Write a local Minari dataset of gymnasium's Pendulum-v1 (Minari's own storage writer, MinariStorage, through
``minari_io.write_minari``; Minari's DataCollector needs jax, which is not installed here).

    python tests/data/user/trajectories/make_pendulum.py OUT_FOLDER --episodes 8 --steps 40 --seed 0

The policy: an energy-pumping swing-up controller (torque along the angular velocity, sign flipped near
the top to brake), plus Gaussian noise of std 0.5, clipped to [-2, 2]. Episodes end at ``--steps``
(the env's TimeLimit). The tutorial's file: 8 episodes of 40 steps, one of them cut to 10 steps (shorter
than the default horizon 32, to show the skip).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--short", type=int, default=1, help="episodes cut to 10 steps (the last ones)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import gymnasium as gym
    import minari

    from dgm_science.domains.trajectories.minari_io import write_minari

    env = gym.make("Pendulum-v1", max_episode_steps=args.steps)
    rng = np.random.default_rng(args.seed)
    episodes = []
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        limit = 10 if episode >= args.episodes - args.short else args.steps
        observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
        for _ in range(limit):
            cos, _, speed = obs
            pump = 2.0 * np.sign(speed if cos < 0.9 else -speed)
            action = np.clip([pump + rng.normal(0, 0.5)], -2, 2).astype(np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            if terminated or truncated:
                break
        truncations[-1] = True
        episodes.append({"observations": np.array(observations), "actions": np.array(actions),
                         "rewards": np.array(rewards, dtype=np.float64), "terminations": np.array(terminations),
                         "truncations": np.array(truncations), "seed": args.seed + episode})
    write_minari(args.out, episodes, dataset_id="user/pendulum/swingup-v0", env_id="Pendulum-v1",
                 env_kwargs={"max_episode_steps": args.steps}, spaces=(env.observation_space, env.action_space),
                 author="dgm-science tests", algorithm_name="energy-pumping+noise",
                 description=f"Pendulum-v1 swing-up: {args.episodes} episodes (energy pumping + noise)")
    env.close()
    print(args.out, minari.__version__)

if __name__ == "__main__":
    main()
