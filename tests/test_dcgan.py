"""DCGAN: the paper's networks for 28x28x1 and 32x32x3, the two-optimizer train_step (loss
scaling included), the quality metrics on known inputs, the image loaders, and the app end to
end: figures, quality numbers, resume and both export signatures."""
from __future__ import annotations

import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (REPO, assert_workers_identical, launch_two_workers, parse_app_flags,
                      run_in_process, saved_model_cli_outputs)
from suite.data.generation import load_generation_images
from suite.errors import DataError
from suite.metrics import generative
from suite.models.dcgan import (DCGAN, build_discriminator, build_generator, check_image_shape,
                                upsampling_stages)
from suite.tasks.dcgan import DcganTask

TINY = ("--base_filters=4", "--latent_dim=8", "--grid_size=8", "--batch_size=16",
        "--quality_samples=40", "--log_every_steps=1")


def digits(mnist_small, count=128):
    (x_train, _), (x_test, _) = mnist_small
    return x_train[:count], x_test[:count], "mnist_small"


@pytest.mark.parametrize("shape,filters,generator_params,discriminator_params", [
    # z -> 7x7x128 -> 14x14x64 -> 28x28x1; 28 -> 14x14x64 -> 7x7x128 -> logit
    ((28, 28, 1), 64, 100 * 7 * 7 * 128 + 4 * 128 + 25 * 128 * 64 + 4 * 64 + 25 * 64 + 1,
     25 * 64 + 64 + 25 * 64 * 128 + 4 * 128 + 7 * 7 * 128 + 1),
    # z -> 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x3 (the paper's 64x64 net, one stage less)
    ((32, 32, 3), 128, 100 * 16 * 512 + 4 * 512 + 25 * 512 * 256 + 4 * 256 + 25 * 256 * 128
     + 4 * 128 + 25 * 128 * 3 + 3,
     25 * 3 * 128 + 128 + 25 * 128 * 256 + 4 * 256 + 25 * 256 * 512 + 4 * 512 + 16 * 512 + 1),
])
def test_networks_follow_the_paper_layer_for_layer(shape, filters, generator_params,
                                                   discriminator_params):
    generator = build_generator(shape, 100, filters)
    discriminator = build_discriminator(shape, filters)
    assert generator.count_params() == generator_params
    assert discriminator.count_params() == discriminator_params
    every = generator.layers + discriminator.layers
    assert not [l for l in every if "Pooling" in type(l).__name__]  # strided convolutions only
    convs = [l for l in discriminator.layers if isinstance(l, keras.layers.Conv2D)]
    assert all(l.strides == (2, 2) and l.kernel_size == (5, 5) for l in convs)
    # Batch norm everywhere but the generator's output and the discriminator's input layer.
    bn_names = {l.name for l in every if isinstance(l, keras.layers.BatchNormalization)}
    assert "conv1_bn" not in bn_names and "conv2_bn" in bn_names and "project_bn" in bn_names
    assert f"deconv{upsampling_stages(shape[0])}_bn" not in bn_names
    assert {l.negative_slope for l in every if isinstance(l, keras.layers.LeakyReLU)} == {0.2}
    assert generator.layers[-1].activation.__name__ == "tanh"
    kernel = discriminator.get_layer("conv2").kernel.numpy()
    assert kernel.std() == pytest.approx(0.02, rel=0.05) and abs(kernel.mean()) < 0.001
    images = generator(np.random.default_rng(0).normal(size=(3, 100)).astype("float32"))
    assert images.shape == (3, *shape) and images.dtype == "float32"
    assert -1 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1
    assert discriminator(images).shape == (3, 1)


