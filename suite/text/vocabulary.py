"""Caption text: cleaning, the vocabulary, and ids <-> words.

Lower case, everything but letters, digits and spaces removed (`clean_caption`, and
`clean_captions_tf` for tf.data); the vocabulary is the training captions' words seen at least
`min_count` times, with <start> and <end> markers; `caption_vectorizer` is the Keras
TextVectorization layer that turns wrapped captions into ids inside tf.data (never inside the
replicated model: string lookups there fail under MirroredStrategy).
"""
from __future__ import annotations

import collections
import re

import numpy as np

START, END = "<start>", "<end>"
PAD, UNKNOWN = "", "[UNK]"  # ids 0 and 1: TextVectorization's own


def clean_caption(text: str) -> str:
    """Lower case, letters/digits/spaces only, single spaces: the same as clean_captions_tf."""
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def clean_captions_tf(text):
    import tensorflow as tf

    text = tf.strings.regex_replace(tf.strings.lower(text), r"[^a-z0-9 ]+", " ")
    return tf.strings.strip(tf.strings.regex_replace(text, r" +", " "))


def wrap_tf(text):
    """'<start> clean caption <end>' for raw caption strings."""
    import tensorflow as tf

    return tf.strings.join([START, clean_captions_tf(text), END], separator=" ")


def build_vocabulary(captions, min_count: int) -> list[str]:
    """<start>, <end>, then the words of `captions` seen at least `min_count` times, most
    frequent first (ties alphabetical): TextVectorization puts '' and [UNK] before them."""
    counts = collections.Counter(w for c in captions for w in clean_caption(c).split())
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return [START, END, *words]


def caption_vectorizer(vocabulary: list[str], length: int):
    """Wrapped caption strings -> int ids of exactly `length` (cut or padded with 0)."""
    import keras

    return keras.layers.TextVectorization(standardize=None, split="whitespace",
                                          output_sequence_length=length,
                                          vocabulary=list(vocabulary), name="captions")


def ids_to_words(ids, vocabulary: list[str]) -> list[str]:
    """The words of one decoded sequence up to <end> (PAD, START dropped; [UNK] kept)."""
    words = []
    for i in np.asarray(ids).tolist():
        word = vocabulary[i]
        if word == END:
            break
        if word not in (PAD, START):
            words.append(word)
    return words


def ids_to_text(ids, vocabulary, start_id: int, end_id: int):
    """ids_to_words in TensorFlow ops, for a batch inside an export: decoded ids [B, T] (0 after
    <end>) -> caption strings [B], the words separated by spaces."""
    import tensorflow as tf

    keep = (ids != 0) & (ids != start_id) & (ids != end_id)
    words = tf.ragged.boolean_mask(tf.gather(vocabulary, ids), keep)
    return tf.strings.reduce_join(words, axis=-1, separator=" ")
