"""bench/roofline.py: the arithmetic the benches divide their GFLOP/s by."""
from __future__ import annotations

import keras
import pytest

from bench import roofline
from suite.models.deep_convnet import build_deep_convnet


def test_deep_convnet_multiply_adds_are_the_hand_count():
    # output pixels x output channels x kernel area x input channels, layer by layer:
    # 28x28: 16x9x1, 16x9x16; 14x14: 32x9x16; 16x16 (pad 2): 32x9x32; 8x8: 64x9x32, 64x9x64;
    # dense 1024x50, 50x10.
    hand = (784 * 16 * 9 * (1 + 16) + 196 * 32 * 9 * 16 + 256 * 32 * 9 * 32
            + 64 * 64 * 9 * (32 + 64) + 1024 * 50 + 50 * 10)
    assert hand == 8_772_340
    model = build_deep_convnet()
    assert roofline.multiply_adds(model) == hand
    assert roofline.gflops_per_image(model) == pytest.approx(2 * hand / 1e9)
    assert roofline.gflops_per_image(model, training=True) == pytest.approx(6 * hand / 1e9)


def test_layers_inside_blocks_transposed_grouped_and_sequence_dense_are_counted():
    inner = keras.Sequential([keras.Input((8, 8, 4)),
                              keras.layers.Conv2D(6, 3, padding="same", groups=2)], name="inner")
    inputs = keras.Input((8, 8, 4))
    x = inner(inputs)                                                     # 64 x 6 x 9 x 2
    x = keras.layers.Conv2DTranspose(3, 2, strides=2)(x)                  # 64 x 6 x 4 x 3
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)                # 256 x 3 x 9
    x = keras.layers.Reshape((256, 3))(x)
    x = keras.layers.Dense(5)(x)                                          # 256 x 3 x 5
    model = keras.Model(inputs, x)
    assert roofline.multiply_adds(model) == (64 * 6 * 9 * 2 + 64 * 6 * 4 * 3 + 256 * 3 * 9
                                             + 256 * 3 * 5)


def test_best_of_keeps_the_higher_peak_per_precision_and_share_is_a_percent():
    before = {"float32": {"gflops": 200.0}, "bfloat16": {"gflops": 390.0}}
    after = {"float32": {"gflops": 210.0}}
    best = roofline.best_of(before, after, {})
    assert best == {"float32": {"gflops": 210.0}, "bfloat16": {"gflops": 390.0}}
    assert roofline.share(105.0, best["float32"]) == 50.0
    assert roofline.share(105.0, None) is None