def test_refine_layers_add_stride_one_layers_on_the_smallest_map():
    paper = build_generator((28, 28, 1), 100, 64)
    refined = build_generator((28, 28, 1), 100, 64, refine_layers=2)
    # Each: a 5x5 128 -> 128 kernel without bias, and batch norm's 4 x 128.
    assert refined.count_params() - paper.count_params() == 2 * (25 * 128 * 128 + 4 * 128)
    assert refined.get_layer("refine2").strides == (1, 1)
    assert refined.get_layer("refine2").output.shape[1:] == (7, 7, 128)
    gan = DCGAN(latent_dim=8, base_filters=4, refine_layers=1, ema_decay=0.5)
    assert gan.ema_generator.get_layer("refine1") is not None
    assert DCGAN.from_config(gan.get_config()).refine_layers == 1


def test_image_sizes_must_halve_to_a_map_of_four_or_more():
    assert [upsampling_stages(s) for s in (28, 32, 64, 48, 8)] == [2, 3, 4, 3, 1]
    for bad in [(6, 6, 1), (32, 28, 1), (8, 8, 2), (5, 5, 3)]:
        with pytest.raises(ValueError, match="`image_size`"):
            check_image_shape(bad)


def compiled_gan(shape=(28, 28, 1), **options):
    gan = DCGAN(image_shape=shape, latent_dim=8, base_filters=4, **options)
    gan(np.zeros((1, 8), "float32"))
    gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    return gan


@pytest.mark.parametrize("reuse_fakes", [False, True])
def test_one_train_step_changes_both_models_and_counts_both_optimizers(reuse_fakes):
    keras.utils.set_random_seed(0)
    gan = compiled_gan(reuse_fakes=reuse_fakes)
    before = [w.numpy().copy() for w in gan.generator.trainable_weights
              + gan.discriminator.trainable_weights]
    real = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
    logs = gan.fit(real, batch_size=8, epochs=1, verbose=0).history
    after = gan.generator.trainable_weights + gan.discriminator.trainable_weights
    changed = [not np.array_equal(b, a.numpy()) for b, a in zip(before, after)]
    assert all(changed)
    assert int(gan.d_optimizer.iterations) == int(gan.g_optimizer.iterations) == 1
    assert set(logs) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert 0 < logs["d_real"][0] < 1 and 0 < logs["d_fake"][0] < 1


@pytest.mark.parametrize("reuse_fakes,forward_passes", [(False, 2), (True, 1)])
def test_reused_fakes_run_the_generator_forward_once_a_step(reuse_fakes, forward_passes):
    gan = compiled_gan(reuse_fakes=reuse_fakes)
    calls, call = [], gan.generator.call
    gan.generator.call = lambda *args, **kwargs: calls.append(1) or call(*args, **kwargs)
    real = np.zeros((16, 28, 28, 1), "float32")
    gan.fit(real, batch_size=8, epochs=1, verbose=0)  # two steps of one traced train_step
    assert len(calls) == forward_passes and int(gan.g_optimizer.iterations) == 2
    assert DCGAN.from_config(gan.get_config()).reuse_fakes is reuse_fakes


def test_the_noise_follows_the_seed_and_the_step():
    def latents(seed):  # what the generator is fed in two steps: (D's batch, G's batch) each
        gan = compiled_gan(seed=seed)
        gan.run_eagerly = True
        fed, call = [], gan.generator.call
        gan.generator.call = lambda z, *args, **kwargs: fed.append(z.numpy()) or call(
            z, *args, **kwargs)
        gan.fit(np.zeros((8, 28, 28, 1), "float32"), batch_size=4, epochs=1, verbose=0)
        return fed

    zero, again, one = latents(0), latents(0), latents(1)
    assert len(zero) == 4 and zero[0].shape == (4, 8)
    for a, b in zip(zero, again):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(zero[0], one[0])  # another seed, other noise from the first step
    assert len({a.tobytes() for a in zero}) == 4  # fresh noise for every batch of every step
    assert DCGAN.from_config(compiled_gan(seed=5).get_config()).seed == 5


