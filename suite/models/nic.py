"""NIC, the Neural Image Caption generator (Vinyals, Toshev, Bengio & Erhan, "Show and Tell",
2015): a CNN encodes the image, whose embedding is the LSTM's first input; the words follow,
each embedded, and the LSTM's output at every word is a softmax over the vocabulary for the
next one:

    x_{-1} = W_I CNN(I),   x_t = W_e S_t,   p_{t+1} = softmax(W_o LSTM(x_t))   (t = 0 .. N-1)

with S_0 = <start> and S_N = <end>. Training is teacher forcing: `build_decoder` maps (image
features, the caption's ids without its last) to logits for the ids without the first. The
paper's sizes: embedding and LSTM 512, dropout, one layer; here flags.

Decoding reuses the same layers one word at a time (`DecoderSteps`): `greedy_decode` takes the
most likely word, `beam_search` keeps the `width` best partial captions (the paper: 20), both
in TensorFlow ops so the export decodes inside the SavedModel. The LSTMs and the logits run in
float32 under a mixed precision policy.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

NEG_INF = -1e9  # a log-probability no caption can beat, finite so sums stay finite


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


def greedy_decode(step, state, max_length: int, start_id: int, end_id: int):
    """The most likely word at every step: ids [B, max_length] (0 after <end>), and the
    caption's summed log-probability [B]."""
    batch = tf.shape(state[0])[0]
    tokens = tf.fill([batch], start_id)
    done = tf.zeros([batch], tf.bool)
    score = tf.zeros([batch])
    out = []
    for _ in range(max_length):
        log_probs, state = step(tokens, state)
        tokens = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
        score += tf.where(done, 0.0, tf.reduce_max(log_probs, axis=-1))
        out.append(tf.where(done, 0, tokens))
        done = tf.logical_or(done, tf.equal(tokens, end_id))
    return tf.stack(out, axis=1), score


def beam_search(step, state, width, max_length: int, start_id: int, end_id: int,
                length_penalty: float = 0.0):
    """The `width` best partial captions at every step, extended by every word and cut back to
    the best `width`; a caption that has emitted <end> stays as it is (extended only by padding
    at no cost). Returns the best caption per image, ids [B, max_length] (0 after <end>), and
    its score: summed log-probability divided by length ** `length_penalty` (0: the plain
    probability, as the paper; 1: the mean per word, which stops favouring short captions).
    `width` may be a tensor. Width 1 is greedy decoding."""
    width = tf.convert_to_tensor(width, tf.int32)
    batch = tf.shape(state[0])[0]
    state = [tf.repeat(s, width, axis=0) for s in state]  # [B * K, ...], beams of an image
    tokens = tf.fill([batch * width], start_id)
    # Only the first beam is alive at the start: the others are its copies.
    scores = tf.tile(tf.concat([[0.0], tf.fill([width - 1], NEG_INF)], 0)[None], [batch, 1])
    done = tf.zeros([batch, width], tf.bool)
    lengths = tf.zeros([batch, width])
    sequences = tf.zeros([batch, width, 0], tf.int32)
    rows = tf.range(batch)[:, None] * width
    for _ in range(max_length):
        log_probs, state = step(tokens, state)
        vocab = tf.shape(log_probs)[-1]
        log_probs = tf.reshape(log_probs, [batch, width, vocab])
        # A finished caption continues only with padding (id 0), keeping its score.
        pad_only = tf.concat([[0.0], tf.fill([vocab - 1], NEG_INF)], 0)
        log_probs = tf.where(done[..., None], pad_only, log_probs)
        total = tf.reshape(scores[..., None] + log_probs, [batch, width * vocab])
        scores, best = tf.math.top_k(total, k=width)
        beam, word = best // vocab, best % vocab
        sequences = tf.concat([tf.gather(sequences, beam, batch_dims=1), word[..., None]], -1)
        was_done = tf.gather(done, beam, batch_dims=1)
        lengths = tf.gather(lengths, beam, batch_dims=1) + tf.cast(~was_done, tf.float32)
        done = was_done | tf.equal(word, end_id)
        state = [tf.gather(s, tf.reshape(rows + beam, [-1])) for s in state]
        tokens = tf.reshape(word, [-1])
    normalised = scores / tf.maximum(lengths, 1.0) ** length_penalty
    pick = tf.argmax(normalised, axis=-1, output_type=tf.int32)
    return (tf.gather(sequences, pick, batch_dims=1),
            tf.gather(normalised, pick, batch_dims=1))
