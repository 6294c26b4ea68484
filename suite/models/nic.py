"""NIC, the Neural Image Caption generator (Vinyals, Toshev, Bengio & Erhan, "Show and Tell",
2015): a CNN encodes the image, whose embedding is the LSTM's first input; the words follow,
each embedded, and the LSTM's output at every word is a softmax over the vocabulary for the
next one:

    x_{-1} = W_I CNN(I),   x_t = W_e S_t,   p_{t+1} = softmax(W_o LSTM(x_t))   (t = 0 .. N-1)

with S_0 = <start> and S_N = <end>. Training is teacher forcing: `build_decoder` maps (image
features, the caption's ids without its last) to logits for the ids without the first. The
paper's sizes: embedding and LSTM 512, dropout, one layer; here flags.

Decoding reuses the same layers one word at a time (`DecoderSteps`), driven by
suite.text.decoding's greedy search or beam search (the paper: width 20), in TensorFlow ops so
the export decodes inside the SavedModel. The LSTMs and the logits run in
float32 under a mixed precision policy.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from suite.text.decoding import NEG_INF


@keras.saving.register_keras_serializable(package="suite")
def masked_token_accuracy(y_true, y_pred):
    """Share of a caption's words (padding left out) predicted exactly, per caption."""
    from keras import ops

    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    hits = ops.cast(ops.equal(ops.cast(y_true, "int32"),
                              ops.cast(ops.argmax(y_pred, axis=-1), "int32")), "float32")
    return ops.sum(hits * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)


def build_decoder(feature_dim: int, vocab_size: int, embedding_dim: int = 512,
                  lstm_units: int = 512, lstm_layers: int = 1, dropout: float = 0.5,
                  name: str = "decoder") -> keras.Model:
    """(features [B, D], tokens [B, T]) -> logits [B, T, vocab] for the next word."""
    features = keras.Input((feature_dim,), name="features")
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    image = layers.Dense(embedding_dim, name="image_embedding")(features)
    image = layers.Reshape((1, embedding_dim), name="image_step")(image)
    words = layers.Embedding(vocab_size, embedding_dim, name="word_embedding")(tokens)
    x = layers.Concatenate(axis=1, name="inputs")([image, words])
    for i in range(1, lstm_layers + 1):
        x = layers.Dropout(dropout, name=f"dropout{i}")(x)
        x = layers.LSTM(lstm_units, return_sequences=True, dtype="float32", name=f"lstm{i}")(x)
    x = layers.Dropout(dropout, name="dropout_out")(x)
    x = layers.Cropping1D((1, 0), name="after_image")(x)  # the image step predicts nothing
    logits = layers.Dense(vocab_size, dtype="float32", name="logits")(x)
    return keras.Model([features, tokens], logits, name=name)


def build_nic(encoder: keras.Model, decoder: keras.Model, name: str = "nic") -> keras.Model:
    """(image [B, H, W, 3] raw 0..255 pixels, tokens [B, T]) -> logits: encoder and decoder
    as one model (what is trained end to end, and always what is exported)."""
    image = keras.Input(encoder.input_shape[1:], name="image")
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    return keras.Model([image, tokens], decoder([encoder(image), tokens]), name=name)


def lstm_count(decoder: keras.Model) -> int:
    return sum(1 for layer in decoder.layers if isinstance(layer, layers.LSTM))


class DecoderSteps:
    """The decoder's layers applied one word at a time; the state is [h1, c1, h2, c2, ...].
    `banned` ids (padding, [UNK], <start>) are never chosen: a caption says words or ends."""

    def __init__(self, decoder: keras.Model, banned=(0, 1, 2)):
        vocab_size = decoder.get_layer("logits").units
        self.penalty = tf.constant([NEG_INF if i in banned else 0.0 for i in range(vocab_size)])
        self.image_embedding = decoder.get_layer("image_embedding")
        self.word_embedding = decoder.get_layer("word_embedding")
        self.cells = [decoder.get_layer(f"lstm{i}").cell
                      for i in range(1, lstm_count(decoder) + 1)]
        self.logits = decoder.get_layer("logits")

    def _through_lstms(self, x, state):
        new_state = []
        for i, cell in enumerate(self.cells):
            x, (h, c) = cell(tf.cast(x, tf.float32), [state[2 * i], state[2 * i + 1]],
                             training=False)
            new_state += [h, c]
        return x, new_state

    def start(self, features):
        """The state after the image step (x_{-1})."""
        batch = tf.shape(features)[0]
        zeros = [tf.zeros([batch, cell.units]) for cell in self.cells for _ in range(2)]
        _, state = self._through_lstms(self.image_embedding(features), zeros)
        return state

    def __call__(self, tokens, state):
        """Log-probabilities of the next word after `tokens` [N], and the new state."""
        x, state = self._through_lstms(self.word_embedding(tokens), state)
        return tf.nn.log_softmax(tf.cast(self.logits(x), tf.float32) + self.penalty), state
