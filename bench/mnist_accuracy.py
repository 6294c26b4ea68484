r"""Accuracy of the MNIST recipes over several seeds, and of their ensembles.

    python -m bench.mnist_accuracy --recipes=mnist,mnist_augment --seeds=0,1,2,3,4 \
        --data_dir=../shared/data/mnist --jobs=1

Each recipe is an app flagfile (apps/flags/<recipe>.flags), parsed by the app's own flags, so
the bench trains exactly what `python -m apps.train_mnist --flagfile=...` trains. Runs on any
Keras backend: with KERAS_BACKEND=jax it needs no TensorFlow (used on a lent GPU), with the
default TensorFlow backend it is the app's CPU path. One process per (recipe, seed), up to
--jobs at once; then the summary: per-recipe mean/spread and the averaged-softmax ensemble.
Runs already finished in --out_dir are kept, not trained again.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import flags

from bench import REPO, RESULTS, SHARED_DATA, cli


def host_augmented_batches(images, labels, batch_size, degrees, shift, seed):
    """The augmentation of build_augmentation (uniform rotation up to `degrees`, shift up to
    `shift` pixels, zero fill, bilinear), done in NumPy on the host.

    Keras's image layers are very slow inside a JAX model on accelerators (keras-team/keras#23229:
    ~60x slower steps measured on an H200), so GPU runs of the augmented recipe use this instead.
    """
    import keras

    n, h, w = images.shape[:3]
    ys, xs = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")

    class Augmented(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=3, use_multiprocessing=False)  # threads overlap the GPU
            self.epoch = 0
            self.order = np.random.default_rng([seed, 0]).permutation(n)

        def __len__(self):
            return n // batch_size

        def __getitem__(self, i):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            b = len(idx)
            rng = np.random.default_rng([seed, self.epoch, i])  # thread-safe, reproducible
            theta = np.deg2rad(rng.uniform(-degrees, degrees, b))[:, None, None]
            dy, dx = (rng.uniform(-shift, shift, (2, b))[..., None, None])
            # inverse map: output pixel -> source coordinate
            sy = np.cos(theta) * ys - np.sin(theta) * xs - dy + (h - 1) / 2
            sx = np.sin(theta) * ys + np.cos(theta) * xs - dx + (w - 1) / 2
            y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
            fy, fx = sy - y0, sx - x0
            src = images[idx, ..., 0].astype("float32")
            out = np.zeros((b, h, w), "float32")
            for oy, ox, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                               (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
                yy, xx = y0 + oy, x0 + ox
                ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                vals = src[np.arange(b)[:, None, None], yy.clip(0, h - 1), xx.clip(0, w - 1)]
                out += np.where(ok, vals, 0.0) * wt
            return out[..., None], labels[idx]

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(n)

    return Augmented()


def run_stem(out_dir: str, recipe: str, seed: int) -> str:
    """Where one run's files go: <stem>.json (its result, written last), .probs.npy, .log."""
    return os.path.join(out_dir, f"{recipe}-seed{seed}")


