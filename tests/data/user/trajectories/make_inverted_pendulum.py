"""Write a local Minari dataset of gymnasium's MuJoCo InvertedPendulum-v5 (the run recorded in
docs/results/user-data/trajectories_inverted_pendulum.json; not committed: this script remakes it).

    python tests/data/user/trajectories/make_inverted_pendulum.py OUT_FOLDER --episodes 80 --steps 200 --seed 0

The policy: a linear balancing controller a = [1, 10, 1, 1] . (x, theta, x', theta') plus Gaussian noise whose
std is drawn per episode uniformly in [0, 2.5] (clipped to the action bounds [-3, 3]), so that some episodes fall
(the env terminates at |theta| > 0.2) and some run the whole ``--steps``. Rewards are the env's (1 a step).
Written with Minari's storage (MinariStorage, through ``minari_io.write_minari``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import gymnasium as gym

    from dgm_science.domains.trajectories.minari_io import write_minari

    env = gym.make("InvertedPendulum-v5", max_episode_steps=args.steps)
    rng = np.random.default_rng(args.seed)
    gains = np.array([1.0, 10.0, 1.0, 1.0])
    episodes = []
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        noise = rng.uniform(0, 2.5)
        observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
        done = False
        while not done:
            action = np.clip([gains @ obs + rng.normal(0, noise)], -3, 3).astype(np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            done = terminated or truncated
        episodes.append({"observations": np.array(observations), "actions": np.array(actions),
                         "rewards": np.array(rewards, dtype=np.float64), "terminations": np.array(terminations),
                         "truncations": np.array(truncations), "seed": args.seed + episode})
    write_minari(args.out, episodes, dataset_id="user/invertedpendulum/noisy-balance-v0", env_id="InvertedPendulum-v5",
                 env_kwargs={"max_episode_steps": args.steps}, spaces=(env.observation_space, env.action_space),
                 author="dgm-science", algorithm_name="linear-balance+noise",
                 description=f"InvertedPendulum-v5: {args.episodes} episodes of a noisy linear balancing controller")
    env.close()
    lengths = [len(e["actions"]) for e in episodes]
    print(args.out, f"{len(episodes)} episodes, steps min {min(lengths)} mean {np.mean(lengths):.1f} max {max(lengths)}")


if __name__ == "__main__":
    main()