def test_each_replica_draws_its_own_noise(two_cpu_strategy):
    with two_cpu_strategy.scope():
        gan = compiled_gan()
    gan.run_eagerly = True
    fed, call = [], gan.generator.call
    gan.generator.call = lambda z, *args, **kwargs: fed.append(z.numpy()) or call(
        z, *args, **kwargs)
    gan.fit(np.zeros((4, 28, 28, 1), "float32"), batch_size=4, epochs=1, verbose=0)
    assert len(fed) == 4 and fed[0].shape == (2, 8)  # 2 replicas x (D's batch, G's batch)
    assert len({z.tobytes() for z in fed}) == 4  # one seed for all gave the replicas one noise


def test_the_averaged_generator_follows_the_trained_one_by_its_decay():
    keras.utils.set_random_seed(0)
    gan = DCGAN(image_shape=(28, 28, 1), latent_dim=8, base_filters=4, ema_decay=0.75)
    gan(np.zeros((1, 8), "float32"))
    gan.start_average()
    gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    assert gan.sampler is gan.ema_generator and gan.sampler is not gan.generator
    start = [w.numpy().copy() for w in gan.generator.weights]
    assert all(np.array_equal(s, a.numpy()) for s, a in zip(start, gan.ema_generator.weights))
    real = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
    gan.fit(real, batch_size=8, epochs=1, verbose=0)
    trained = [w.numpy() for w in gan.generator.weights]
    averaged = [w.numpy() for w in gan.ema_generator.weights]
    for s, t, a in zip(start, trained, averaged):  # batch-norm statistics included
        np.testing.assert_allclose(a, 0.75 * s + 0.25 * t, rtol=1e-5, atol=1e-7)
    assert sum(not np.array_equal(s, t) for s, t in zip(start, trained)) == len(start)
    restored = DCGAN.from_config(gan.get_config())
    assert restored.ema_decay == 0.75 and restored.ema_generator is not None
    plain = compiled_gan()
    assert plain.ema_generator is None and plain.sampler is plain.generator
    with pytest.raises(ValueError, match="ema_decay"):
        DCGAN(latent_dim=8, base_filters=4, ema_decay=1.0)


