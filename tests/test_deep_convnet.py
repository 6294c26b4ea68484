import keras
import numpy as np

import pytest

from suite.models.deep_convnet import BookDropout, build_augmentation, build_deep_convnet


def test_parameter_count_and_layer_plan_match_the_book():
    model = build_deep_convnet()
    assert model.count_params() == 123_552
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 16, 32, 32, 64, 64]
    assert all(c.kernel_size == (3, 3) for c in convs)
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    # conv4 pads by 2: 14 -> 18 -> 16, so the last pool leaves 4x4x64 = 1024 features
    assert shapes["conv4"] == (16, 16, 32)
    assert shapes["pool3"] == (4, 4, 64)
    assert shapes["fc1"] == (50,) and shapes["fc2"] == (10,)
    dropouts = [layer.rate for layer in model.layers if isinstance(layer, BookDropout)]
    assert dropouts == [0.5, 0.5]
    inverted = build_deep_convnet(dropout="inverted")
    assert inverted.count_params() == 123_552
    assert [type(inverted.get_layer(f"dropout{i}")) for i in (1, 2)] == [keras.layers.Dropout] * 2
    with pytest.raises(ValueError, match="dropout must be one of"):
        build_deep_convnet(dropout="gaussian")


def test_book_dropout_masks_without_rescaling_and_scales_at_inference():
    layer = BookDropout(0.5, seed=3)
    x = np.full((200, 50), 2.0, "float32")
    trained = keras.ops.convert_to_numpy(layer(x, training=True))
    assert set(np.unique(trained)) == {0.0, 2.0}  # kept units unchanged (Keras would give 4.0)
    assert 0.45 < np.mean(trained == 0) < 0.55
    np.testing.assert_array_equal(layer(x, training=False), np.full_like(x, 1.0))


def test_output_is_a_float32_distribution_even_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_deep_convnet()
    probs = model(np.random.default_rng(0).uniform(0, 255, (4, 28, 28, 1)).astype("float32"))
    assert probs.dtype == "float32" and probs.shape == (4, 10)
    np.testing.assert_allclose(np.sum(probs, axis=-1), 1.0, rtol=1e-5)
    assert model.get_layer("conv1").compute_dtype == "bfloat16"


def test_he_initialisation_has_the_books_scale():
    keras.utils.set_random_seed(1)
    kernel = build_deep_convnet().get_layer("conv6").kernel.numpy()
    expected = np.sqrt(2.0 / (3 * 3 * 64))
    assert abs(kernel.std() / expected - 1) < 0.05  # untruncated N(0, 2/fan_in)


def test_augmentation_is_active_in_training_only_and_adds_no_parameters():
    model = build_deep_convnet(augmentation=build_augmentation(15, 3, seed=0))
    assert model.count_params() == 123_552
    aug = model.get_layer("augmentation")
    x = np.zeros((2, 28, 28, 1), "float32")
    x[:, 10:18, 12:16] = 1.0
    np.testing.assert_array_equal(aug(x, training=False), x)
    assert not np.allclose(aug(x, training=True), x)
