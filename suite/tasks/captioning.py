"""NIC image captioning as a Task: a CNN encoder and an LSTM decoder trained by teacher forcing.

The encoder is a suite classifier cut before its classification layer: a classification run's
checkpoint (--encoder_from=<model_dir>), keras.applications' ImageNet weights when on disk
(--encoder_from=imagenet) or a fresh network (--encoder). Frozen, its features can be computed
once (--precompute_features) and the decoder alone trains; otherwise the whole model does.

Evaluation decodes the test images greedily and by beam search, scores both with corpus BLEU-1..4
against every reference caption, times the decoding, and scores the two baselines the same way:
the nearest training image's caption (encoder features) and the decoder's language model alone
(one caption for every image, from the mean training image's features). gallery.png shows test
images with their captions. The export takes PNG/JPEG bytes and returns the caption as a string:
greedy (serving_default) or by beam search with its width as an input (beam_search).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from suite.config import Config, existing_path, group, option, rule
from suite.runtime.config import OptimizerConfig, RuntimeConfig, ScheduleConfig
from suite.tasks.base import Input, Signature, Task

# The widest beam the beam_search signature takes (the paper's width): each step scores
# batch x width x vocabulary words, so an unbounded width is unbounded memory.
MAX_BEAM_SIZE = 20

@dataclasses.dataclass
class CaptionerConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/captioner")
    schedule: ScheduleConfig = group(ScheduleConfig, epochs=20, batch_size=64)
    optimizer: OptimizerConfig = group(OptimizerConfig, optimizer="adam", learning_rate=1e-3,
                                       clipnorm=5.0)
    dataset: str | None = option(
        None, "A folder of images (in images/, or the folder itself) with a captions file (CSV "
        "'image,caption' or Flickr8k.token.txt), e.g. ../shared/data/flickr8k-subset; or "
        "coco_captions (tensorflow-datasets, online).", required=True)
    captions_file: str | None = option(None, "The captions file, when the folder holds several "
                                       "(a path, or a name inside --dataset).")
    data_dir: str | None = option(None, "tensorflow-datasets' data folder for coco_captions.")
    validation_images: int = option(
        100, "Images held out for validation (the ones before the test images in file-name "
        "order; at least 1: they pick the best checkpoint).", bounds=">= 1")
    test_images: int = option(100, "Images held out for the test (the last in file-name order; "
                              "at least 1: they give the BLEU scores).", bounds=">= 1")
    limit: int = option(0, "Keep only the first N captioned images (quick runs); 0: all.",
                        bounds=">= 0")
    encoder: str = option("googlenet", "The CNN (a suite model name: googlenet as the paper, "
                          "resnet50, resnet20, ...) when --encoder_from does not give one.")
    encoder_from: str | None = option(
        None, "Start the encoder from a classification run (its model_dir or .keras file; the "
        "network is read from it) or 'imagenet' (keras.applications weights for "
        "resnet50/101/152, vgg16/19; offline they must be in ~/.keras/models). Unset: random "
        "initialisation.",
        check=existing_path("imagenet", what="an existing model_dir / .keras file"))
    image_size: int = option(0, "Side the images are resized to; 0: the encoder checkpoint's "
                             "input size, else 224.", bounds=">= 0")
    freeze_encoder: bool = option(False, "Train the decoder only (the encoder's batch norm in "
                                  "inference mode).")
    precompute_features: bool = option(False, "With a frozen encoder: compute each image's "
                                       "features once and train the decoder on them (much "
                                       "faster).")
    embedding_dim: int = option(512, "Size of the word and image embeddings (the paper: 512).",
                                bounds=">= 1")
    lstm_units: int = option(512, "LSTM size (the paper: 512).", bounds=">= 1")
    lstm_layers: int = option(1, "Stacked LSTM layers (the paper: 1).", bounds=">= 1")
    dropout: float = option(0.5, "Dropout before and after every LSTM layer.", bounds="[0, 1)")
    min_word_count: int = option(5, "Words seen fewer times in the training captions become "
                                 "[UNK].", bounds=">= 1")
    max_length: int = option(20, "Longest caption in words: training captions are cut there, "
                             "decoding stops there.", bounds=">= 1")
    beam_size: int = option(3, "Beam width of evaluation's beam search (the paper: 20; the "
                            "export takes it per request).", bounds=">= 1")
    length_penalty: float = option(0.0, "Beam search ranks captions by log-probability / length "
                                   "** this: 0 the plain probability (the paper), 1 per word.",
                                   bounds=">= 0")
    gallery_images: int = option(8, "Test images in gallery.png.", bounds=">= 0")

    @rule("precompute_features", "freeze_encoder", "encoder_from")
    def _fixed_encoder(precompute_features, freeze_encoder, encoder_from):
        if precompute_features and not (freeze_encoder or encoder_from):
            return ("`precompute_features` needs a fixed encoder: add `freeze_encoder` (and "
                    "usually `encoder_from=<classification run>`)")


def cut_before_head(classifier, name: str = "encoder"):
    """A classifier's features: everything up to the input of its classification layer."""
    import keras

    from suite.models.transfer import head_layers

    head = classifier.get_layer(head_layers(classifier)[0])
    return keras.Model(classifier.input, head.input, name=name)


