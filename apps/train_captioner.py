"""Trains NIC (Vinyals et al. 2015, "Show and Tell"): a CNN encoder and an LSTM decoder that
captions images, on a Flickr8k-style folder or tfds coco_captions.

    python -m apps.train_captioner --flagfile=apps/flags/flickr8k_nic.flags   # offline subset

Writes under --model_dir what every app writes (checkpoints/, backup/, logs/, history.csv,
learning_curves.png, results.json, run.json, flags.txt, export/nic/<version>/) plus gallery.png
(test images with their greedy, beam-search and reference captions). results.json has corpus
BLEU-1..4 on the test images for greedy and beam-search decoding and for the two baselines
(nearest training image's caption; the language model alone), decoding times, and what the data
check left out. The export takes PNG/JPEG bytes: serving_default returns the greedy caption,
beam_search the beam-search caption for a given width. Running the same command again resumes.

Its options (defaults, help, checks) are the fields of suite.tasks.captioning.CaptionerConfig.
"""
from suite.runtime.cli import main as run
from suite.tasks.captioning import CaptioningTask


def main() -> None:
    """Entry point (python -m apps.train_captioner, console script suite-train-captioner)."""
    run(CaptioningTask)


if __name__ == "__main__":
    main()
