"""Decoding a sequence model one token at a time, in TensorFlow ops (so an export can decode
inside its SavedModel): greedy, and beam search with length normalisation.

Both take `step(tokens [N], state) -> (log-probabilities [N, vocab], state)` and the state
after the conditioning input (a list of [batch, ...] tensors), and return ids [batch, length]
that are 0 after the end token. Neither ends a caption before its first word: an empty caption
is no answer, yet a wide beam keeps <end> among its first candidates and, scored by summed
log-probability, the one-step caption outscores every longer one.
"""
from __future__ import annotations

import tensorflow as tf

NEG_INF = -1e9  # a log-probability no sequence can beat, finite so sums stay finite


def _no_end_first(log_probs, end_id: int):
    """The first step's log-probabilities with <end> made impossible."""
    vocab = tf.shape(log_probs)[-1]
    return log_probs + tf.one_hot(end_id, vocab, on_value=NEG_INF, off_value=0.0)


def greedy_decode(step, state, max_length: int, start_id: int, end_id: int):
    """The most likely word at every step: ids [B, max_length] (0 after <end>), and the
    caption's summed log-probability [B]."""
    batch = tf.shape(state[0])[0]
    tokens = tf.fill([batch], start_id)
    done = tf.zeros([batch], tf.bool)
    score = tf.zeros([batch])
    out = []
    for position in range(max_length):
        log_probs, state = step(tokens, state)
        if position == 0:
            log_probs = _no_end_first(log_probs, end_id)
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
    for position in range(max_length):
        log_probs, state = step(tokens, state)
        if position == 0:
            log_probs = _no_end_first(log_probs, end_id)
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
