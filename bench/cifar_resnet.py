r"""ResNet / plain nets on the CIFAR-10 subset with the paper's recipe (He et al. 2015, sec. 4.2).

    python -m bench.cifar_resnet --models=resnet20 --epochs=180 \
        --data=../shared/data/cifar10-subset/cifar10_jpg_test10000_train20000.zip
    python -m bench.cifar_resnet --plot --models=plain20,plain56,resnet20,resnet56 \
        --tag=depth_e100

Recipe (the defaults): SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by 10 at
50% and 75% of the epochs, 4-pixel zero padding + random 32x32 crop + horizontal flip. Flags
change the weight decay, use a cosine schedule, a linear warm-up, or add cutout (DeVries & Taylor
2017), the modern improvements, each of which apps.train_classifier offers too. Trains on the
20,000 training images, evaluates on all 10,000 test images every epoch.

Backend-agnostic, so it runs with KERAS_BACKEND=jax on a GPU without TensorFlow: augmentation is
vectorised NumPy on the host (Keras image layers are slow inside JAX models on GPUs,
keras-team/keras#23229), and the loss is computed from the logits, as the TensorFlow backend does
for a softmax output; the JAX backend's probability path clips at 1e-7 and so drops the gradient
of every confidently wrong example. Histories go to <out_dir>/<run>.json after every epoch;
--plot draws the paper's Figure 6 from the runs of one --tag.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import flags

from bench import RESULTS, SHARED_DATA, cli

PAD = 4


def augment(images, rng, cutout=0):
    """Pad-4 random crop, horizontal flip and optional cutout of a uint8 batch, vectorised."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * PAD + 1, (2, n))
    out = windows[np.arange(n), dy, dx].transpose(0, 2, 3, 1).astype("float32")
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    if cutout:
        # A cutout x cutout square of zeros centred anywhere in the image (it may be clipped).
        top = rng.integers(0, h, n)[:, None] - cutout // 2
        left = rng.integers(0, w, n)[:, None] - cutout // 2
        rows, cols = np.arange(h)[None, :], np.arange(w)[None, :]
        in_y = (rows >= top) & (rows < top + cutout)
        in_x = (cols >= left) & (cols < left + cutout)
        out[in_y[:, :, None] & in_x[:, None, :]] = 0.0
    return out


def augmented_batches(images, labels, batch_size, seed, cutout):
    import keras

    class Augmented(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(images))

        def __len__(self):
            return len(images) // batch_size

        def __getitem__(self, i):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            return augment(images[idx], self.rng, cutout), labels[idx]

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(images))

    return Augmented()


def learning_rate(args, steps):
    import keras

    total = args.epochs * steps
    warm = args.warmup_epochs * steps
    if args.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warm else args.lr, total - warm, warmup_target=args.lr if warm else None,
            warmup_steps=warm)
    bounds = [int(args.epochs * 0.5) * steps, int(args.epochs * 0.75) * steps]
    values = [args.lr, args.lr / 10, args.lr / 100]
    if warm:  # the paper's ResNet-110 start: lr / 10 until the net begins to train
        bounds, values = [warm] + bounds, [args.lr / 10] + values
    return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)


