"""Figures of reinforcement-learning runs: returns over training, and a greedy episode as a GIF."""
from __future__ import annotations

import numpy as np

from suite.viz.plots import _save, plt


def plot_episode_returns(episodes: np.ndarray, path: str, title: str = "",
                         window: int = 20) -> str:
    """Each training episode's return at the environment step it ended, and a moving mean.

    `episodes`: rows of (environment step, return, length)."""
    steps, returns = episodes[:, 0], episodes[:, 1]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(steps, returns, ".", alpha=0.35, markersize=3, label="episode (epsilon-greedy)")
    if len(returns) >= window:
        mean = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], mean, label=f"mean of {window} episodes")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def play_episode(env_id: str, act, seed: int = 0, max_frames: int = 600, every: int = 2,
                 width: int = 240, sticky_actions=None) -> tuple[list, float, int]:
    """(frames, return, agent steps) of one episode (or its first `max_frames` agent steps)
    played by `act(observation) -> action`: every `every`-th frame, `width` pixels wide, as
    palette images for a GIF."""
    from PIL import Image

    from suite.rl.environments import make_env

    env = make_env(env_id, render_mode="rgb_array", sticky_actions=sticky_actions)
    obs, _ = env.reset(seed=seed)
    frames, total, steps = [], 0.0, 0
    for steps in range(1, max_frames + 1):
        if (steps - 1) % every == 0:
            image = Image.fromarray(env.render())
            height = max(1, round(image.height * width / image.width))
            frames.append(image.resize((width, height)).convert("P", palette=Image.ADAPTIVE))
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total += float(reward)
        if terminated or truncated:
            break
    env.close()
    return frames, total, steps


def write_gif(frames: list, path: str, frame_ms: int) -> str:
    """An animated GIF of `frames`, written atomically."""
    import os

    tmp = f"{path}.tmp.gif"
    frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    os.replace(tmp, path)
    return path


def save_episode_gif(env_id: str, q_network, path: str, seed: int = 0, max_frames: int = 600,
                     every: int = 2, width: int = 240, sticky_actions=None) -> str:
    """One greedy episode (or its first `max_frames` agent steps) as an animated GIF."""
    def greedy(obs):
        return int(np.asarray(q_network(np.asarray(obs)[None], training=False))[0].argmax())

    frames, _, _ = play_episode(env_id, greedy, seed, max_frames, every, width, sticky_actions)
    return write_gif(frames, path, 40 * every)