def build_encoder(config: CaptionerConfig):
    """(encoder, where its weights came from). Raw 0..255 RGB pixels in, one vector out."""
    from suite.models import transfer
    from suite.models.registry import build_model, load_keras_file

    source = config.encoder_from
    if source and source != "imagenet":
        path = transfer.resolve_source(source, "encoder_from")
        if not path.endswith(".keras"):
            raise ValueError(f"`encoder_from={source}`: needs a .keras classifier checkpoint (a "
                             f"classification run's model_dir), not {path}")
        classifier = load_keras_file(path)
        shape = tuple(classifier.input_shape[1:])
        if len(shape) != 3 or shape[-1] != 3:
            raise ValueError(f"`encoder_from={source}`: the classifier takes {shape} images; "
                             "captioning needs an RGB classifier (H, W, 3)")
        if config.image_size and config.image_size != shape[0]:
            raise ValueError(f"`image_size={config.image_size}`, but the `encoder_from` "
                             f"classifier takes {shape[0]}x{shape[1]} images: drop `image_size`")
        return cut_before_head(classifier), f"{classifier.name} from {path}"
    size = config.image_size or 224
    # The weights first: offline, that fails in seconds, before a large network is built.
    weights = transfer.imagenet_weights(config.encoder, include_top=False) \
        if source == "imagenet" else None
    classifier = build_model(config.encoder, input_shape=(size, size, 3), num_classes=1000)
    if weights is not None:
        report = transfer.load_matching_weights(classifier, weights, "imagenet")
        print(report.summary(), flush=True)
        return cut_before_head(classifier), f"{config.encoder} with ImageNet weights"
    return cut_before_head(classifier), f"{config.encoder} from random initialisation"


ENCODER_FILE = "encoder.keras"


