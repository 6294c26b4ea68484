"""Gymnasium environments for DQN: classic control as it is, Atari as the Nature paper plays it.

Atari (`ALE/Pong-v5`, ...) is made with frameskip=1 and wrapped in gymnasium's
AtariPreprocessing (the paper's frame skip 4 with max-pooling of the last two frames, 84x84
grayscale, up to 30 no-op starts, terminal on life loss) and FrameStackObservation(4); ALE's
sticky actions (repeat_action_probability) stay at v5's 0.25 unless told. Acting uses
gymnasium's synchronous vector API (autoreset "next step": the step after an episode's end
returns its reset observation and ignores the action).

Classic-control environments keep their whole state in a few numbers, so a resumed run puts
them back exactly (`environment_state`/`restore_environment_state`: the physics state, the RNG
and the time-limit counter); an Atari emulator's state is not saved, so a resumed Atari run
starts new episodes (its buffer, networks, epsilon and step counts are restored).
"""
from __future__ import annotations

import difflib
import os

import numpy as np

CLASSIC = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3")


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def check_env_id(env_id: str) -> None:
    """ValueError naming what to use instead of an unknown id or a missing Atari install."""
    import gymnasium as gym

    if is_atari(env_id):
        try:
            import ale_py
        except ImportError:
            raise ValueError(f"`env={env_id}` is an Atari game, which needs ale-py (its wheel "
                             "ships the ROMs): pip install ale-py==0.12.1") from None
        gym.register_envs(ale_py)
    if env_id in gym.registry:
        return
    known = sorted(gym.registry)
    close = difflib.get_close_matches(env_id, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    games = sorted(k for k in known if k.startswith("ALE/") and k.endswith("-v5"))
    raise ValueError(
        f"`env={env_id!r}` is not a registered environment.{hint} Classic control: "
        f"{', '.join(CLASSIC)}; Atari (ale-py): "
        + (", ".join(games[:8]) + f", ... ({len(games)} games)" if games
           else "ALE/Pong-v5, ALE/Breakout-v5, ... (pip install ale-py)"))


def make_env(env_id: str, render_mode: str | None = None, sticky_actions: float | None = None):
    """One environment, with the paper's Atari preprocessing for ALE ids."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rendering without a display
    import gymnasium as gym

    check_env_id(env_id)
    if not is_atari(env_id):
        try:
            return gym.make(env_id, render_mode=render_mode)
        except gym.error.DependencyNotInstalled as e:  # LunarLander's Box2D: exit 2, not 1
            raise ValueError(f"`env={env_id}` needs a package that is not installed: {e}") from e
    options = {} if sticky_actions is None else {"repeat_action_probability": sticky_actions}
    env = gym.make(env_id, frameskip=1, render_mode=render_mode, **options)
    env = gym.wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84, grayscale_obs=True,
                                          noop_max=30, terminal_on_life_loss=True)
    return gym.wrappers.FrameStackObservation(env, 4)


def make_vector_env(env_id: str, num_envs: int, sticky_actions: float | None = None):
    import gymnasium as gym

    return gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id, sticky_actions=sticky_actions) for _ in range(num_envs)])


def observation_spec(env) -> tuple[tuple, np.dtype, int, int]:
    """(frame shape, dtype, frames stacked, actions) of a (single or vector) environment."""
    import gymnasium as gym

    space = getattr(env, "single_observation_space", env.observation_space)
    actions = getattr(env, "single_action_space", env.action_space)
    if not isinstance(actions, gym.spaces.Discrete):
        raise ValueError(f"DQN needs discrete actions; this environment's are {actions}")
    if len(space.shape) == 3 and space.dtype == np.uint8:  # (stack, 84, 84) frames
        return tuple(space.shape[1:]), np.uint8, int(space.shape[0]), int(actions.n)
    return tuple(space.shape), np.float32, 1, int(actions.n)


# -- exact resume of classic control -----------------------------------------------------------
def _time_limit(env):
    import gymnasium as gym

    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def environment_state(vector_env) -> dict | None:
    """JSON-able state of every sub-environment, or None where it cannot be captured (Atari)."""
    states = []
    for env in vector_env.envs:
        core = env.unwrapped
        if not hasattr(core, "state") or is_atari(str(env.spec.id if env.spec else "")):
            return None
        limit = _time_limit(env)
        states.append({
            "state": None if core.state is None else np.asarray(core.state, np.float64).tolist(),
            "steps_beyond_terminated": getattr(core, "steps_beyond_terminated", None),
            "rng": core.np_random.bit_generator.state,
            "elapsed": None if limit is None else limit._elapsed_steps,
        })
    return {"envs": states, "autoreset": vector_env._autoreset_envs.tolist()}


def restore_environment_state(vector_env, saved: dict) -> None:
    for env, state in zip(vector_env.envs, saved["envs"]):
        core = env.unwrapped
        core.state = None if state["state"] is None else np.asarray(state["state"])
        if hasattr(core, "steps_beyond_terminated"):
            core.steps_beyond_terminated = state["steps_beyond_terminated"]
        core.np_random.bit_generator.state = state["rng"]
        limit = _time_limit(env)
        if limit is not None:
            limit._elapsed_steps = state["elapsed"]
    vector_env._autoreset_envs = np.asarray(saved["autoreset"], np.bool_)
