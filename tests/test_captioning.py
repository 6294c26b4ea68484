"""NIC captioning: text handling (vocabulary, ids, unknown words), the caption files and the data
check, teacher-forcing shapes, greedy and beam-search decoding (width 1 is greedy; the best
sequence of a hand-built model is found), BLEU, and the app end to end: training, resume,
baselines, gallery, the frozen-encoder path, and the export that turns PNG bytes into a caption.
The images are drawn here (coloured shapes with captions that say what they are); Flickr8k's are
not redistributable."""
from __future__ import annotations

import itertools
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from conftest import (assert_workers_identical, launch_two_workers, parse_app_flags, run_in_process,
                      saved_model_cli_run)
from suite.data import captions
from suite.errors import DataError
from suite.metrics.captioning import bleu_scores, consensus_caption, nearest_neighbours
from suite.models.nic import DecoderSteps, build_decoder
from suite.tasks.captioning import CaptioningTask
from suite.text import vocabulary as text
from suite.text.decoding import beam_search, greedy_decode

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 60, 220)}
SHAPES = ("square", "circle")
TINY = ("--encoder=resnet20", "--image_size=32", "--embedding_dim=8", "--lstm_units=8",
        "--batch_size=8", "--validation_images=4", "--test_images=4", "--min_word_count=1",
        "--max_length=8", "--beam_size=2", "--gallery_images=4")


def draw(colour: str, shape: str, size: int = 48) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (250, 250, 250))
    box = (size // 5, size // 5, 4 * size // 5, 4 * size // 5)
    pen = ImageDraw.Draw(image)
    (pen.rectangle if shape == "square" else pen.ellipse)(box, fill=COLOURS[colour])
    return np.asarray(image)


def shapes_folder(root, count: int = 18, extra_rows: str = "", layout: str = "csv"):
    """`count` images of coloured shapes in root/images with 2 captions each."""
    from PIL import Image

    os.makedirs(root / "images", exist_ok=True)
    rows = []
    for i, (colour, shape) in zip(range(count), itertools.cycle(
            itertools.product(COLOURS, SHAPES))):
        name = f"{i:03d}.png"
        Image.fromarray(draw(colour, shape)).save(root / "images" / name)
        rows += [(name, f"A {colour} {shape} on white."), (name, f"a {shape} that is {colour}")]
    if layout == "csv":
        text = "image,caption\n" + "".join(f"{n},{c}\n" for n, c in rows)
    else:
        text = "".join(f"{n}#{k % 2}\t{c}\n" for k, (n, c) in enumerate(rows))
    (root / ("captions.csv" if layout == "csv" else "Flickr8k.token.txt")).write_text(
        text + extra_rows)
    return root


def test_vocabulary_ids_and_unknown_words_round_trip():
    vocabulary = text.build_vocabulary(["A dog runs.", "a dog sits", "A cat!"], min_count=2)
    assert vocabulary == [text.START, text.END, "a", "dog"]  # cat, runs, sits: once
    vectorize = text.caption_vectorizer(vocabulary, 8)
    full = vectorize.get_vocabulary()
    assert full[:2] == ["", "[UNK]"] and full[2:] == vocabulary
    ids = vectorize(text.wrap_tf(tf.constant(["A DOG, a dog?", "a zebra"]))).numpy()
    assert ids.shape == (2, 8)
    assert text.ids_to_words(ids[0], full) == ["a", "dog", "a", "dog"]
    assert ids[0][:6].tolist() == [2, 4, 5, 4, 5, 3] and ids[0][6:].tolist() == [0, 0]
    assert text.ids_to_words(ids[1], full) == ["a", "[UNK]"]  # out of vocabulary
    assert text.clean_caption("  A child's  Dress. ") == "a child s dress"
    assert text.clean_captions_tf(tf.constant("  A child's  Dress. ")).numpy() == \
        b"a child s dress"


def test_caption_files_in_both_layouts_and_problems_reported(tmp_path):
    for layout in ("csv", "token"):
        root = shapes_folder(tmp_path / layout, count=8, layout=layout)
        data = captions.load_caption_folder(str(root), 16, validation_images=2, test_images=2)
        assert (data.train.count, data.validation.count, data.test.count) == (4, 2, 2)
        assert data.train.images.shape == (4, 16, 16, 3) and data.train.images.dtype == np.uint8
        assert data.test.names == ["006.png", "007.png"]  # the last by file name
        assert data.train.captions[0] == ["A red square on white.", "a square that is red"]
    root = shapes_folder(tmp_path / "messy", count=8,
                         extra_rows="missing.jpg,a photo that is not there\n007.png, ... \n")
    os.remove(root / "images" / "005.png")
    from PIL import Image

    Image.fromarray(draw("red", "circle")).save(root / "images" / "uncaptioned.png")
    data = captions.load_caption_folder(str(root), 16, validation_images=1, test_images=1)
    assert data.problems["captions_without_images"] == {"count": 3, "examples": [
        "005.png", "missing.jpg"]}  # 005.png's two captions and missing.jpg's one
    assert data.problems["images_without_captions"]["examples"] == ["uncaptioned.png"]
    assert data.problems["empty_captions"]["count"] == 1
    assert "left out 3 captions without images" in data.summary()
    assert data.train.count + data.validation.count + data.test.count == 7

    bom = shapes_folder(tmp_path / "excel", count=8)  # Excel writes CSVs with a byte-order mark
    (bom / "captions.csv").write_text("\ufeff" + (bom / "captions.csv").read_text(), "utf-8")
    assert captions.load_caption_folder(str(bom), 16, validation_images=2,
                                        test_images=2).train.count == 4


def test_training_evaluation_and_the_export_resize_a_captioned_image_alike(tmp_path):
    from PIL import Image

    from suite.export.image_signatures import decode_image_bytes

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (75, 120, 3), np.uint8)).save(tmp_path / "noise.png")
    read = captions.read_resized(str(tmp_path / "noise.png"), 32)
    served = captions.squeeze_to_square(
        decode_image_bytes(tf.io.read_file(str(tmp_path / "noise.png")), 3), 32)
    np.testing.assert_array_equal(read, served.numpy())
    # antialiased like PIL's bilinear, which averages the whole footprint when shrinking
    pil = np.asarray(Image.open(tmp_path / "noise.png").resize((32, 32), Image.BILINEAR))
    assert np.abs(read.astype(float) - pil).mean() < 2