def test_both_optimizers_scale_the_loss_under_mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        gan = compiled_gan()
        for optimizer in (gan.d_optimizer, gan.g_optimizer):
            assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            assert float(optimizer.scale_loss(tf.constant(1.0))) > 1000  # the dynamic scale
        assert gan.generator.get_layer("deconv1").compute_dtype == "float16"
        real = np.zeros((4, 28, 28, 1), "float32")
        gan.fit(real, batch_size=4, epochs=1, verbose=0)
        assert int(gan.d_optimizer.iterations) == int(gan.g_optimizer.iterations) == 1
        assert gan.generator(np.zeros((1, 8), "float32")).dtype == "float32"  # tanh in float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_bfloat16_trains_both_networks_without_loss_scaling():
    """The DCGAN preset's precision on CPUs with bfloat16 arithmetic: float32's range, so no
    scaling; weights, tanh output and logits stay float32."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        gan = compiled_gan()
        for optimizer in (gan.d_optimizer, gan.g_optimizer):
            assert not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert gan.generator.get_layer("deconv1").compute_dtype == "bfloat16"
        assert gan.discriminator.get_layer("conv2").compute_dtype == "bfloat16"
        assert all(w.dtype == "float32" for w in gan.generator.weights + gan.discriminator.weights)
        before = [w.numpy().copy() for w in gan.generator.trainable_weights
                  + gan.discriminator.trainable_weights]
        real = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
        logs = gan.fit(real, batch_size=8, epochs=2, verbose=0).history
        after = gan.generator.trainable_weights + gan.discriminator.trainable_weights
        assert all(not np.array_equal(b, a.numpy()) for b, a in zip(before, after))
        assert int(gan.d_optimizer.iterations) == int(gan.g_optimizer.iterations) == 2
        assert all(np.isfinite(v).all() for v in logs.values())
        assert gan.generator(np.zeros((1, 8), "float32")).dtype == "float32"
        assert gan.discriminator(np.zeros((1, 28, 28, 1), "float32")).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_classifier_score_and_frechet_distance_on_known_inputs():
    confident = np.eye(10)[np.arange(1000) % 10] * 0.999999 + 1e-7
    assert generative.classifier_score(confident)[0] == pytest.approx(10, rel=1e-3)
    one_class = np.eye(10)[np.zeros(1000, int)]
    assert generative.classifier_score(one_class)[0] == pytest.approx(1, abs=1e-6)
    uniform = np.full((1000, 10), 0.1)
    assert generative.classifier_score(uniform)[0] == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(generative.class_histogram(confident, 10), 0.1)

    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3)) * [1.0, 2.0, 0.5]
    b = rng.normal(size=(20000, 3)) * [2.0, 2.0, 0.5] + [3.0, 0.0, 0.0]
    # Diagonal covariances: |mu_a - mu_b|^2 + sum (sd_a - sd_b)^2 = 9 + 1.
    assert generative.frechet_distance(a, b) == pytest.approx(10.0, rel=0.03)
    assert generative.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_generation_images_from_folders_and_clear_errors(tmp_path, mnist_small):
    from PIL import Image

    flat = tmp_path / "flat" / "nested"
    os.makedirs(flat)
    for i in range(3):
        Image.fromarray(np.full((40, 30, 3), 50 * i, np.uint8)).save(flat / f"{i}.png")
    images, test, name = load_generation_images(str(tmp_path / "flat"), image_size=16,
                                                grayscale=True)
    assert images.shape == (3, 16, 16, 1) and test is None and name == "flat"
    assert images[2].min() == images[2].max() == 100
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DataError, match="holds no .png"):
        load_generation_images(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="does not exist"):
        load_generation_images("no/such/folder")
    with pytest.raises(DataError, match="28x28"):
        load_generation_images("mnist", image_size=32, mnist_dir="unused")


def test_generation_images_from_a_cifar_zip_and_from_tensorflow_datasets(tmp_path,
                                                                          monkeypatch):
    import zipfile

    import tensorflow_datasets as tfds
    from PIL import Image

    from suite.data import hosts

    archive = tmp_path / "cifar.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for split, count in (("train", 3), ("test", 2)):
            for i in range(count):
                path = tmp_path / f"{split}{i}.jpg"
                Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(path)
                z.write(path, f"cifar/{split}/cat/{i}.jpg")
    images, test, _ = load_generation_images(str(archive), grayscale=True)
    assert images.shape == (3, 32, 32, 1) and test.shape == (2, 32, 32, 1)
    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=4):  # tfds's offline random data
        images, test, name = load_generation_images("cifar10", image_size=16,
                                                    data_dir=str(tmp_path))
    assert images.shape == (4, 16, 16, 3) and images.dtype == np.uint8 and name == "cifar10"


def test_app_trains_draws_measures_resumes_and_exports(tmp_path, mnist_small):
    from suite.models.deep_convnet import build_deep_convnet

    classifier_dir = tmp_path / "classifier"
    os.makedirs(classifier_dir / "checkpoints")
    build_deep_convnet().save(classifier_dir / "checkpoints" / "last.keras")
    model_dir = tmp_path / "run"
    args = (f"--model_dir={model_dir}", f"--classifier_from={classifier_dir}",
            "--steps_per_epoch=3", "--ema_decay=0.9", *TINY)
    first = run_in_process(DcganTask, *args, "--epochs=1", data_override=digits(mnist_small))
    assert first["d_iterations"] == first["g_iterations"] == 3
    results = run_in_process(DcganTask, *args, "--epochs=2",
                             data_override=digits(mnist_small))
    assert results["d_iterations"] == results["g_iterations"] == 6  # resumed, not restarted
    for name in ("samples/epoch_001.png", "samples/epoch_002.png", "samples.png",
                 "interpolation.png", "progress.gif", "losses.png", "losses.csv"):
        assert os.path.getsize(model_dir / name) > 0, name
    from PIL import Image

    assert Image.open(model_dir / "progress.gif").n_frames == 2
    rows = open(model_dir / "losses.csv").read().split()
    steps = [int(row.split(",")[0]) for row in rows[1:]]
    assert steps == [1, 2, 3, 4, 5, 6]
    quality = results["quality"]
    assert 1 <= quality["classifier_score"] <= 10 and quality["frechet_distance"] >= 0
    assert sum(quality["class_histogram"]) == pytest.approx(1, abs=1e-3)
    assert quality["frechet_floor_test_vs_train"] >= 0 and quality["samples"] == 40
    assert results["samples_from"] == "generator_ema"  # the average draws; the trained one
    assert results["quality_trained_generator"]["frechet_distance"] != quality[  # is measured
        "frechet_distance"]

    loaded = tf.saved_model.load(results["export"])
    seeds = tf.constant([3, 3, 4], tf.int64)
    by_seed = loaded.signatures["from_seed"](seed=seeds)
    images = by_seed["images"].numpy()
    assert images.dtype == np.uint8 and images.shape == (3, 28, 28, 1)
    latent = by_seed["latent"].numpy()  # (an untrained generator draws the same gray image)
    np.testing.assert_array_equal(images[0], images[1])
    np.testing.assert_array_equal(latent[0], latent[1])
    assert not np.array_equal(latent[0], latent[2]) and latent.shape == (3, 8)
    again = loaded.signatures["serving_default"](latent=by_seed["latent"])["images"].numpy()
    np.testing.assert_array_equal(again, images)


def test_a_run_stopped_mid_epoch_resumes_as_if_never_stopped(tmp_path, mnist_small,
                                                            monkeypatch):
    """SIGTERM at step 2 of 3: the rerun finishes epoch 1 and trains epoch 2 on the batches and
    the noise an uninterrupted run has (the same weights), and losses.csv has every step once,
    with the uninterrupted run's losses."""
    from suite.models.registry import load_keras_file
    from suite.tasks.dcgan import DcganTask

    args = ("--epochs=2", "--steps_per_epoch=3", "--noexport", *TINY)
    straight = run_in_process(DcganTask, f"--model_dir={tmp_path / 'straight'}", *args,
                              data_override=digits(mnist_small))
    record = DcganTask.record_step_losses

    def record_then_stop(self, run, step, losses):
        record(self, run, step, losses)
        if step == 2:  # as a scheduler's SIGTERM, mid-epoch
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(DcganTask, "record_step_losses", record_then_stop)
    model_dir = tmp_path / "resumed"
    first = run_in_process(DcganTask, f"--model_dir={model_dir}", *args,
                           data_override=digits(mnist_small))
    monkeypatch.undo()
    assert first["status"] == "interrupted", first
    saved = json.load(open(model_dir / "backup" / "state.json"))
    assert (saved["epoch"], saved["step"]) == (0, 2)
    resumed = run_in_process(DcganTask, f"--model_dir={model_dir}", *args,
                             data_override=digits(mnist_small))
    assert resumed["d_iterations"] == straight["d_iterations"] == 6

    def trained(run):
        gan = load_keras_file(str(tmp_path / run / "checkpoints" / "last.keras"),
                              custom_objects=DcganTask.custom_objects())
        return gan.generator.get_weights() + gan.discriminator.get_weights()

    for a, b in zip(trained("straight"), trained("resumed")):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-7)

    def losses(run):
        return open(tmp_path / run / "losses.csv").read().split()[1:]

    assert [int(row.split(",")[0]) for row in losses("resumed")] == [1, 2, 3, 4, 5, 6]
    assert losses("resumed") == losses("straight")