class CaptioningTask(Task):
    config_class = CaptionerConfig
    name = "nic"
    best_checkpoint = ("val_loss", "min")
    validation_label = "validation"
    validation_split = "the validation images (before the test images in file-name order)"
    export_checkpoint = "best"  # the epoch the validation loss chose
    meaning_keys = ("vocabulary", "start_id", "end_id")
    figures = ("gallery.png",)  # data_override: a CaptionData instead of `dataset`

    # -- data --------------------------------------------------------------------------------
    def load_data(self, run):
        from suite.data import captions
        from suite.text import vocabulary as text

        c = self.config
        with run.strategy.scope():  # built here: its input size decides how images load
            self.encoder, self.encoder_source = build_encoder(c)
        size = int(self.encoder.input_shape[1])
        self.data = self.data_override or captions.load_captions(
            c.dataset, size, c.captions_file, c.data_dir, c.validation_images, c.test_images,
            c.limit)
        if self.data.train.images.shape[1] != size:
            raise ValueError(f"the images are {self.data.train.images.shape[1]} pixels, the "
                             f"encoder takes {size}")
        self.vocabulary = [text.PAD, text.UNKNOWN, *text.build_vocabulary(
            [t for caps in self.data.train.captions for t in caps], c.min_word_count)]
        self.start_id, self.end_id = (self.vocabulary.index(w) for w in (text.START, text.END))
        self.vectorizer = text.caption_vectorizer(self.vocabulary[2:], c.max_length + 2)
        count = sum(len(caps) for caps in self.data.train.captions)
        if count < self.config.schedule.batch_size:
            from suite.errors import DataError

            raise DataError(f"{count} training captions, fewer than "
                            f"`batch_size={self.config.schedule.batch_size}`")
        schedule = self.config.schedule
        self.steps_per_epoch = schedule.steps_per_epoch or count // schedule.batch_size
        print(self.data.summary(), flush=True)
        print(f"Vocabulary: {len(self.vocabulary)} words (seen >= {c.min_word_count} times in "
              f"training captions, with padding, [UNK], <start>, <end>); encoder: "
              f"{self.encoder_source}, {self.encoder.output_shape[-1]} features of "
              f"{size}x{size} images", flush=True)

    def _examples(self, table, split, input_name: str, training: bool, replicas: int):
        """(inputs, next word ids) per caption: the image's row of `table` (features, or uint8
        pixels kept 4x smaller than float32 until the row is taken) and the wrapped caption's
        ids, tokenised here in tf.data."""
        import tensorflow as tf

        from suite.text.vocabulary import wrap_tf

        counts = [len(caps) for caps in split.captions]
        index = np.repeat(np.arange(split.count), counts).astype(np.int32)
        texts = [t for caps in split.captions for t in caps]
        table = tf.constant(table)
        vectorize = self.vectorizer

        def to_example(i, text):
            ids = tf.cast(vectorize(wrap_tf(text)), tf.int32)
            row = tf.cast(tf.gather(table, i), tf.float32)
            return {input_name: row, "tokens": ids[:-1]}, ids[1:]

        ds = tf.data.Dataset.from_tensor_slices((index, texts))
        if training:
            ds = ds.shuffle(len(texts), seed=self.seed).repeat()
        batch = self.config.schedule.batch_size
        ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch if training else max(replicas, min(batch, len(texts))),
                      drop_remainder=training or replicas > 1).prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return ds.with_options(options)

    # -- model -------------------------------------------------------------------------------
    def build(self, run):
        import keras

        from suite.models.nic import build_decoder, build_nic, masked_token_accuracy
        from suite.runtime.optim import make_optimizer

        c = self.config
        encoder = self.encoder
        replicas = run.strategy.num_replicas_in_sync
        if c.freeze_encoder:
            encoder.trainable = False  # batch norm then runs in inference mode too
        elif replicas > 1:  # batch statistics of the global batch: every worker keeps the same
            for layer in encoder.layers:  # moving statistics (read when fit traces the step)
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        self.decoder = build_decoder(encoder.output_shape[-1], len(self.vocabulary),
                                     c.embedding_dim, c.lstm_units, c.lstm_layers, c.dropout)
        self.nic = build_nic(encoder, self.decoder)
        if c.precompute_features:
            self._keep_encoder(run)
            started = time.time()
            self.features = self._features(encoder)
            print(f"Encoder features of {sum(len(f) for f in self.features.values())} images "
                  f"in {time.time() - started:.1f} s", flush=True)
            model, name, tables = self.decoder, "features", self.features
        else:
            model, name = self.nic, "image"
            tables = {part: getattr(self.data, part).images for part in ("train", "validation")}
        self.train_data = self._examples(tables["train"], self.data.train, name, True, replicas)
        self.validation_data = self._examples(tables["validation"], self.data.validation, name,
                                              False, replicas)
        model.compile(
            optimizer=make_optimizer(self.config.optimizer, self.steps_per_epoch, self.epochs),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
            metrics=[keras.metrics.MeanMetricWrapper(masked_token_accuracy,
                                                     name="token_accuracy")])
        self.decoder.summary(print_fn=lambda line, **_: print(line, flush=True))
        return model

    def served_model(self, run):
        """NIC with the weights of the epoch the validation loss chose (best.keras holds the
        trained model: the decoder alone where features were precomputed)."""
        best = self._best_checkpoint(run)
        if best:
            run.model.load_weights(best.best_path)
        return self.nic

    def _keep_encoder(self, run) -> None:
        """checkpoints/encoder.keras: the checkpoints of a decoder trained on precomputed
        features hold the decoder alone, and a re-export (apps.export) needs the fixed encoder
        beside them to rebuild the NIC it serves."""
        import os

        path = run.output_path(os.path.join("checkpoints", ENCODER_FILE))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path[:-len(".keras")] + ".tmp.keras"
        self.encoder.save(tmp)
        os.replace(tmp, path)

    @classmethod
    def load_checkpoint(cls, path: str):
        """The NIC of a checkpoint; a decoder trained on precomputed features is joined to the
        encoder kept beside it (checkpoints/encoder.keras)."""
        import os

        from suite.errors import ExportError
        from suite.models.nic import build_nic

        model = super().load_checkpoint(path)
        if any(layer.name == "encoder" for layer in model.layers):
            return model
        encoder_path = os.path.join(os.path.dirname(path), ENCODER_FILE)
        if not os.path.isfile(encoder_path):
            raise ExportError(
                f"{path} holds the decoder alone (trained on precomputed encoder features) and "
                f"no {ENCODER_FILE} is beside it (runs before the suite kept it): rerun the "
                "run's training command (run.json) without --noexport; a finished run trains "
                "nothing more and exports the whole model.")
        encoder = super().load_checkpoint(encoder_path)
        encoder.trainable = False
        return build_nic(encoder, model)

    def _features(self, encoder) -> dict:
        """The encoder's vectors of every split's images, in inference mode."""
        from suite.runtime.evaluation import predict_probabilities  # any model's outputs

        return {part: predict_probabilities(encoder, getattr(self.data, part).images, 64)
                for part in ("train", "validation", "test")}

    # -- evaluation --------------------------------------------------------------------------
    def _decoders(self):
        """tf.functions: features -> (ids, scores), greedy and by beam search."""
        import tensorflow as tf

        from suite.models.nic import DecoderSteps
        from suite.text.decoding import beam_search, greedy_decode

        steps, c = DecoderSteps(self.decoder, banned=(0, 1, self.start_id)), self.config
        spec = [tf.TensorSpec([None, self.decoder.input_shape[0][-1]], tf.float32)]

        @tf.function(input_signature=spec)
        def greedy(features):
            return greedy_decode(steps, steps.start(features), c.max_length, self.start_id,
                                 self.end_id)

        @tf.function(input_signature=spec + [tf.TensorSpec([], tf.int32)])
        def beam(features, width):
            return beam_search(steps, steps.start(features), width, c.max_length,
                               self.start_id, self.end_id, c.length_penalty)

        return greedy, beam

    def _captions(self, decode, features, *args) -> tuple[list[list[str]], float]:
        """Word lists for `features`, and the seconds per image (after a warm-up call)."""
        from suite.text.vocabulary import ids_to_words

        decode(features[:1], *args)  # traced before the clock starts
        started = time.perf_counter()
        ids = np.concatenate([np.asarray(decode(features[i:i + 100], *args)[0])
                              for i in range(0, len(features), 100)])
        seconds = (time.perf_counter() - started) / max(len(features), 1)
        return [ids_to_words(row, self.vocabulary) for row in ids], seconds

    def evaluate(self, run):
        c, data = self.config, self.data
        features = self.features if c.precompute_features else self._features(
            self.nic.get_layer("encoder"))
        train_references = data.train.references()
        greedy, beam = self._decoders()
        # The language model alone: one caption for every image, from the mean training image.
        blind, _ = self._captions(beam, features["train"].mean(0, keepdims=True),
                                  np.int32(c.beam_size))
        scores, captions, timing = {}, {}, {}
        for part in ("validation", "test"):
            scores[part], captions[part], timing[part] = self._score(
                part, features, train_references, greedy, beam, blind[0])
        print(f"Decoding per test image: greedy {timing['test']['greedy']:.1f} ms, beam "
              f"{c.beam_size} {timing['test'][f'beam{c.beam_size}']:.1f} ms; the language model "
              f"alone says {' '.join(blind[0])!r}", flush=True)
        greedy_words, beam_words = captions["test"]
        if run.is_chief:
            self._gallery(run, greedy_words, beam_words)
        return {
            "dataset": data.name, "encoder": self.encoder_source,
            "train_images": data.train.count, "validation_images": data.validation.count,
            "test_images": data.test.count, "data_problems": data.problems,
            "vocabulary_size": len(self.vocabulary), "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch, "bleu": scores["test"],
            "validation_bleu": scores["validation"], "decode_ms_per_image": timing["test"],
            "beam_size": c.beam_size, "length_penalty": c.length_penalty,
            "language_model_caption": " ".join(blind[0]),
            "examples": [{"image": n, "greedy": " ".join(g), "beam": " ".join(b),
                          "reference": caps[0]}
                         for n, g, b, caps in zip(data.test.names[:c.gallery_images],
                                                  greedy_words, beam_words,
                                                  data.test.captions)],
        }

    def _score(self, part: str, features: dict, train_references: list, greedy, beam,
               blind: list[str]):
        """BLEU of greedy and beam-search captions and of both baselines on one split; the
        captions; decoding milliseconds per image."""
        from suite.metrics import captioning as metrics

        split, width = getattr(self.data, part), self.config.beam_size
        greedy_words, greedy_seconds = self._captions(greedy, features[part])
        beam_words, beam_seconds = self._captions(beam, features[part], np.int32(width))
        nearest = metrics.nearest_neighbour_captions(features["train"], train_references,
                                                     features[part])
        methods = {"greedy": greedy_words, f"beam{width}": beam_words,
                   "nearest_training_image": nearest,
                   "language_model_only": [blind] * split.count}
        references = split.references()
        scores = {name: metrics.bleu_scores(references, words) for name, words in methods.items()}
        for name, s in scores.items():
            print(f"{part.capitalize()} BLEU ({name.replace('_', ' ')}): " + ", ".join(
                f"BLEU-{n} {s[f'bleu{n}']:.4f}" for n in range(1, 5)), flush=True)
        timing = {"greedy": 1000 * greedy_seconds, f"beam{width}": 1000 * beam_seconds}
        return scores, (greedy_words, beam_words), timing

    def _gallery(self, run, greedy_words, beam_words):
        from suite.viz.captions import plot_caption_gallery

        count = min(self.config.gallery_images, self.data.test.count)
        if count:
            texts = [{"greedy": " ".join(g), f"beam {self.config.beam_size}": " ".join(b),
                      "reference": caps[0]}
                     for g, b, caps in zip(greedy_words[:count], beam_words[:count],
                                           self.data.test.captions)]
            plot_caption_gallery(self.data.test.images[:count], texts,
                                 run.output_path("gallery.png"),
                                 title=f"{self.data.name}: test images, generated and "
                                       "reference captions")

    # -- export ------------------------------------------------------------------------------
    @classmethod
    def custom_objects(cls):
        from suite.models.nic import masked_token_accuracy

        return {"masked_token_accuracy": masked_token_accuracy}

    def export_metadata(self) -> dict:
        return {"vocabulary": list(self.vocabulary), "start_id": self.start_id,
                "end_id": self.end_id, "max_length": self.config.max_length,
                "image_size": int(self.encoder.input_shape[1]),
                "length_penalty": self.config.length_penalty}

    @classmethod
    def serving_signatures(cls, model, metadata: dict):
        import tensorflow as tf

        from suite.data.captions import squeeze_to_square
        from suite.export.guards import answer_nonempty
        from suite.export.image_signatures import decode_images, image_bytes_input
        from suite.export.signature import ImageLimits
        from suite.models.nic import DecoderSteps
        from suite.text.decoding import beam_search, greedy_decode
        from suite.text.vocabulary import ids_to_text

        start, end, length = metadata["start_id"], metadata["end_id"], metadata["max_length"]
        encoder = model.get_layer("encoder")
        steps = DecoderSteps(model.get_layer("decoder"), banned=(0, 1, start))
        vocabulary = tf.constant(metadata["vocabulary"])
        size, limits = int(metadata["image_size"]), ImageLimits()

        def captioned(decode, image_bytes):
            """decode(features) -> (ids, score) on the request's images; the encoder never sees
            an empty batch (oneDNN fails on one)."""
            images, _ = decode_images(image_bytes, limits, 3,
                                      lambda image: squeeze_to_square(image, size),
                                      tf.zeros([0, size, size, 3]))

            def caption(batch):
                ids, score = decode(steps.start(encoder(batch, training=False)))
                return ids_to_text(ids, vocabulary, start, end), score

            return answer_nonempty(caption, images)

        def greedy(image_bytes):
            caption, score = captioned(
                lambda state: greedy_decode(steps, state, length, start, end), image_bytes)
            return {"caption": caption, "log_probability": score}

        def beam(image_bytes, beam_size):
            caption, score = captioned(
                lambda state: beam_search(steps, state, beam_size, length, start, end,
                                          metadata.get("length_penalty", 0.0)), image_bytes)
            return {"caption": caption, "score": score}

        image_bytes = image_bytes_input(limits)
        return {"serving_default": Signature(greedy, [image_bytes]),
                "beam_search": Signature(beam, [image_bytes, Input(
                    "beam_size", "int32", (), bounds=(1, MAX_BEAM_SIZE),
                    about="captions kept at every step", example=3)])}  # evaluation's width
