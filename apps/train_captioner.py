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
"""
from __future__ import annotations

import os

from absl import flags

from suite.runtime import flags as suite_flags
from suite.tasks.captioning import CaptionerConfig, CaptioningTask


def define_flags(fv: flags.FlagValues) -> None:
    suite_flags.define_runtime_flags(fv, "runs/captioner")
    suite_flags.define_schedule_flags(fv, default_epochs=20, default_batch_size=64)
    suite_flags.define_optimizer_flags(fv, default_optimizer="adam", default_learning_rate=1e-3,
                                       default_clipnorm=5.0)
    flags.DEFINE_string("dataset", None, "A folder of images (in images/, or the folder itself) "
                        "with a captions file (CSV 'image,caption' or Flickr8k.token.txt), e.g. "
                        "../shared/data/flickr8k-subset; or coco_captions (tensorflow-datasets, "
                        "online).", flag_values=fv)
    flags.DEFINE_string("captions_file", None, "The captions file, when the folder holds "
                        "several (a path, or a name inside --dataset).", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets' data folder for coco_captions.",
                        flag_values=fv)
    flags.DEFINE_integer("validation_images", 100, "Images held out for validation (the ones "
                         "before the test images in file-name order; at least 1: they pick the "
                         "best checkpoint).", flag_values=fv)
    flags.DEFINE_integer("test_images", 100, "Images held out for the test (the last in "
                         "file-name order; at least 1: they give the BLEU scores).",
                         flag_values=fv)
    flags.DEFINE_integer("limit", 0, "Keep only the first N captioned images (quick runs); 0: "
                         "all.", flag_values=fv)
    flags.DEFINE_string("encoder", "googlenet", "The CNN (a suite model name: googlenet as the "
                        "paper, resnet50, resnet20, ...) when --encoder_from does not give one.",
                        flag_values=fv)
    flags.DEFINE_string("encoder_from", None, "Start the encoder from a classification run (its "
                        "model_dir or .keras file; the network is read from it) or 'imagenet' "
                        "(keras.applications weights for resnet50/101/152, vgg16/19; offline "
                        "they must be in ~/.keras/models). Unset: random initialisation.",
                        flag_values=fv)
    flags.DEFINE_integer("image_size", 0, "Side the images are resized to; 0: the encoder "
                         "checkpoint's input size, else 224.", flag_values=fv)
    flags.DEFINE_boolean("freeze_encoder", False, "Train the decoder only (the encoder's batch "
                         "norm in inference mode).", flag_values=fv)
    flags.DEFINE_boolean("precompute_features", False, "With a frozen encoder: compute each "
                         "image's features once and train the decoder on them (much faster).",
                         flag_values=fv)
    flags.DEFINE_integer("embedding_dim", 512, "Size of the word and image embeddings (the "
                         "paper: 512).", flag_values=fv)
    flags.DEFINE_integer("lstm_units", 512, "LSTM size (the paper: 512).", flag_values=fv)
    flags.DEFINE_integer("lstm_layers", 1, "Stacked LSTM layers (the paper: 1).", flag_values=fv)
    flags.DEFINE_float("dropout", 0.5, "Dropout before and after every LSTM layer.",
                       flag_values=fv)
    flags.DEFINE_integer("min_word_count", 5, "Words seen fewer times in the training captions "
                         "become [UNK].", flag_values=fv)
    flags.DEFINE_integer("max_length", 20, "Longest caption in words: training captions are "
                         "cut there, decoding stops there.", flag_values=fv)
    flags.DEFINE_integer("beam_size", 3, "Beam width of evaluation's beam search (the paper: "
                         "20; the export takes it per request).", flag_values=fv)
    flags.DEFINE_float("length_penalty", 0.0, "Beam search ranks captions by log-probability / "
                       "length ** this: 0 the plain probability (the paper), 1 per word.",
                       flag_values=fv)
    flags.DEFINE_integer("gallery_images", 8, "Test images in gallery.png.", flag_values=fv)
    flags.mark_flag_as_required("dataset", flag_values=fv)
    suite_flags.require_at_least(fv, 1, "embedding_dim", "lstm_units", "lstm_layers",
                                 "min_word_count", "max_length", "beam_size",
                                 "validation_images", "test_images")
    suite_flags.require_at_least(fv, 0, "limit",
                                 "image_size", "gallery_images")
    flags.register_validator("dropout", lambda v: 0.0 <= v < 1.0, "--dropout must be in [0, 1)",
                             flag_values=fv)
    flags.register_validator("length_penalty", lambda v: v >= 0.0,
                             "--length_penalty must be >= 0", flag_values=fv)
    flags.register_validator(
        "encoder_from", lambda v: v is None or v == "imagenet" or os.path.exists(v),
        "--encoder_from must be 'imagenet' or an existing model_dir / .keras file",
        flag_values=fv)


def make_task(fv: flags.FlagValues, data_override=None) -> CaptioningTask:
    config = CaptionerConfig(
        dataset=fv.dataset, captions_file=fv.captions_file, data_dir=fv.data_dir,
        validation_images=fv.validation_images, test_images=fv.test_images, limit=fv.limit,
        encoder=fv.encoder, encoder_from=fv.encoder_from, image_size=fv.image_size,
        freeze_encoder=fv.freeze_encoder, precompute_features=fv.precompute_features,
        embedding_dim=fv.embedding_dim, lstm_units=fv.lstm_units, lstm_layers=fv.lstm_layers,
        dropout=fv.dropout, min_word_count=fv.min_word_count, max_length=fv.max_length,
        beam_size=fv.beam_size, length_penalty=fv.length_penalty,
        gallery_images=fv.gallery_images)
    return CaptioningTask(config, suite_flags.schedule_config(fv), suite_flags.optimizer_config(fv),
                          seed=fv.seed, data_override=data_override)


def main() -> None:
    """Entry point (python -m apps.train_captioner, console script suite-train-captioner)."""
    from suite.runtime.runner import main as run_main

    run_main(define_flags, make_task)


if __name__ == "__main__":
    main()
