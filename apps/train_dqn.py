"""Deep Q-learning (Mnih et al., Nature 2015) on classic control and Atari, in the runner's loop.

    python -m apps.train_dqn --flagfile=apps/flags/dqn_cartpole.flags --seed=0
    python -m apps.train_dqn --flagfile=apps/flags/dqn_pong.flags

Acts in --num_envs vectorised environments with an epsilon-greedy policy (epsilon decays
linearly from --epsilon_start to --epsilon_final over --exploration_fraction of the steps),
stores every step in a replay buffer (Atari frames once each: suite.rl.replay), and every
--train_freq environment steps takes --gradient_steps Adam steps on Huber losses of batches
from it, against a target network copied every --target_update steps (or moved by --tau).
Every --eval_every steps it plays --eval_episodes greedy episodes (val_return: what best.keras
follows). At the end it plays --final_eval_episodes new greedy episodes with the policy it keeps
(best.keras: DQN's policy can get worse late in training) and with the final network, and
records a GIF of one.

Writes under --model_dir the runner's files (checkpoints of the online network, backup/ with
both networks, the optimizer, the replay buffer, epsilon, the step count, the RNG and (classic
control) environment states, logs/, history.csv, learning_curves.png, results.json) plus
episode_returns.png, greedy_episode.gif and export/<env>/<version>/: a SavedModel of the kept
policy (observation -> action and q_values).

Its options (defaults, help, checks) are the fields of suite.tasks.dqn.DqnConfig.
"""
from suite.runtime.cli import main as run
from suite.tasks.dqn import DqnTask


def main() -> None:
    """Entry point (python -m apps.train_dqn, console script suite-train-dqn)."""
    run(DqnTask)


if __name__ == "__main__":
    main()
