"""Tiny untrained models of every app, exported by each Task's own serving_signatures and
`write_export` (what training and apps/export.py write), in seconds: the serving tests' and
the demo tests' fixtures. DQN twice: vector and Atari observations."""
from __future__ import annotations

import types

VOCABULARY = ["", "[UNK]", "<start>", "<end>", "red", "green", "blue", "square", "circle",
              "a", "on", "black", "white", "small"]


def _mnist():
    from suite.models.deep_convnet import build_deep_convnet
    from suite.tasks.mnist import MnistTask

    return MnistTask, build_deep_convnet(), {
        "class_names": [str(d) for d in range(10)], "image_shape": [28, 28, 1],
        "num_classes": 10, "crop_fraction": 1.0}


def _classifier():
    from suite.models.registry import build_model
    from suite.tasks.classifier import ClassifierTask

    return ClassifierTask, build_model("resnet20", (32, 32, 3), 2), {
        "class_names": ["horizontal", "vertical"], "image_shape": [32, 32, 3],
        "num_classes": 2, "crop_fraction": 1.0}


def _segmenter():
    from suite.models.unet import build_unet
    from suite.tasks.segmentation import SegmentationTask

    return SegmentationTask, build_unet(2, (None, None, 1), base_filters=4), {
        "class_names": ["background", "shape"], "channels": 1, "num_classes": 2}


def _detector():
    import tensorflow as tf

    from suite.models.faster_rcnn import build_faster_rcnn, detect
    from suite.tasks.detection import DetectionTask

    model = build_faster_rcnn(2, 64, depth=18, width_multiplier=0.125, test_proposals=32,
                              sampled_rois=16, head_units=(8, 8), max_detections=5)
    detect(model, tf.zeros([64, 64, 3]))  # builds it
    return DetectionTask, model, {"class_names": ["square", "disc"], "image_size": 64,
                                  "score_threshold": 0.5, "max_detections": 5}


def _captioner():
    from suite.models.nic import build_decoder, build_nic
    from suite.tasks.captioning import CaptioningTask, build_encoder

    encoder, _ = build_encoder(types.SimpleNamespace(encoder_from=None, encoder="resnet20",
                                                     image_size=32))
    decoder = build_decoder(encoder.output_shape[-1], len(VOCABULARY), 8, 8, dropout=0.0)
    logits = decoder.get_layer("logits")
    kernel, bias = logits.get_weights()
    bias[3] = 20.0  # <end> the likeliest word everywhere: a first word must still be chosen
    logits.set_weights([kernel, bias])
    return CaptioningTask, build_nic(encoder, decoder), {
        "vocabulary": VOCABULARY, "start_id": 2, "end_id": 3, "max_length": 5,
        "image_size": 32, "length_penalty": 0.0}


def _dcgan():
    from suite.models.dcgan import DCGAN
    from suite.tasks.dcgan import DcganTask

    return DcganTask, DCGAN(image_shape=(28, 28, 1), latent_dim=8, base_filters=4), {
        "latent_dim": 8, "image_shape": [28, 28, 1]}


def _dqn():
    from suite.models.dqn import build_q_mlp
    from suite.tasks.dqn import DqnTask

    return DqnTask, build_q_mlp(4, 2, units=(8,)), {
        "env": "CartPole-v1", "observation_shape": [4], "observation_dtype": "float32",
        "num_actions": 2}


def _dqn_atari():
    from suite.models.dqn import build_dqn_atari
    from suite.tasks.dqn import DqnTask

    return DqnTask, build_dqn_atari(3, 4, (36, 36)), {
        "env": "ALE/Pong-v5", "observation_shape": [4, 36, 36], "observation_dtype": "uint8",
        "num_actions": 3}


BUILDERS = {"mnist": _mnist, "classifier": _classifier, "segmenter": _segmenter,
            "detector": _detector, "captioner": _captioner, "dcgan": _dcgan, "dqn": _dqn,
            "dqn_atari": _dqn_atari}


def export_tiny(app: str, export_base: str, name: str | None = None) -> str:
    """Exports a tiny `app` model (seeded) to `<export_base>/<name>/1/`; returns that folder."""
    import keras

    keras.utils.set_random_seed(0)
    task, model, metadata = BUILDERS[app]()
    return task.write_export(model, metadata, export_base, name or app)
