"""Q-learning on a 5-state chain in a custom loop: an environment, a replay buffer, a target
network and an explicit optimizer, resumed exactly from extra state. The DQN app's shape in
miniature, written as README's "Writing an application" shows: a config whose fields are the
flags, a Task, and the runner's command line.

    PYTHONPATH=.:tests python -m toy_apps.chain_dqn --model_dir=runs/chain_dqn --env_steps=300

The chain: states 0..4 (one-hot), action 0 moves left, 1 right; reaching state 4 pays 1 and
restarts at 0; an episode also restarts after 12 steps.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from suite.config import Config, group, option
from suite.runtime.config import OptimizerConfig, RuntimeConfig
from suite.tasks.base import Signature, Task

STATES, ACTIONS, EPISODE = 5, 2, 12


class Chain:
    """The environment; its whole state is (position, steps), so it saves as two integers."""

    def __init__(self):
        self.position, self.steps = 0, 0

    def observe(self) -> np.ndarray:
        return np.eye(STATES, dtype=np.float32)[self.position]

    def step(self, action: int) -> tuple[float, bool]:
        self.position = max(0, min(STATES - 1, self.position + (1 if action else -1)))
        self.steps += 1
        reward = float(self.position == STATES - 1)
        done = reward > 0 or self.steps >= EPISODE
        if done:
            self.position, self.steps = 0, 0
        return reward, done


@dataclasses.dataclass
class ChainDqnConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/chain_dqn")
    optimizer: OptimizerConfig = group(OptimizerConfig, learning_rate=1e-2)
    env_steps: int = option(300, "Environment steps to train for.", bounds=">= 1")
    steps_per_epoch: int = option(50, "Environment steps between evaluations, checkpoints and "
                                  "backups.", bounds=">= 1")
    batch_size: int = option(16, "Replay batch per learning step.", bounds=">= 1")
    target_update: int = option(25, "Steps between target network copies.", bounds=">= 1")
    step_delay_s: float = option(0.0, "Sleep this long after each step (lets tests signal a "
                                 "run mid-epoch).", bounds=">= 0")


class ChainDqnTask(Task):
    config_class = ChainDqnConfig
    name = "chain_dqn"
    best_checkpoint = ("val_return", "max")
    meaning_keys = ("observation_size", "actions")
    capacity, gamma = 256, 0.9

    def __init__(self, config: ChainDqnConfig, data_override=None):
        super().__init__(config, data_override)
        self.env_steps = config.env_steps
        self.loop_steps_per_epoch, self.batch_size = config.steps_per_epoch, config.batch_size
        self.target_update, self.step_delay_s = config.target_update, config.step_delay_s

    def load_data(self, run):  # no dataset: an environment and a buffer, one per worker
        self.rng = np.random.default_rng([self.seed, run.runtime.role.task_id])
        self.env = Chain()
        self.obs = np.zeros((self.capacity, STATES), np.float32)
        self.next_obs = np.zeros((self.capacity, STATES), np.float32)
        self.actions = np.zeros(self.capacity, np.int64)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.dones = np.zeros(self.capacity, np.float32)
        self.size = 0

    def build(self, run):
        import keras

        from suite.runtime.optim import make_optimizer

        def q_network(name):
            keras.utils.set_random_seed(self.seed)
            return keras.Sequential([keras.Input((STATES,)), keras.layers.Dense(16, "relu"),
                                     keras.layers.Dense(ACTIONS)], name=name)

        online, target = q_network("q_network"), q_network("target")
        self.optimizer = make_optimizer(self.config.optimizer, self.loop_steps_per_epoch,
                                        max(1, self.env_steps // self.loop_steps_per_epoch))
        self.optimizer.build(online.trainable_variables)
        return {"q_network": online, "target": target}

    # -- resume state besides the networks and the optimizer -------------------------------
    def extra_state(self):
        return {"obs": self.obs, "next_obs": self.next_obs, "actions": self.actions,
                "rewards": self.rewards, "dones": self.dones, "size": self.size,
                "env": [self.env.position, self.env.steps], "rng": self.rng.bit_generator.state}

    def load_extra_state(self, state):
        for name in ("obs", "next_obs", "actions", "rewards", "dones"):
            getattr(self, name)[...] = state[name]
        self.size = int(state["size"])
        self.env.position, self.env.steps = state["env"]
        self.rng.bit_generator.state = state["rng"]

    # -- the loop ----------------------------------------------------------------------------
    def train(self, run):
        import tensorflow as tf

        online, target = run.models["q_network"], run.models["target"]
        strategy = run.strategy

        def learn_on_replica(obs, actions, rewards, next_obs, dones):
            best_next = tf.reduce_max(target(next_obs), axis=-1)
            goal = rewards + self.gamma * (1.0 - dones) * best_next
            with tf.GradientTape() as tape:
                q = tf.gather(online(obs, training=True), actions, batch_dims=1)
                loss = tf.reduce_mean(tf.keras.losses.huber(goal[:, None], q[:, None]))
                scaled = loss / strategy.num_replicas_in_sync
            grads = tape.gradient(scaled, online.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, online.trainable_variables))
            return loss

        @tf.function
        def learn(*batch):
            losses = strategy.run(learn_on_replica, args=batch)
            return strategy.reduce("MEAN", losses, axis=None)

        loop = run.loop(self.env_steps, self.loop_steps_per_epoch,
                        optimizers={"q_optimizer": self.optimizer})
        for step in loop:
            epsilon = max(0.1, 1.0 - step / (0.6 * self.env_steps))
            obs = self.env.observe()
            if self.rng.random() < epsilon:
                action = int(self.rng.integers(ACTIONS))
            else:
                action = int(np.argmax(online(obs[None], training=False)[0]))
            reward, done = self.env.step(action)
            i = step % self.capacity
            self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
            self.next_obs[i], self.dones[i] = self.env.observe(), float(done)
            self.size = min(self.size + 1, self.capacity)
            picked = self.rng.integers(self.size, size=self.batch_size)
            loss = learn(self.obs[picked], self.actions[picked], self.rewards[picked],
                         self.next_obs[picked], self.dones[picked])
            if (step + 1) % self.target_update == 0:
                target.set_weights(online.get_weights())
            loop.log(loss=float(loss), epsilon=epsilon, reward=reward)
            if self.step_delay_s:
                time.sleep(self.step_delay_s)
        return loop.outcome

    def epoch_metrics(self, run, epoch):
        return {"val_return": self.greedy_return(run.models["q_network"])}

    @staticmethod
    def greedy_return(q_network) -> float:
        env, total = Chain(), 0.0
        for _ in range(EPISODE):
            action = int(np.argmax(q_network(env.observe()[None], training=False)[0]))
            reward, done = env.step(action)
            total += reward
            if done:
                break
        return total

    def evaluate(self, run):
        weights = np.concatenate([w.ravel() for w in run.model.get_weights()])
        value = self.greedy_return(run.model)
        print(f"Greedy return: {value}", flush=True)
        return {"greedy_return": value, "env_steps": self.env_steps,
                "iterations": int(self.optimizer.iterations.numpy()),
                "weights_checksum": float(np.sum(weights.astype(np.float64) ** 2))}

    def export_metadata(self):
        return {"observation_size": STATES, "actions": ACTIONS}

    @classmethod
    def serving_signatures(cls, model, metadata):
        import tensorflow as tf

        def policy(observation):
            q_values = tf.cast(model(observation, training=False), tf.float32)
            return {"action": tf.argmax(q_values, axis=-1), "q_values": q_values}

        spec = tf.TensorSpec([None, metadata["observation_size"]], tf.float32, name="observation")
        return {"serving_default": Signature(policy, [spec])}


if __name__ == "__main__":
    from suite.runtime.cli import main

    main(ChainDqnTask)