def test_bad_flags_and_classifiers_are_refused_clearly(tmp_path, mnist_small):
    from suite.models.deep_convnet import build_deep_convnet

    bad = run_in_process_error(DcganTask, tmp_path, "--image_size=6",
                               data=(np.zeros((32, 6, 6, 1), np.uint8), None, "tiny"))
    assert "--image_size" in bad
    cifar_sized = build_deep_convnet()
    path = tmp_path / "mnist.keras"
    cifar_sized.save(path)
    wrong = run_in_process_error(DcganTask, tmp_path, f"--classifier_from={path}",
                                 "--epochs=0", data=(np.zeros((32, 32, 32, 3), np.uint8), None,
                                                     "colour"))
    assert "(28, 28, 1)" in wrong and "(32, 32, 3)" in wrong


def run_in_process_error(app, tmp_path, *args, data):
    with pytest.raises((ValueError, DataError)) as error:
        run_in_process(app, f"--model_dir={tmp_path / 'bad'}", *TINY, *args, data_override=data)
    return str(error.value)


@pytest.mark.slow
def test_exported_generator_runs_under_saved_model_cli(tmp_path, mnist_small):
    results = run_in_process(DcganTask, f"--model_dir={tmp_path / 'run'}", "--epochs=1",
                             "--steps_per_epoch=2", *TINY, data_override=digits(mnist_small))
    images = saved_model_cli_outputs(results["export"], "from_seed", "seed",
                                     np.array([1, 2], np.int64), tmp_path)["images"]
    assert images.dtype == np.uint8 and images.shape == (2, 28, 28, 1)
    loaded = tf.saved_model.load(results["export"])
    direct = loaded.signatures["from_seed"](seed=tf.constant([1, 2], tf.int64))["images"]
    np.testing.assert_array_equal(images, direct.numpy())


