"""Experience replay for DQN: every observation frame stored once, per environment, in a ring.

An Atari observation is a stack of the last 4 frames, so storing (state, next state) pairs would
keep every frame 8 times (84x84 bytes each: 56 KB a transition instead of 7). Here each
environment of a vector has a ring of rows; a row holds the newest frame of one observation, the
action and reward that led to it, and whether the episode terminated there. An episode is a run
of rows that starts with a `start` row (the reset observation; no action led to it). A
transition is a non-start row j: state = the stack ending at row j-1, next state = the stack
ending at row j; stacks never reach back past their episode's start row, repeating that first
frame instead (what gymnasium's FrameStackObservation does after a reset). Vector observations
are the same with a stack of 1.

Terminated (the MDP ended) and truncated (a time limit) differ for the target: a terminated
transition does not bootstrap; a truncated one does, from its real final observation, which the
last row of the episode holds (gymnasium's vector API, autoreset "next step", returns it).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Batch:
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_states: np.ndarray
    terminated: np.ndarray  # float32 1.0: no bootstrapping from next_states


class ReplayBuffer:
    """`capacity` rows split evenly over `num_envs` rings; observations of `obs_shape`.

    For stacked frames pass the single frame's shape and `stack` (frames of an observation,
    stacked on the first axis as FrameStackObservation does).
    """

    def __init__(self, capacity: int, obs_shape: tuple, obs_dtype=np.float32, stack: int = 1,
                 num_envs: int = 1):
        if capacity < num_envs * (stack + 2):
            raise ValueError(f"capacity {capacity} is too small for {num_envs} environments "
                             f"with a stack of {stack}")
        self.num_envs, self.stack = num_envs, stack
        self.size_per_env = capacity // num_envs
        self.frames = np.zeros((num_envs, self.size_per_env, *obs_shape), obs_dtype)
        self.actions = np.zeros((num_envs, self.size_per_env), np.int64)
        self.rewards = np.zeros((num_envs, self.size_per_env), np.float32)
        self.terminated = np.zeros((num_envs, self.size_per_env), np.bool_)
        self.start = np.zeros((num_envs, self.size_per_env), np.bool_)
        self.written = np.zeros(num_envs, np.int64)  # rows ever written per env

    # -- writing --------------------------------------------------------------------------------
    def _row(self, env: int) -> int:
        return int(self.written[env] % self.size_per_env)

    def _newest(self, observation):
        observation = np.asarray(observation)
        return observation[-1] if self.stack > 1 else observation

    def add_start(self, env: int, observation) -> None:
        """The first observation of an episode (after a reset)."""
        row = self._row(env)
        self.frames[env, row] = self._newest(observation)
        self.actions[env, row], self.rewards[env, row] = 0, 0.0
        self.terminated[env, row], self.start[env, row] = False, True
        self.written[env] += 1

    def add(self, env: int, action: int, reward: float, next_observation,
            terminated: bool) -> None:
        """The step from the env's last observation: `action`, its `reward`, and where it led."""
        if self.written[env] == 0:
            raise ValueError(f"environment {env} has no start row: call add_start after reset")
        row = self._row(env)
        self.frames[env, row] = self._newest(next_observation)
        self.actions[env, row], self.rewards[env, row] = action, reward
        self.terminated[env, row], self.start[env, row] = bool(terminated), False
        self.written[env] += 1

    def __len__(self) -> int:
        """Transitions that can be sampled."""
        return int(sum(self._valid_rows(env).size for env in range(self.num_envs)))

    # -- reading --------------------------------------------------------------------------------
    def _valid_rows(self, env: int) -> np.ndarray:
        """Absolute indices j (rows ever written) of sampleable transitions of `env`: non-start
        rows whose state stack (rows j - stack .. j - 1) has not been overwritten."""
        written = int(self.written[env])
        oldest = max(0, written - self.size_per_env)
        # Rows j - stack .. j - 1 still in the ring; before the first wrap every row is (row 0
        # starts an episode, so no stack reaches before it).
        first = oldest + self.stack if oldest else 1
        if written <= first:
            return np.zeros(0, np.int64)
        rows = np.arange(first, written)
        return rows[~self.start[env, rows % self.size_per_env]]

    def _stacks(self, env: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Observations ending at absolute rows `end` of envs `env`, padded at episode starts."""
        if self.stack == 1:
            return self.frames[env, end % self.size_per_env]
        rows = np.empty((len(end), self.stack), np.int64)
        rows[:, -1] = end
        for k in range(self.stack - 2, -1, -1):  # walk back; stay on a start row once reached
            later = rows[:, k + 1]
            at_start = self.start[env, later % self.size_per_env]
            rows[:, k] = np.where(at_start, later, later - 1)
        return self.frames[env[:, None], rows % self.size_per_env]

    def sample(self, batch_size: int, rng: np.random.Generator, batches: int = 0) -> Batch:
        """`batch_size` transitions drawn uniformly (with replacement) over all environments;
        with `batches`, that many batches at once, stacked on a first axis (one look at which
        rows are valid for all of them: a training phase's gradient steps)."""
        valid = [self._valid_rows(env) for env in range(self.num_envs)]
        counts = np.array([v.size for v in valid])
        if counts.sum() == 0:
            raise ValueError("the replay buffer holds no transition yet")
        every = np.concatenate(valid)
        picks = rng.integers(counts.sum(), size=(batches or 1) * batch_size)
        env = np.searchsorted(np.cumsum(counts), picks, side="right")
        j = every[picks]
        slot = j % self.size_per_env
        batch = Batch(states=self._stacks(env, j - 1), actions=self.actions[env, slot],
                      rewards=self.rewards[env, slot], next_states=self._stacks(env, j),
                      terminated=self.terminated[env, slot].astype(np.float32))
        if not batches:
            return batch
        return Batch(*(x.reshape(batches, batch_size, *x.shape[1:])
                       for x in dataclasses.astuple(batch)))

    # -- resume state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {"replay_frames": self.frames, "replay_actions": self.actions,
                "replay_rewards": self.rewards, "replay_terminated": self.terminated,
                "replay_start": self.start, "replay_written": self.written}

    def load_state(self, state: dict) -> None:
        for name in ("frames", "actions", "rewards", "terminated", "start", "written"):
            saved = np.asarray(state[f"replay_{name}"])
            if saved.shape != getattr(self, name).shape:
                raise ValueError(f"the saved replay buffer's {name} has shape {saved.shape}, this "
                                 f"run's {getattr(self, name).shape}: another `buffer_size`, "
                                 "`num_envs` or environment")
            getattr(self, name)[...] = saved

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.state().values())
