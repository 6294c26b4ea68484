"""A CleanRL-style PyTorch DQN on CartPole-v1 with the app's hyperparameters: the speed peer.

    python -m bench.dqn_cartpole_torch --env_steps=100000 --seed=0 [--threads=2]

The same 256-256 MLP, Adam 2.3e-3 with gradient-norm clipping at 10, Huber loss, batch 64,
100k-transition buffer, 1,000 steps before learning, 128 gradient steps every 256 environment
steps, target copied every 10 steps, epsilon 1 -> 0.04 over 16% of the steps, one environment,
and a greedy evaluation of 100 episodes at the end: what
`python -m apps.train_dqn --flagfile=apps/flags/dqn_cartpole.flags` does. Prints one JSON line:
environment steps per second (acting and learning, evaluation excluded) and the greedy return.
Measurement only; torch is the [bench] extra.
"""
from __future__ import annotations

import json
import platform
import time

import numpy as np
from absl import flags

from bench import cli


def q_network(obs_size: int, actions: int):
    from torch import nn

    return nn.Sequential(nn.Linear(obs_size, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, actions))


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("env_steps", 100_000, "environment steps of training", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seeds the environment, PyTorch and the replay sampling",
                         flag_values=fv)
    flags.DEFINE_integer("threads", 0, "torch threads; 0: torch's default", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("eval_episodes", 100, "greedy episodes of the final network",
                         lower_bound=1, flag_values=fv)


def main(a) -> None:
    import gymnasium as gym
    import torch
    from torch import nn

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=a.seed)
    online, target = q_network(4, 2), q_network(4, 2)
    target.load_state_dict(online.state_dict())
    optimizer = torch.optim.Adam(online.parameters(), lr=2.3e-3)
    size = 100_000
    b_obs, b_next = np.zeros((size, 4), np.float32), np.zeros((size, 4), np.float32)
    b_act, b_rew = np.zeros(size, np.int64), np.zeros(size, np.float32)
    b_term = np.zeros(size, np.float32)
    stored = 0
    started = time.perf_counter()
    for step in range(a.env_steps):
        epsilon = max(0.04, 1.0 - step / (0.16 * a.env_steps) * 0.96)
        if rng.random() < epsilon:
            action = int(rng.integers(2))
        else:
            with torch.no_grad():
                action = int(online(torch.as_tensor(obs[None])).argmax(-1)[0])
        next_obs, reward, terminated, truncated, _ = env.step(action)
        i = stored % size
        b_obs[i], b_act[i], b_rew[i], b_next[i], b_term[i] = obs, action, reward, next_obs, \
            float(terminated)
        stored += 1
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
        done = step + 1
        if done >= 1000 and done % 256 == 0:
            for _ in range(128):
                idx = rng.integers(min(stored, size), size=64)
                s, a_, r, s2, t = (torch.as_tensor(x[idx]) for x in
                                   (b_obs, b_act, b_rew, b_next, b_term))
                with torch.no_grad():
                    goal = r + 0.99 * (1 - t) * target(s2).max(-1).values
                q = online(s).gather(1, a_[:, None])[:, 0]
                loss = nn.functional.smooth_l1_loss(q, goal)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(online.parameters(), 10.0)
                optimizer.step()
        if done % 10 == 0:
            target.load_state_dict(online.state_dict())
    seconds = time.perf_counter() - started
    returns = []
    eval_env = gym.make("CartPole-v1")
    for episode in range(a.eval_episodes):
        obs, _ = eval_env.reset(seed=123_456 + episode)
        total, finished = 0.0, False
        while not finished:
            with torch.no_grad():
                action = int(online(torch.as_tensor(obs[None])).argmax(-1)[0])
            obs, reward, terminated, truncated, _ = eval_env.step(action)
            total += reward
            finished = terminated or truncated
        returns.append(total)
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "threads":
                      torch.get_num_threads(), "seed": a.seed, "env_steps": a.env_steps,
                      "train_seconds": round(seconds, 1),
                      "env_steps_per_second": round(a.env_steps / seconds, 1),
                      "greedy_return_mean": float(np.mean(returns)),
                      "greedy_return_std": float(np.std(returns)),
                      "cpu": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    cli.run(main, define_flags)