@pytest.mark.slow
def test_two_workers_keep_both_models_and_both_optimizers_identical(tmp_path):
    """launch.local with 2 workers on a folder of digits: the chief's and the other worker's
    backups hold the same generator, discriminator and both optimizers' slots."""
    from PIL import Image

    from suite.data.mnist import load_mnist_arrays

    (x_train, _), _ = load_mnist_arrays(os.path.join(REPO, "tests", "fixtures", "mnist_small"),
                                        verify_checksums=False)
    folder = tmp_path / "digits"
    os.makedirs(folder)
    for i, image in enumerate(x_train[:64]):
        Image.fromarray(image[..., 0]).save(folder / f"{i}.png")
    model_dir = tmp_path / "run"
    launch_two_workers("apps.train_dcgan", f"--dataset={folder}", "--grayscale",
                       f"--model_dir={model_dir}", "--epochs=2", "--steps_per_epoch=3",
                       "--ema_decay=0.9", *TINY)
    results = json.load(open(model_dir / "results.json"))
    assert results["replicas"] == 2 and results["d_iterations"] == results["g_iterations"] == 6
    names = assert_workers_identical(model_dir)
    for part in ("generator", "ema_generator", "discriminator", "d_optimizer", "g_optimizer"):
        assert any(part in n for n in names), part


def test_the_mnist_preset_parses_and_its_first_line_is_the_command(tmp_path, monkeypatch):
    path = "apps/flags/dcgan_mnist.flags"
    with open(os.path.join(REPO, path)) as f:
        assert f.readline().startswith(f"# python -m apps.train_dcgan --flagfile={path}")
    monkeypatch.chdir(REPO)
    # The preset's data and judge live outside a fresh clone: point both at existing folders.
    f = parse_app_flags(DcganTask, f"--flagfile={path}", f"--mnist_dir={tmp_path}",
                        f"--classifier_from={tmp_path}")
    assert (f.dataset, f.batch_size, f.epochs, f.refine_layers, f.base_filters) == (
        "mnist", 64, 11, 1, 64)
    assert not f.reuse_fakes and f.classifier_from == str(tmp_path)
    assert f.precision == "fastest" and f.d_learning_rate == f.g_learning_rate == 2e-4
    assert f.d_beta_1 == f.g_beta_1 == 0.5
