"""Caption quality: corpus BLEU-1..4 (nltk's `corpus_bleu`, every reference caption of an
image counted) and the two baselines a captioner must beat: the caption of the nearest
training image in the encoder's feature space, and one caption for every image (the decoder's
own language model given no image information)."""
from __future__ import annotations

import numpy as np

BLEU_WEIGHTS = {1: (1.0,), 2: (0.5, 0.5), 3: (1 / 3,) * 3, 4: (0.25,) * 4}


def bleu_scores(references: list[list[list[str]]], hypotheses: list[list[str]]) -> dict:
    """{'bleu1': ..., 'bleu4': ...}: cumulative corpus BLEU-n (Papineni et al. 2002) of word
    lists against each image's reference word lists."""
    import warnings

    from nltk.translate.bleu_score import corpus_bleu

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference sets for {len(hypotheses)} captions")
    with warnings.catch_warnings():  # "0 counts of 4-gram overlaps": a score of 0 is the answer
        warnings.simplefilter("ignore", UserWarning)
        return {f"bleu{n}": float(corpus_bleu(references, hypotheses, weights=w))
                for n, w in BLEU_WEIGHTS.items()}


def consensus_caption(captions: list[list[str]]) -> list[str]:
    """The one of an image's captions that agrees most with the others (smoothed sentence
    BLEU-4 against the rest): that image's most typical description."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    if len(captions) == 1:
        return captions[0]
    smooth = SmoothingFunction().method1
    scores = [sentence_bleu(captions[:i] + captions[i + 1:], c, smoothing_function=smooth)
              for i, c in enumerate(captions)]
    return captions[int(np.argmax(scores))]


def nearest_neighbours(train_features: np.ndarray, query_features: np.ndarray) -> np.ndarray:
    """Index of the training image with the highest cosine similarity, per query."""
    def unit(x):
        x = np.asarray(x, np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return np.argmax(unit(query_features) @ unit(train_features).T, axis=1)


def nearest_neighbour_captions(train_features, train_references, query_features):
    """Per query image: the consensus caption of its nearest training image."""
    cache: dict[int, list[str]] = {}
    out = []
    for i in nearest_neighbours(train_features, query_features).tolist():
        if i not in cache:
            cache[i] = consensus_caption(train_references[i])
        out.append(cache[i])
    return out
