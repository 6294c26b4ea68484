"""Q-networks: the Nature DQN for Atari frames and an MLP for vector observations.

Mnih et al. 2015 ("Human-level control through deep reinforcement learning", Methods): input
84x84x4, conv 32 8x8 stride 4, conv 64 4x4 stride 2, conv 64 3x3 stride 1, each with a ReLU,
a fully connected layer of 512 ReLUs, and a linear output per action: 1,687,206 parameters for
Pong's 6 actions. The network takes the observation as the environment gives it (uint8
[4, 84, 84], FrameStackObservation's layout), so the exported policy serves raw observations:
it scales by 1/255 and moves the stack to the channels inside. The Q-values are float32 under
any precision policy.
"""
from __future__ import annotations

import keras
from keras import layers


def build_dqn_atari(num_actions: int, stack: int = 4, frame: tuple[int, int] = (84, 84),
                    name: str = "dqn_nature") -> keras.Model:
    frames = keras.Input(shape=(stack, *frame), dtype="uint8", name="observation")
    x = layers.Permute((2, 3, 1), name="stack_to_channels")(frames)
    x = layers.Rescaling(1.0 / 255.0, name="scale")(x)
    x = layers.Conv2D(32, 8, strides=4, activation="relu", name="conv1")(x)
    x = layers.Conv2D(64, 4, strides=2, activation="relu", name="conv2")(x)
    x = layers.Conv2D(64, 3, strides=1, activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(512, activation="relu", name="fc")(x)
    q = layers.Dense(num_actions, name="q_values", dtype="float32")(x)
    return keras.Model(frames, q, name=name)


def torch_linear_init(fan_in: int) -> dict:
    """PyTorch's nn.Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weights
    and the bias, which the DQN baselines (CleanRL, Stable-Baselines3) inherit."""
    bound = 1.0 / fan_in ** 0.5
    return {"kernel_initializer": keras.initializers.RandomUniform(-bound, bound),
            "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}


def build_q_mlp(observation_size: int, num_actions: int, units=(256, 256), init: str = "glorot",
                name: str = "q_mlp") -> keras.Model:
    """An MLP Q-network; `init` "glorot" (Keras's default) or "torch" (torch_linear_init)."""
    if init not in ("glorot", "torch"):
        raise ValueError(f"init must be 'glorot' or 'torch', not {init!r}")
    observation = keras.Input(shape=(observation_size,), name="observation")
    x, fan_in = observation, observation_size
    for i, width in enumerate(units):
        options = torch_linear_init(fan_in) if init == "torch" else {}
        x = layers.Dense(width, activation="relu", name=f"fc{i + 1}", **options)(x)
        fan_in = width
    options = torch_linear_init(fan_in) if init == "torch" else {}
    q = layers.Dense(num_actions, name="q_values", dtype="float32", **options)(x)
    return keras.Model(observation, q, name=name)