def test_coco_captions_from_tensorflow_datasets(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from suite.data import hosts

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=12):  # tfds's offline random data
        data = captions.load_captions("coco_captions", 16, data_dir=str(tmp_path),
                                      validation_images=2, test_images=2)
    assert (data.train.count, data.validation.count, data.test.count) == (8, 2, 2)
    assert data.train.images.shape == (8, 16, 16, 3) and data.train.images.dtype == np.uint8
    assert all(caps and all(isinstance(c, str) for c in caps) for caps in data.train.captions)
    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: False)
    with pytest.raises(DataError, match="unreachable.*flickr8k-subset"):
        captions.load_captions("coco_captions", 16, data_dir=str(tmp_path / "empty"))


def test_bad_caption_files_are_named_in_the_error(tmp_path):
    root = shapes_folder(tmp_path / "bad", count=4)
    (root / "captions.csv").write_text("file;text\n000.png;a red square\n")
    with pytest.raises(DataError, match=r"captions\.csv: not a captions file.*image,caption"):
        captions.load_caption_folder(str(root), 16, validation_images=1, test_images=1)
    (root / "captions.csv").write_text("000.png#0\ta red square\nno tab here\n")
    with pytest.raises(DataError, match=r"captions\.csv, line 2"):
        captions.load_caption_folder(str(root), 16, validation_images=1, test_images=1)
    os.remove(root / "captions.csv")
    with pytest.raises(DataError, match="holds no captions file"):
        captions.load_caption_folder(str(root), 16)
    for name in ("captions_a.csv", "captions_b.csv"):
        (root / name).write_text("image,caption\n000.png,a red square\n")
    with pytest.raises(DataError, match="several captions files.*`captions_file`"):
        captions.load_caption_folder(str(root), 16)
    with pytest.raises(DataError, match="cannot give 1 validation and 1 test"):
        captions.load_caption_folder(str(root), 16, captions_file="captions_a.csv",
                                     validation_images=1, test_images=1)
    with pytest.raises(DataError, match="no such folder"):
        captions.load_captions("no/such/folder", 16)


@pytest.mark.parametrize("flag", ["validation_images", "test_images"])
def test_no_validation_or_test_images_is_refused_before_training(tmp_path, flag):
    from absl import flags

    with pytest.raises(flags.IllegalFlagValueError, match=f"--{flag} must be >= 1"):
        parse_app_flags(CaptioningTask, f"--dataset={tmp_path}", *TINY, f"--{flag}=0")


