"""The DQN page: the exported policy plays one episode of its environment (the `action` that
serving_default answers for each observation), shown as an animation, with its return."""
from __future__ import annotations

import os
import tempfile

import gradio as gr
import numpy as np

from suite.demo.common import NothingToSend, called, guarded, message_box

MAX_STEPS = 1000  # agent steps shown: CartPole ends by 500, an Atari game can last far longer


def play(served, seed, max_steps: int = MAX_STEPS):
    """(path of the episode's GIF, answer) of one episode from `seed`."""
    from suite.viz.rl import play_episode, write_gif

    env_id = served.metadata.get("env")
    if not env_id:
        raise NothingToSend("This export's metadata names no environment (`env`) to play.")
    dtype = served.inputs("serving_default")["observation"].dtype.as_numpy_dtype
    actions = []

    def act(observation):
        answer = served("serving_default", observation=np.asarray(observation, dtype)[None])
        actions.append(int(answer["action"][0]))
        return actions[-1]

    frames, total, steps = play_episode(env_id, act, seed=int(seed or 0), max_frames=max_steps,
                                        every=2, width=320)
    folder = tempfile.mkdtemp(prefix="suite-demo-")
    path = write_gif(frames, os.path.join(folder, "episode.gif"), frame_ms=80)
    counts = np.bincount(actions, minlength=int(served.metadata.get("num_actions", 1)))
    line = (f"`serving_default` chose {steps} actions (counts per action: "
            f"{', '.join(map(str, counts))}); the episode returned **{total:g}**"
            f"{f' (stopped at {max_steps} steps)' if steps >= max_steps else ''} on {env_id}")
    return path, line


def build(served) -> None:
    with gr.Row():
        seed = gr.Number(value=0, precision=0, label="Episode seed", elem_id="seed")
        run = gr.Button("Play an episode", variant="primary", elem_id="play")
    episode = gr.Image(label=f"The policy playing {served.metadata.get('env', '')}",
                       type="filepath", interactive=False, elem_id="episode")
    message = message_box()

    @guarded(outputs=1)
    def on_play(value):
        return play(served, value)

    run.click(on_play, seed, [episode, message])
    gr.Markdown(called(served, "serving_default"))
