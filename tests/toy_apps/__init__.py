"""Tiny applications that prove the runner carries the kinds of app to come (tests only):
points_gan (two models, two optimizers, a custom train_step, under fit) and chain_dqn (a custom
loop with an environment, a replay buffer, a target network and extra resume state)."""