def test_teacher_forcing_shapes_and_alignment():
    decoder = build_decoder(feature_dim=6, vocab_size=11, embedding_dim=4, lstm_units=5,
                            lstm_layers=2, dropout=0.0)
    tokens = np.array([[2, 4, 5, 0], [2, 6, 3, 0]], np.int32)
    logits = decoder([np.ones((2, 6), np.float32), tokens])
    assert logits.shape == (2, 4, 11) and logits.dtype == "float32"
    # Causal: what follows a position never changes its prediction.
    changed = decoder([np.ones((2, 6), np.float32), np.concatenate(
        [tokens[:, :2], [[9, 9], [9, 9]]], axis=1)])
    np.testing.assert_allclose(logits[:, :2], changed[:, :2], rtol=1e-5, atol=1e-6)
    # Step by step through DecoderSteps gives the same logits as the whole sequence at once.
    steps = DecoderSteps(decoder, banned=())
    state = steps.start(tf.ones((2, 6)))
    for t in range(4):
        log_probs, state = steps(tf.constant(tokens[:, t]), state)
        np.testing.assert_allclose(log_probs, tf.nn.log_softmax(logits[:, t]), rtol=1e-4,
                                   atol=1e-5)


def test_under_mixed_float16_the_lstm_and_softmax_stay_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        decoder = build_decoder(feature_dim=6, vocab_size=11, embedding_dim=4, lstm_units=5)
        assert decoder.get_layer("word_embedding").compute_dtype == "float16"
        assert decoder.get_layer("lstm1").compute_dtype == "float32"
        assert decoder.get_layer("logits").compute_dtype == "float32"
        decoder.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=0))
        tokens = np.array([[2, 4, 5, 3]], np.int32)
        decoder.fit([np.ones((1, 6), np.float32), tokens[:, :-1]], tokens[:, 1:], verbose=0)
        assert isinstance(decoder.optimizer, keras.optimizers.LossScaleOptimizer)
        steps = DecoderSteps(decoder)
        ids, score = beam_search(steps, steps.start(tf.ones((2, 6))), 2, 5, 2, 3)
        assert ids.shape == (2, 5) and score.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_beam_search_of_width_one_is_greedy():
    keras.utils.set_random_seed(3)
    decoder = build_decoder(feature_dim=6, vocab_size=12, embedding_dim=8, lstm_units=8,
                            dropout=0.0)
    steps = DecoderSteps(decoder)
    features = tf.random.normal((5, 6), seed=1) * 3
    greedy_ids, greedy_score = greedy_decode(steps, steps.start(features), 7, 2, 3)
    beam_ids, beam_score = beam_search(steps, steps.start(features), 1, 7, 2, 3)
    np.testing.assert_array_equal(greedy_ids, beam_ids)
    assert not np.isin(greedy_ids.numpy(), [1, 2]).any()  # never [UNK] or <start>
    np.testing.assert_allclose(greedy_score, beam_score, rtol=1e-5)
    wide_ids, wide_score = beam_search(steps, steps.start(features), 4, 7, 2, 3)
    assert (wide_score.numpy() >= greedy_score.numpy() - 1e-5).all()  # never worse


def toy_markov_step(table):
    """A hand-built 'decoder': the next word's log-probabilities depend on the last word only."""
    log_table = tf.math.log(tf.constant(table, tf.float32))

    def step(tokens, state):
        return tf.gather(log_table, tokens), state

    return step


def test_beam_search_finds_the_highest_scoring_sequence_that_greedy_misses():
    # ids: 0 pad, 1 unused, 2 <start>, 3 <end>, 4 "a", 5 "b".  After <start>, "a" is likelier
    # (0.6), but every sequence through "a" ends badly; "b <end>" has probability 0.4 * 0.95.
    eps = 1e-6
    table = np.full((6, 6), eps)
    table[2, 4], table[2, 5] = 0.6, 0.4
    table[4, 3], table[4, 4], table[4, 5] = 0.3, 0.35, 0.35
    table[5, 3], table[5, 4] = 0.95, 0.05
    table[[0, 1, 3], 3] = 1.0
    table /= table.sum(axis=1, keepdims=True)
    step, length = toy_markov_step(table), 4
    state = [tf.zeros((1, 1))]

    def log_probability(sequence):  # up to and including <end>
        last, total = 2, 0.0
        for word in sequence:
            total += np.log(table[last, word])
            if word == 3:
                break
            last = word
        return total

    every = [s for s in itertools.product(range(3, 6), repeat=length)]
    best = max(every, key=log_probability)
    assert list(best[:2]) == [5, 3]
    greedy_ids, _ = greedy_decode(step, state, length, 2, 3)
    assert greedy_ids.numpy()[0, 0] == 4  # the greedy trap
    ids, score = beam_search(step, state, 2, length, 2, 3)
    assert ids.numpy()[0].tolist() == [5, 3, 0, 0]
    assert float(score[0]) == pytest.approx(np.log(0.4 * 0.95), rel=1e-4)
    # Length normalisation divides by the words emitted (<end> included): 2 here.
    _, per_word = beam_search(step, state, 2, length, 2, 3, length_penalty=1.0)
    assert float(per_word[0]) == pytest.approx(np.log(0.4 * 0.95) / 2, rel=1e-4)