def train(model_name, args):
    import keras

    from suite.data.cifar10 import load_cifar10_local
    from suite.models.registry import build_model

    (x_train, y_train), (x_test, y_test) = load_cifar10_local(args.data)
    keras.utils.set_random_seed(args.seed)
    model = build_model(model_name, input_shape=(32, 32, 3), num_classes=10,
                        weight_decay=args.weight_decay)
    logits = keras.Model(model.inputs, model.get_layer("logits").output)  # shares the weights
    steps = len(x_train) // args.batch_size
    logits.compile(keras.optimizers.SGD(learning_rate(args, steps), momentum=0.9),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"], steps_per_execution=args.steps_per_execution)
    run = model_name + (f"_{args.tag}" if args.tag else "")
    path = os.path.join(args.out_dir, f"{run}.json")
    record = {"run": run, "model": model_name, "params": model.count_params(),
              "recipe": {k: getattr(args, k) for k in (
                  "epochs", "batch_size", "lr", "weight_decay", "schedule", "warmup_epochs",
                  "cutout", "seed")},
              "backend": keras.backend.backend(), "train_images": len(x_train),
              "test_images": len(x_test), "history": {}}
    start = time.time()
    record["start_unix"] = round(start, 1)  # with epoch_end_seconds: comparable across runs

    class Save(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                record["history"].setdefault(k, []).append(float(v))
            record["seconds"] = round(time.time() - start, 1)
            record.setdefault("epoch_end_seconds", []).append(record["seconds"])
            with open(path + ".tmp", "w") as f:
                json.dump(record, f)
            os.replace(path + ".tmp", path)

    logits.fit(augmented_batches(x_train, y_train, args.batch_size, args.seed, args.cutout),
               epochs=args.epochs, validation_data=(x_test.astype("float32"), y_test),
               validation_batch_size=1000, callbacks=[Save()], verbose=2)
    print(f"{run}: test accuracy {100 * record['history']['val_accuracy'][-1]:.2f}% "
          f"after {args.epochs} epochs, {record['seconds']} s")


def plot(models, out_dir, tag):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    epochs_seen = set()
    for ax, family in zip(axes, ("plain", "resnet")):
        for name in [m for m in models if m.startswith(family)]:
            run = name + (f"_{tag}" if tag else "")
            with open(os.path.join(out_dir, f"{run}.json")) as f:
                h = json.load(f)["history"]
            epochs = np.arange(1, len(h["accuracy"]) + 1)
            epochs_seen.add(len(epochs))
            line, = ax.plot(epochs, 100 * (1 - np.array(h["accuracy"])), "--", lw=1)
            ax.plot(epochs, 100 * (1 - np.array(h["val_accuracy"])), color=line.get_color(),
                    lw=2, label=f"{name} (test error {100 * (1 - h['val_accuracy'][-1]):.1f}%, "
                                f"train {100 * (1 - h['accuracy'][-1]):.1f}%)")
        ax.set_title(f"{family} nets: dashed train error, bold test error")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 90)
        ax.grid(alpha=0.3)
        ax.legend()
    if len(epochs_seen) != 1:
        raise SystemExit(f"runs of tag {tag!r} have different lengths {sorted(epochs_seen)}: "
                         "the figure compares equal budgets only")
    axes[0].set_ylabel("error (%)")
    fig.suptitle(f"CIFAR-10, 20k-image training subset, {epochs_seen.pop()} epochs each: "
                 "plain vs residual networks by depth")
    fig.tight_layout()
    out = os.path.join(out_dir, "plain_vs_resnet.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("models", "resnet20", "comma-separated, trained one by one",
                        flag_values=fv)
    flags.DEFINE_integer("epochs", 180, "epochs of the 20k training images", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("batch_size", 128, "images per step", lower_bound=1, flag_values=fv)
    flags.DEFINE_float("lr", 0.1, "peak learning rate (SGD momentum 0.9)", flag_values=fv)
    flags.DEFINE_float("weight_decay", 1e-4, "L2 penalty of the kernels", flag_values=fv)
    flags.DEFINE_enum("schedule", "step", ["step", "cosine"], "step: lr / 10 at 50% and 75% of "
                      "the epochs; cosine: to 0 at the end", flag_values=fv)
    flags.DEFINE_integer("warmup_epochs", 0, "step: lr / 10 for these epochs first; cosine: "
                         "linear ramp from 0", flag_values=fv)
    flags.DEFINE_integer("cutout", 0, "side of the cutout square, 0 = none", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seeds the initialisation, the order and the augmentation",
                         flag_values=fv)
    flags.DEFINE_integer("steps_per_execution", 1, "Keras's steps_per_execution",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_string("tag", "", "suffix of the run name: <model>_<tag>.json", flag_values=fv)
    flags.DEFINE_string("data", os.path.join(SHARED_DATA, "cifar10-subset",
                                             "cifar10_jpg_test10000_train20000.zip"),
                        "the CIFAR-10 subset's zip", flag_values=fv)
    flags.DEFINE_string("out_dir", os.path.join(RESULTS, "cifar_resnet"),
                        "where <run>.json (and the figure) go", flag_values=fv)
    flags.DEFINE_boolean("plot", False, "draw the curves of finished runs", flag_values=fv)


def main(args):
    if not 0 <= args.warmup_epochs < args.epochs:
        cli.usage_error(f"--warmup_epochs must be in [0, --epochs), got {args.warmup_epochs}")
    os.makedirs(args.out_dir, exist_ok=True)
    models = args.models.split(",")
    if args.plot:
        plot(models, args.out_dir, args.tag)
        return
    for name in models:
        train(name, args)


if __name__ == "__main__":
    cli.run(main, define_flags)
