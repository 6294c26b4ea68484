"""ResNet / plain nets on the CIFAR-10 subset with the paper's recipe (He et al. 2015, sec. 4.2).

    python bench/cifar_resnet.py --models=resnet20 --epochs=100 \
        --data=../shared/data/cifar10-subset/cifar10_jpg_test10000_train20000.zip
    python bench/cifar_resnet.py --plot --models=plain20,plain56,resnet20,resnet56

Recipe: SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by 10 at 50% and 75% of
the epochs, 4-pixel zero padding + random 32x32 crop + horizontal flip. Trains on the 20,000
training images, evaluates on all 10,000 test images every epoch. Backend-agnostic (runs with
KERAS_BACKEND=jax on a GPU without TensorFlow): augmentation is NumPy in a keras PyDataset.
Histories go to <out_dir>/<model>.json after every epoch; --plot draws the paper's Figure 6.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def augmented_batches(images, labels, batch_size, seed):
    import keras

    class CropFlip(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(images))

        def __len__(self):
            return len(images) // batch_size

        def __getitem__(self, i):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            padded = np.pad(images[idx], ((0, 0), (4, 4), (4, 4), (0, 0)))
            dy, dx = self.rng.integers(0, 9, 2 * len(idx)).reshape(2, -1)
            out = np.stack([p[y:y + 32, x:x + 32] for p, y, x in zip(padded, dy, dx)])
            flip = self.rng.random(len(idx)) < 0.5
            out[flip] = out[flip, :, ::-1]
            return out.astype("float32"), labels[idx]

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(images))

    return CropFlip()


def train(model_name, epochs, data, out_dir, seed, batch_size=128, lr=0.1):
    import keras

    from suite.data.cifar10 import load_cifar10_local
    from suite.models.registry import build_model

    (x_train, y_train), (x_test, y_test) = load_cifar10_local(data)
    keras.utils.set_random_seed(seed)
    model = build_model(model_name, input_shape=(32, 32, 3), num_classes=10, weight_decay=1e-4)
    steps = len(x_train) // batch_size
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(epochs * 0.5) * steps, int(epochs * 0.75) * steps], [lr, lr / 10, lr / 100])
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    path = os.path.join(out_dir, f"{model_name}.json")
    record = {"model": model_name, "epochs": epochs, "params": model.count_params(),
              "backend": keras.backend.backend(), "train_images": len(x_train),
              "test_images": len(x_test), "history": {}}
    start = time.time()

    class Save(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                record["history"].setdefault(k, []).append(float(v))
            record["seconds"] = round(time.time() - start, 1)
            with open(path + ".tmp", "w") as f:
                json.dump(record, f)
            os.replace(path + ".tmp", path)

    model.fit(augmented_batches(x_train, y_train, batch_size, seed), epochs=epochs,
              validation_data=(x_test.astype("float32"), y_test), validation_batch_size=1000,
              callbacks=[Save()], verbose=2)
    print(f"{model_name}: test accuracy {100 * record['history']['val_accuracy'][-1]:.2f}% "
          f"after {epochs} epochs, {record['seconds']} s")


def plot(models, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, family in zip(axes, ("plain", "resnet")):
        for name in [m for m in models if m.startswith(family)]:
            rec = json.load(open(os.path.join(out_dir, f"{name}.json")))
            h = rec["history"]
            epochs = np.arange(1, len(h["accuracy"]) + 1)
            line, = ax.plot(epochs, 100 * (1 - np.array(h["accuracy"])), "--", lw=1)
            ax.plot(epochs, 100 * (1 - np.array(h["val_accuracy"])), color=line.get_color(),
                    lw=2, label=f"{name} (test {100 * (1 - h['val_accuracy'][-1]):.1f}%)")
        ax.set_title(f"{family} nets: dashed train error, bold test error")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 60)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("error (%)")
    fig.suptitle("CIFAR-10, 20k-image training subset: plain vs residual networks by depth")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "plain_vs_resnet.png"), dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet20")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=os.path.join(
        REPO, "..", "shared", "data", "cifar10-subset", "cifar10_jpg_test10000_train20000.zip"))
    p.add_argument("--out_dir", default=os.path.join(REPO, "bench", "results", "cifar_resnet"))
    p.add_argument("--plot", action="store_true", help="draw the curves of finished runs")
    args = p.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    models = args.models.split(",")
    if args.plot:
        plot(models, args.out_dir)
        return
    for name in models:
        train(name, args.epochs, args.data, args.out_dir, args.seed)


if __name__ == "__main__":
    main()