def test_bleu_scores_and_the_baselines_helpers():
    references = [[["a", "red", "square", "on", "white"], ["a", "square", "that", "is", "red"]]]
    perfect = bleu_scores(references, [["a", "red", "square", "on", "white"]])
    assert all(v == pytest.approx(1.0) for v in perfect.values())
    partial = bleu_scores(references, [["a", "blue", "circle", "on", "grass"]])
    assert partial["bleu1"] == pytest.approx(0.4) and partial["bleu4"] < 0.01
    with pytest.raises(ValueError, match="reference sets"):
        bleu_scores(references * 2, [["a"]])
    typical = consensus_caption([["a", "dog", "runs"], ["a", "dog", "runs", "fast"],
                                 ["one", "cat"]])
    assert typical[:3] == ["a", "dog", "runs"]
    train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert nearest_neighbours(train, np.array([[5.0, 0.1], [0.2, 3.0]])).tolist() == [0, 1]


def test_app_trains_resumes_scores_draws_and_exports_a_caption(tmp_path):
    root = shapes_folder(tmp_path / "data", count=18)
    model_dir = tmp_path / "run"
    args = (f"--dataset={root}", f"--model_dir={model_dir}", "--steps_per_epoch=3", *TINY)
    first = run_in_process(CaptioningTask, *args, "--epochs=1")
    assert first["train_images"] == 10 and first["test_images"] == 4
    results = run_in_process(CaptioningTask, *args, "--epochs=2")
    history = open(model_dir / "history.csv").read().splitlines()
    assert len(history) == 3 and "val_token_accuracy" in history[0]  # resumed: epoch 2 added
    assert set(results["bleu"]) == {"greedy", "beam2", "nearest_training_image",
                                    "language_model_only"}
    for scores in results["bleu"].values():
        assert set(scores) == {"bleu1", "bleu2", "bleu3", "bleu4"}
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert results["decode_ms_per_image"]["beam2"] > 0
    assert results["vocabulary_size"] == 4 + 10  # pad, [UNK], <start>, <end> + 10 words
    assert os.path.getsize(model_dir / "gallery.png") > 10_000
    assert len(results["examples"]) == 4

    loaded = tf.saved_model.load(results["export"])
    png = tf.io.encode_png(draw("blue", "circle")).numpy()
    jpeg = tf.io.encode_jpeg(draw("red", "square", 64)).numpy()
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([png, jpeg]))
    assert out["caption"].dtype == tf.string and out["caption"].shape == (2,)
    words = set(b" ".join(out["caption"].numpy()).decode().split())
    metadata = json.load(open(os.path.join(results["export"], "assets.extra", "metadata.json")))
    assert words <= set(metadata["vocabulary"]) - {"", "<start>", "<end>"}
    beam = loaded.signatures["beam_search"](image_bytes=tf.constant([png]),
                                            beam_size=tf.constant(3))
    assert beam["caption"].shape == (1,) and beam["score"].shape == (1,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="PNG or JPEG"):
        loaded.signatures["serving_default"](image_bytes=tf.constant([b"not an image"]))


