"""Deep Q-learning (Mnih et al., Nature 2015) on classic control and Atari, in the runner's loop.

Acts in `num_envs` vectorised environments with an epsilon-greedy policy (epsilon decays
linearly from `epsilon_start` to `epsilon_final` over `exploration_fraction` of the steps),
stores every step in a replay buffer (Atari frames once each: suite.rl.replay), and every
`train_freq` environment steps takes `gradient_steps` Adam steps on Huber losses of batches
from it, against a target network copied every `target_update` steps (or moved by `tau`).
Every `eval_every` steps it plays `eval_episodes` greedy episodes (val_return: what best.keras
follows). At the end it plays `final_eval_episodes` new greedy episodes with the policy it keeps
(best.keras: DQN's policy can get worse late in training) and with the final network, and
records a GIF of one.

Besides the runner's files (checkpoints of the online network; backup/ with both networks, the
optimizer, the replay buffer, epsilon, the step count, the RNG and (classic control)
environment states) it writes episode_returns.png, greedy_episode.gif and
export/<env>/<version>/: a SavedModel of the kept policy (observation -> action and q_values).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from suite.config import Config, group, option
from suite.errors import ConfigError
from suite.runtime.config import OptimizerConfig, RuntimeConfig
from suite.tasks.base import Input, Signature, Task


def _registered_env(env_id: str) -> None:
    from suite.rl.environments import check_env_id

    try:
        check_env_id(env_id)
    except ValueError as e:
        raise ConfigError(str(e)) from None


@dataclasses.dataclass
class DqnConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/dqn")
    optimizer: OptimizerConfig = group(OptimizerConfig, learning_rate=1e-4, clipnorm=10.0)
    env: str = option("CartPole-v1", "Gymnasium environment id: classic control (CartPole-v1, "
                      "Acrobot-v1, ...) or Atari through ale-py (ALE/Pong-v5, ALE/Breakout-v5, "
                      "...).", check=_registered_env)
    env_steps: int = option(100_000, "Environment steps to train for (over all --num_envs).",
                            bounds=">= 1")
    num_envs: int = option(1, "Environments stepped together (gymnasium's vector API).",
                           bounds=">= 1")
    buffer_size: int = option(100_000, "Replay buffer capacity in transitions.",
                              bounds=">= 100")
    batch_size: int = option(64, "Transitions per gradient step (global: split over the "
                             "replicas).", bounds=">= 1")
    learning_starts: int = option(1000, "Environment steps of acting before the first "
                                  "gradient step.", bounds=">= 0")
    train_freq: int = option(4, "Environment steps between training phases.", bounds=">= 1")
    gradient_steps: int = option(1, "Gradient steps per training phase.", bounds=">= 1")
    gamma: float = option(0.99, "Discount factor.", bounds="[0, 1]")
    target_update: int = option(10_000, "Environment steps between target network updates.",
                                bounds=">= 1")
    tau: float = option(1.0, "Target update weight: 1 copies the online network (hard, the "
                        "paper's), below 1 moves the target that fraction towards it (soft).",
                        bounds="(0, 1]")
    double_dqn: bool = option(False, "Double DQN targets (van Hasselt et al. 2016): the online "
                              "network picks the next action, the target network values it.")
    epsilon_start: float = option(1.0, "Exploration rate at the start.", bounds="[0, 1]")
    epsilon_final: float = option(0.05, "Exploration rate after the decay.", bounds="[0, 1]")
    exploration_fraction: float = option(0.1, "Fraction of --env_steps over which epsilon "
                                         "decays linearly.", bounds="(0, 1]")
    units: tuple[int, ...] = option((256, 256), "Hidden layer widths of the MLP for vector "
                                    "observations (Atari uses the paper's network).",
                                    bounds=">= 1",
                                    message="must be positive integers, e.g. 256,256")
    init: str = option("glorot", "The MLP's initialisation: Keras's Glorot uniform, or "
                       "PyTorch's nn.Linear default (what CleanRL and Stable-Baselines3 start "
                       "from).", choices=("glorot", "torch"))
    eval_every: int = option(10_000, "Environment steps between greedy evaluations (an epoch: "
                             "history row, checkpoint, backup; the epochs the learning-rate "
                             "schedule flags count).", bounds=">= 1")
    eval_episodes: int = option(10, "Greedy episodes per evaluation.", bounds=">= 1")
    final_eval_episodes: int = option(100, "Greedy episodes of the final evaluation.",
                                      bounds=">= 0")
    eval_epsilon: float = option(0.0, "Exploration rate while evaluating (the paper: 0.05 for "
                                 "Atari).", bounds="[0, 1]")
    sticky_actions: float | None = option(None, "ALE's repeat_action_probability (v5 default "
                                          "0.25); Atari only.", bounds="[0, 1]")
    gif: bool = option(True, "Write greedy_episode.gif of one greedy episode at the end.")


def crossed(before: int, after: int, period: int) -> bool:
    """Whether a multiple of `period` lies in (before, after]: a vector step of several
    environment steps triggers what is due every `period` environment steps exactly once."""
    return after // period > before // period


def epsilon_at(step: int, total: int, start: float, final: float, fraction: float) -> float:
    """Linear decay from `start` to `final` over the first `fraction` of `total` steps."""
    progress = min(1.0, step / max(1.0, fraction * total))
    return start + progress * (final - start)


class DqnTask(Task):
    config_class = DqnConfig
    best_checkpoint = ("val_return", "max")
    export_checkpoint = "best"  # the policy the run keeps: training can collapse it later
    watched_losses = ("loss",)
    epoch_option = "eval_every"  # named when a rerun's epoch length differs from the backup's
    meaning_keys = ("env", "observation_shape", "num_actions")
    figures = ("episode_returns.png", "greedy_episode.gif")

    def __init__(self, config: DqnConfig, data_override=None):
        super().__init__(config, data_override)
        self.o = config  # the options, by name
        self.name = config.env.replace("ALE/", "").replace("/", "_").lower()
        self.title = f"DQN on {config.env}"
        self.global_batch_size = config.batch_size
        self.episode_returns: list[list[float]] = []  # [env step, return, length]

    # -- environments and the buffer -------------------------------------------------------
    def load_data(self, run):
        from suite.rl import environments
        from suite.rl.replay import ReplayBuffer

        o = self.o
        self.envs = environments.make_vector_env(o.env, o.num_envs, o.sticky_actions)
        self.frame_shape, dtype, self.stack, self.num_actions = environments.observation_spec(
            self.envs)
        self.atari = environments.is_atari(o.env)
        self.buffer = ReplayBuffer(o.buffer_size, self.frame_shape, dtype, self.stack,
                                   o.num_envs)
        # A seed per worker: workers explore differently and learn one network together.
        self.rng = np.random.default_rng([self.seed, run.runtime.role.task_id])
        self.observations, _ = self.envs.reset(seed=int(self.rng.integers(2 ** 31)))
        for env in range(o.num_envs):
            self.buffer.add_start(env, self.observations[env])
        self.episode = np.zeros((o.num_envs, 2))  # running return and length per env
        self.epsilon = o.epsilon_start

    def build(self, run):
        from suite.models.dqn import build_dqn_atari, build_q_mlp
        from suite.runtime.loss_scaling import for_custom_loop
        from suite.runtime.optim import make_optimizer

        def network(name):
            if self.atari:
                return build_dqn_atari(self.num_actions, self.stack, self.frame_shape, name=name)
            return build_q_mlp(int(np.prod(self.frame_shape)), self.num_actions,
                               list(self.o.units), self.o.init, name=name)

        import keras

        keras.utils.set_random_seed(self.seed)
        online, target = network("q_network"), network("target_network")
        target.set_weights(online.get_weights())
        # The schedule flags count epochs (--eval_every environment steps), the optimizer its
        # gradient updates: --gradient_steps every --train_freq steps (from --learning_starts).
        o = self.o
        per_epoch = max(1, round(o.eval_every / o.train_freq * o.gradient_steps))
        epochs = -(-o.env_steps // o.eval_every)
        self.optimizer = for_custom_loop(make_optimizer(o.optimizer, per_epoch, epochs))
        self.optimizer.build(online.trainable_variables)
        return {"q_network": online, "target_network": target}

    # -- resume state besides the networks and the optimizer ----------------------------------
    def extra_state(self):
        from suite.rl.environments import environment_state

        return {**self.buffer.state(), "observations": np.asarray(self.observations),
                "episode": self.episode, "epsilon": self.epsilon,
                "rng": self.rng.bit_generator.state,
                "environments": environment_state(self.envs),
                "episode_returns": self.episode_returns}

    def load_extra_state(self, state):
        from suite.rl.environments import restore_environment_state

        self.buffer.load_state(state)
        self.epsilon = float(state["epsilon"])
        self.rng.bit_generator.state = state["rng"]
        self.episode_returns = [list(r) for r in state["episode_returns"]]
        if state.get("environments") is not None:  # classic control: exactly where it was
            restore_environment_state(self.envs, state["environments"])
            self.observations = np.asarray(state["observations"])
            self.episode = np.asarray(state["episode"])
        else:  # an emulator's state is not saved: new episodes, from the restored RNG
            self.observations, _ = self.envs.reset(seed=int(self.rng.integers(2 ** 31)))
            for env in range(self.o.num_envs):
                self.buffer.add_start(env, self.observations[env])
            self.episode = np.zeros((self.o.num_envs, 2))

    # -- the loop --------------------------------------------------------------------------------
    def train(self, run):
        o = self.o
        learn, update_target, q_values = self._compiled(run)
        per_step = o.num_envs
        loop = run.loop(max(1, o.env_steps // per_step), max(1, o.eval_every // per_step),
                        optimizers={"q_optimizer": self.optimizer})
        started, first_step = time.monotonic(), None
        self.eval_seconds = 0.0  # greedy evaluations, not counted in the steps per second
        for step in loop:
            env_step = step * per_step
            first_step = env_step if first_step is None else first_step
            self.epsilon = epsilon_at(env_step, o.env_steps, o.epsilon_start, o.epsilon_final,
                                      o.exploration_fraction)
            actions = self._act(q_values, self.observations, self.epsilon)
            # Envs whose last step ended an episode reset on this one; the vector env's own
            # flags, restored with it on a resume (a local copy would restart all False).
            autoreset = np.array(self.envs._autoreset_envs, np.bool_)
            next_obs, rewards, terminated, truncated, _ = self.envs.step(actions)
            for env in range(o.num_envs):
                if autoreset[env]:  # this step reset the env; the action was ignored
                    self.buffer.add_start(env, next_obs[env])
                    continue
                self.buffer.add(env, int(actions[env]), float(rewards[env]), next_obs[env],
                                bool(terminated[env]))
                self.episode[env] += (rewards[env], 1)
                if terminated[env] or truncated[env]:
                    self.episode_returns.append([env_step + per_step, *self.episode[env]])
                    loop.scalars(env_step + per_step, episode_return=self.episode[env][0],
                                 episode_length=self.episode[env][1])
                    loop.log(**{"return": self.episode[env][0]})
                    self.episode[env] = 0
            self.observations = next_obs
            done = env_step + per_step
            if done >= o.learning_starts and crossed(env_step, done, o.train_freq):
                batches = self.buffer.sample(o.batch_size, self.rng, batches=o.gradient_steps)
                loss = learn(batches.states, batches.actions, batches.rewards,
                             batches.next_states, batches.terminated)
                loop.log(loss=float(loss))
            if crossed(env_step, done, o.target_update):
                update_target(np.float32(o.tau))
            loop.log(epsilon=self.epsilon)
        if first_step is not None:
            seconds = time.monotonic() - started - self.eval_seconds
            self.steps_per_second = (loop.step * per_step - first_step) / max(seconds, 1e-9)
        return loop.outcome

    def _act(self, q_values, observations, epsilon: float) -> np.ndarray:
        """Epsilon-greedy actions; the network runs only when some environment exploits."""
        count = len(observations)
        explore = self.rng.random(count) < epsilon
        random_actions = self.rng.integers(self.num_actions, size=count)
        if explore.all():
            return random_actions
        greedy = np.asarray(q_values(np.asarray(observations))).argmax(-1)
        return np.where(explore, random_actions, greedy)

    def _compiled(self, run):
        """The learning step (many gradient steps in one call), the target update and the
        policy's Q-values, as tf.functions under the run's strategy."""
        import tensorflow as tf

        online, target = run.models["q_network"], run.models["target_network"]
        strategy, o, optimizer = run.strategy, self.o, self.optimizer
        huber = tf.keras.losses.Huber(reduction="none")

        def replica_step(states, actions, rewards, next_states, terminated):
            ctx = tf.distribute.get_replica_context()
            n, i = ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group
            states, actions, rewards, next_states, terminated = (
                t[i::n] for t in (states, actions, rewards, next_states, terminated))
            next_target = target(next_states, training=False)
            if o.double_dqn:
                best = tf.argmax(online(next_states, training=False), axis=-1)
                next_value = tf.gather(next_target, best, batch_dims=1)
            else:
                next_value = tf.reduce_max(next_target, axis=-1)
            goal = rewards + o.gamma * (1.0 - terminated) * next_value
            with tf.GradientTape() as tape:
                q = tf.gather(online(states, training=True), actions, batch_dims=1)
                loss = tf.reduce_mean(huber(tf.stop_gradient(goal)[:, None], q[:, None]))
                scaled = loss / n
                if hasattr(optimizer, "scale_loss"):
                    scaled = optimizer.scale_loss(scaled)
            grads = tape.gradient(scaled, online.trainable_variables)
            optimizer.apply(grads, online.trainable_variables)
            return loss

        @tf.function
        def learn(states, actions, rewards, next_states, terminated):
            total = tf.constant(0.0)
            for g in tf.range(tf.shape(actions)[0]):
                losses = strategy.run(replica_step, args=(
                    states[g], actions[g], rewards[g], next_states[g], terminated[g]))
                total += strategy.reduce("MEAN", losses, axis=None)
            return total / tf.cast(tf.shape(actions)[0], tf.float32)

        @tf.function
        def update_target(tau):
            for t, w in zip(target.weights, online.weights):
                t.assign(tau * w + (1.0 - tau) * t)

        @tf.function(reduce_retracing=True)
        def q_values(observations):
            return online(observations, training=False)

        return learn, update_target, q_values

    # -- evaluation ------------------------------------------------------------------------------
    def greedy_returns(self, q_network, episodes: int, seed: int) -> list[float]:
        """Returns of `episodes` greedy episodes (epsilon --eval_epsilon), played in parallel."""
        from suite.rl.environments import make_vector_env

        parallel = min(episodes, 10)
        envs = make_vector_env(self.o.env, parallel, self.o.sticky_actions)
        rng = np.random.default_rng(seed)
        obs, _ = envs.reset(seed=seed)
        returns, running = [], np.zeros(parallel)
        autoreset, started = np.zeros(parallel, np.bool_), parallel
        active = np.ones(parallel, np.bool_)
        while len(returns) < episodes:
            q = np.asarray(q_network(np.asarray(obs), training=False))
            actions = np.where(rng.random(parallel) < self.o.eval_epsilon,
                               rng.integers(self.num_actions, size=parallel), q.argmax(-1))
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            for env in np.flatnonzero(active & ~autoreset):
                running[env] += rewards[env]
                if terminated[env] or truncated[env]:
                    returns.append(float(running[env]))
                    running[env] = 0
                    if started >= episodes:
                        active[env] = False  # no episode beyond those asked for
                    started += 1
            autoreset = np.logical_or(terminated, truncated)
        envs.close()
        return returns[:episodes]

    def epoch_metrics(self, run, epoch):
        started = time.monotonic()
        returns = self.greedy_returns(run.model, self.o.eval_episodes, seed=10_000 + epoch)
        self.eval_seconds = getattr(self, "eval_seconds", 0.0) + time.monotonic() - started
        return {"val_return": float(np.mean(returns)), "val_return_std": float(np.std(returns))}

    def evaluate(self, run):
        """Greedy returns over --final_eval_episodes new episodes, of the policy the run keeps
        (best.keras: chosen by the evaluations during training, on other episodes) and of the
        final network."""
        o = self.o
        n = o.final_eval_episodes
        returns = self.greedy_returns(run.served, n, seed=123_456) if n else []
        final = (returns if run.served is run.model
                 else self.greedy_returns(run.model, n, seed=123_456) if n else [])
        results = {
            "env": o.env, "env_steps": o.env_steps, "seed": self.seed,
            "final_eval_episodes": len(returns),
            "greedy_return_mean": float(np.mean(returns)) if returns else None,
            "greedy_return_std": float(np.std(returns)) if returns else None,
            "final_network_return_mean": float(np.mean(final)) if final else None,
            "training_episodes": len(self.episode_returns),
            "gradient_steps_done": int(self.optimizer.iterations.numpy()),
            "replay_buffer_bytes": self.buffer.nbytes,
            "parameters": int(run.model.count_params()),
        }
        if hasattr(self, "steps_per_second"):  # a rerun that trained nothing keeps the last
            results["env_steps_per_second"] = round(self.steps_per_second, 1)
        if returns:
            print(f"Greedy return over {len(returns)} episodes: {np.mean(returns):.1f} "
                  f"± {np.std(returns):.1f} (the best checkpoint); the final network: "
                  f"{np.mean(final):.1f} ± {np.std(final):.1f}", flush=True)
        if run.is_chief:
            from suite.viz.rl import plot_episode_returns, save_episode_gif

            if self.episode_returns:
                plot_episode_returns(np.asarray(self.episode_returns),
                                     run.output_path("episode_returns.png"),
                                     title=f"DQN on {o.env}")
            if o.gif:
                save_episode_gif(o.env, run.served, run.output_path("greedy_episode.gif"),
                                 seed=7, sticky_actions=o.sticky_actions)
        return results

    # -- export ----------------------------------------------------------------------------------
    def export_metadata(self):
        return {"env": self.o.env, "observation_shape": [self.stack, *self.frame_shape]
                if self.stack > 1 else list(self.frame_shape),
                "observation_dtype": "uint8" if self.atari else "float32",
                "num_actions": self.num_actions}

    @classmethod
    def serving_signatures(cls, model, metadata):
        import tensorflow as tf

        from suite.export.guards import answer_nonempty

        def q_values(observation):
            return tf.cast(model(observation, training=False), tf.float32)

        def policy(observation):
            values = answer_nonempty(q_values, observation)  # Atari's convolutions: oneDNN
            return {"action": tf.argmax(values, axis=-1), "q_values": values}

        atari = metadata["observation_dtype"] == "uint8"
        observation = Input("observation", metadata["observation_dtype"],
                            (None, *metadata["observation_shape"]),
                            about="stacked frames, pixels 0..255" if atari
                            else "what the environment observes")
        return {"serving_default": Signature(policy, [observation])}
