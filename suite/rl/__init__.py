"""Reinforcement learning pieces: environments (gymnasium, ale-py) and experience replay."""