def test_frozen_encoder_from_a_classifier_with_precomputed_features(tmp_path):
    from suite.models.registry import build_model

    classifier_dir = tmp_path / "classifier"
    os.makedirs(classifier_dir / "checkpoints")
    classifier = build_model("resnet20")
    classifier.save(classifier_dir / "checkpoints" / "last.keras")
    root = shapes_folder(tmp_path / "data", count=14)
    results = run_in_process(CaptioningTask, f"--dataset={root}",
                             f"--model_dir={tmp_path / 'run'}", "--epochs=1",
                             "--steps_per_epoch=2", f"--encoder_from={classifier_dir}",
                             "--freeze_encoder", "--precompute_features",
                             *[a for a in TINY if not a.startswith(("--encoder=", "--image_"))])
    assert "resnet20" in results["encoder"] and "last.keras" in results["encoder"]
    from suite.models.transfer import _savedmodel_weights

    exported = _savedmodel_weights(results["export"])  # the decoder trained alone, and the
    kernel = classifier.get_layer("conv1_conv").kernel  # export holds the classifier's encoder
    np.testing.assert_array_equal(exported[kernel.path], kernel.numpy())
    assert any(path.startswith("lstm1/") for path in exported)

    # apps.export of the run joins the decoder to the encoder kept beside its checkpoints,
    # and serves what the run's own export serves.
    from suite.errors import ExportError
    from suite.tasks.runs import export_run

    again = export_run(str(tmp_path / "run"), export_dir=str(tmp_path / "again"))
    png = tf.io.encode_png(draw("blue", "circle")).numpy()
    answers = [tf.saved_model.load(path).signatures["serving_default"](
        image_bytes=tf.constant([png])) for path in (results["export"], again)]
    assert answers[0]["caption"].numpy() == answers[1]["caption"].numpy()
    np.testing.assert_allclose(answers[0]["log_probability"], answers[1]["log_probability"],
                               rtol=1e-5)
    os.remove(tmp_path / "run" / "checkpoints" / "encoder.keras")  # as a run made before
    with pytest.raises(ExportError, match="decoder alone .* without --noexport"):
        export_run(str(tmp_path / "run"), export_dir=str(tmp_path / "old"))
    with pytest.raises(ValueError, match="--image_size=64, but"):
        run_in_process(CaptioningTask, f"--dataset={root}", f"--model_dir={tmp_path / 'x'}",
                       f"--encoder_from={classifier_dir}", "--image_size=64")
    with pytest.raises(flags.IllegalFlagValueError,  # a config rule: refused when parsed
                       match="--precompute_features needs a fixed encoder"):
        run_in_process(CaptioningTask, f"--dataset={root}", f"--model_dir={tmp_path / 'y'}",
                       "--precompute_features")


def test_app_trains_end_to_end_under_mirrored_strategy(tmp_path, two_cpu_strategy):
    """Two replicas in this process: the captions are tokenised in tf.data, never inside the
    replicated model, and the encoder's batch norm takes the global batch's statistics."""
    root = shapes_folder(tmp_path / "data", count=14)
    results = run_in_process(CaptioningTask, f"--dataset={root}",
                             f"--model_dir={tmp_path / 'run'}", "--epochs=1",
                             "--steps_per_epoch=2", *TINY, strategy_override=two_cpu_strategy)
    assert results["replicas"] == 2 and results["status"] == "completed"
    assert set(results["bleu"]) >= {"greedy", "beam2"}


def test_imagenet_encoder_offline_fails_fast_naming_the_file(tmp_path, monkeypatch):
    from suite.data import hosts
    from suite.tasks.captioning import CaptionerConfig, build_encoder

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DataError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        build_encoder(CaptionerConfig(dataset="x", encoder="resnet50", encoder_from="imagenet"))
    with pytest.raises(DataError, match="`model=googlenet` has none"):
        build_encoder(CaptionerConfig(dataset="x", encoder="googlenet", encoder_from="imagenet"))


@pytest.mark.slow
def test_exported_captioner_runs_under_saved_model_cli(tmp_path):
    root = shapes_folder(tmp_path / "data", count=14)
    results = run_in_process(CaptioningTask, f"--dataset={root}",
                             f"--model_dir={tmp_path / 'run'}", "--epochs=1",
                             "--steps_per_epoch=2", *TINY)
    png = tf.io.encode_png(draw("green", "square")).numpy()
    # Fixed-width bytes: the PNG ends in its IEND checksum, so no trailing zero byte is lost.
    printed = saved_model_cli_run(results["export"], "serving_default", "image_bytes",
                                  np.array([png], dtype=f"S{len(png)}"), tmp_path)
    loaded = tf.saved_model.load(results["export"])
    direct = loaded.signatures["serving_default"](image_bytes=tf.constant([png]))
    caption = direct["caption"].numpy()[0]
    assert f"Result for output key caption:\n[{caption!r}]" in printed, printed[-2000:]


@pytest.mark.slow
def test_two_workers_train_one_captioner_with_identical_weights(tmp_path):
    root = shapes_folder(tmp_path / "data", count=18)
    model_dir = tmp_path / "run"
    launch_two_workers("apps.train_captioner", f"--dataset={root}", f"--model_dir={model_dir}",
                       "--epochs=2", "--steps_per_epoch=2", *TINY)
    results = json.load(open(model_dir / "results.json"))
    assert results["replicas"] == 2 and results["status"] == "completed"
    assert len(assert_workers_identical(model_dir)) > 20  # encoder, decoder, optimizer