def train_one(recipe: str, seed: int, data_dir: str, out_dir: str, extra: list[str],
              verify: bool = True, host_augment: bool = False) -> dict:
    import keras

    from suite.data.mnist import load_mnist_arrays
    from suite.models.deep_convnet import build_augmentation, build_deep_convnet
    from suite.runtime.flags import config_from_flags, define_flags
    from suite.runtime.optim import make_optimizer
    from suite.tasks.mnist import MnistConfig

    f = flags.FlagValues()  # the app's own flags and defaults, parsed from its flagfile
    define_flags(f, MnistConfig)
    f([sys.argv[0], f"--flagfile={os.path.join(REPO, 'apps', 'flags', recipe + '.flags')}",
       f"--seed={seed}", *extra])
    app_config = config_from_flags(f, MnistConfig)
    config = app_config.schedule
    (x_train, y_train), (x_test, y_test) = load_mnist_arrays(data_dir, verify)
    x_train, x_test = x_train.astype("float32"), x_test.astype("float32")
    keras.utils.set_random_seed(seed)
    steps = len(x_train) // config.batch_size
    in_model = f.augment and not host_augment
    aug = build_augmentation(f.rotation_degrees, f.shift_pixels, seed) if in_model else None
    model = build_deep_convnet(augmentation=aug, dropout=f.dropout)
    model.compile(optimizer=make_optimizer(app_config.optimizer, steps, config.epochs),
                  loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.time()
    result = {"recipe": recipe, "seed": seed, "epochs": config.epochs,
              "backend": keras.backend.backend(), "host_augment": bool(f.augment and host_augment),
              "dropout": f.dropout,
              "history": {}}
    stem = run_stem(out_dir, recipe, seed)

    class Record(keras.callbacks.Callback):  # partial curves survive a killed run
        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                result["history"].setdefault(k, []).append(float(v))
            with open(stem + ".partial.json", "w") as fh:
                json.dump(result, fh)

    if f.augment and host_augment:
        data = host_augmented_batches(x_train, y_train, config.batch_size, f.rotation_degrees,
                                      f.shift_pixels, seed)
        model.fit(data, epochs=config.epochs, validation_data=(x_test, y_test),
                  callbacks=[Record()], verbose=2)
    else:
        model.fit(x_train, y_train, batch_size=config.batch_size, epochs=config.epochs,
                  validation_data=(x_test, y_test), shuffle=True, callbacks=[Record()], verbose=2)
    probs = model.predict(x_test, batch_size=1000, verbose=0)
    result.update(test_accuracy=float(np.mean(probs.argmax(-1) == y_test)),
                  train_seconds=round(time.time() - start, 1))
    np.save(stem + ".probs.npy", probs)
    with open(stem + ".json", "w") as fh:
        json.dump(result, fh)
    return result


def runs_to_train(recipes: list[str], seeds: list[int], out_dir: str) -> list[tuple[str, int]]:
    """The (recipe, seed) runs without a finished result (.json and .probs.npy) in out_dir: a
    rerun, or one with more seeds (a later session's GPU time), trains only those, and the
    ensemble averages old and new members alike."""
    def done(recipe, seed):
        stem = run_stem(out_dir, recipe, seed)
        return os.path.exists(stem + ".json") and os.path.exists(stem + ".probs.npy")

    return [(r, s) for r in recipes for s in seeds if not done(r, s)]


def summarize(recipes: list[str], seeds: list[int], data_dir: str, out_dir: str,
              verify: bool = True) -> dict:
    from suite.data.mnist import load_mnist_arrays

    y_test = load_mnist_arrays(data_dir, verify)[1][1]
    summary = {}
    for recipe in recipes:
        runs = [json.load(open(run_stem(out_dir, recipe, s) + ".json")) for s in seeds]
        accs = np.array([r["test_accuracy"] for r in runs])
        probs = np.mean([np.load(run_stem(out_dir, recipe, s) + ".probs.npy")
                         for s in seeds], axis=0)
        summary[recipe] = {
            "seeds": seeds, "accuracies": accs.tolist(), "mean": float(accs.mean()),
            "std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
            "min": float(accs.min()), "max": float(accs.max()),
            "ensemble_accuracy": float(np.mean(probs.argmax(-1) == y_test)),
            "epochs": runs[0]["epochs"], "backend": runs[0]["backend"],
            "train_seconds_median": float(np.median([r["train_seconds"] for r in runs])),
        }
    return summary


def to_markdown(summary: dict) -> str:
    lines = ["| recipe | epochs | seeds | test accuracy per seed (%) | mean ± std (%) | "
             "ensemble of all seeds (%) |", "|---|---|---|---|---|---|"]
    for recipe, s in summary.items():
        per_seed = ", ".join(f"{100 * a:.2f}" for a in s["accuracies"])
        lines.append(f"| {recipe} | {s['epochs']} | {len(s['seeds'])} | {per_seed} | "
                     f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} | "
                     f"{100 * s['ensemble_accuracy']:.2f} |")
    return "\n".join(lines) + "\n"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("recipes", "mnist,mnist_augment",
                        "comma-separated flagfile names in apps/flags/", flag_values=fv)
    flags.DEFINE_string("seeds", "0,1,2", "comma-separated seeds", flag_values=fv)
    flags.DEFINE_string("data_dir", os.path.join(SHARED_DATA, "mnist"),
                        "folder with the four official MNIST IDX .gz files", flag_values=fv)
    flags.DEFINE_string("out_dir", os.path.join(RESULTS, "mnist_accuracy"),
                        "where every run's files and the summary go", flag_values=fv)
    flags.DEFINE_integer("jobs", 1, "runs trained at once (processes)", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("one", None, "internal: train this recipe:seed alone (what each "
                        "process of --jobs runs)", flag_values=fv)
    flags.DEFINE_boolean("no_verify", False, "accept IDX files that are not the official ones "
                         "(smoke tests)", flag_values=fv)
    flags.DEFINE_boolean("host_augment", False, "augment in NumPy on the host instead of in the "
                         "model (GPU + JAX)", flag_values=fv)
    flags.DEFINE_string("extra", "", "extra app flags for every run, space-separated",
                        flag_values=fv)


def main(args):
    os.makedirs(args.out_dir, exist_ok=True)
    extra = args.extra.split()
    if args.one:
        recipe, seed = args.one.split(":")
        r = train_one(recipe, int(seed), args.data_dir, args.out_dir, extra, not args.no_verify,
                      args.host_augment)
        print(f"{recipe} seed {seed}: {100 * r['test_accuracy']:.2f}% in {r['train_seconds']} s")
        return
    recipes, seeds = args.recipes.split(","), [int(s) for s in args.seeds.split(",")]
    pending = runs_to_train(recipes, seeds, args.out_dir)
    for r, s in sorted(set((r, s) for r in recipes for s in seeds) - set(pending)):
        print(f"{r} seed {s}: kept from {args.out_dir} (delete its .json to train it again)")
    running = []
    while pending or running:
        while pending and len(running) < args.jobs:
            r, s = pending.pop(0)
            cmd = [sys.executable, "-m", "bench.mnist_accuracy", f"--one={r}:{s}",
                   f"--data_dir={args.data_dir}",
                   f"--out_dir={args.out_dir}", f"--extra={args.extra}",
                   *(["--no_verify"] if args.no_verify else []),
                   *(["--host_augment"] if args.host_augment else [])]
            log = open(run_stem(args.out_dir, r, s) + ".log", "w")
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            running.append((r, s, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                   env=env)))
        time.sleep(1)
        for item in list(running):
            if item[2].poll() is not None:
                running.remove(item)
                print(f"{item[0]} seed {item[1]} finished (exit {item[2].returncode})", flush=True)
                if item[2].returncode:
                    sys.exit(f"run {item[0]}:{item[1]} failed; see its .log in {args.out_dir}")
    summary = summarize(recipes, seeds, args.data_dir, args.out_dir, not args.no_verify)
    with open(os.path.join(args.out_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    table = to_markdown(summary)
    with open(os.path.join(args.out_dir, "summary.md"), "w") as fh:
        fh.write(table)
    print(table)


if __name__ == "__main__":
    cli.run(main, define_flags)
