r"""Trained DCGAN generators measured by several suite MNIST classifiers ("judges").

    python -m bench.dcgan_judges --generators=runs/dcgan_mnist \
        --judges=runs/mnist,runs/mnist_augment --data_dir=../shared/data/mnist

The classifier score (the Inception Score's formula) depends on how sure the judge is: real test
digits score 9.75 under the book's DeepConvNet and about 9.9 under "a good classifier" (the
bar's reference). This bench puts every generator (a train_dcgan model_dir: its
checkpoints/last.keras, the averaged generator when it has one) before every judge, with each
judge's floors (real test digits' score, Frechet distance of real test against real training
digits), on the same 10,000 latent vectors and the same 10,000 training digits the app uses
(suite.tasks.dcgan: seed + 2). Results: <out>.{md,json}.
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags

from bench import RESULTS, SHARED_DATA, cli, interleaved, machine


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("generators", None, "comma-separated train_dcgan model_dirs",
                        flag_values=fv)
    flags.DEFINE_string("judges", None, "comma-separated classifier model_dirs", flag_values=fv)
    flags.DEFINE_string("data_dir", os.path.join(SHARED_DATA, "mnist"),
                        "folder with the MNIST IDX .gz files", flag_values=fv)
    flags.DEFINE_integer("samples", 10000, "generated, real training and test images per judge",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "the DCGAN runs' --seed", flag_values=fv)
    flags.DEFINE_string("out", os.path.join(RESULTS, "dcgan_mnist", "judges"),
                        "path prefix of the .md and .json results", flag_values=fv)
    for name in ("generators", "judges"):
        flags.mark_flag_as_required(name, flag_values=fv)


def main(args):
    generators = [g for g in args.generators.split(",") if g]
    judges = [j for j in args.judges.split(",") if j]
    for path in generators:
        if not os.path.isfile(os.path.join(path, "checkpoints", "last.keras")):
            cli.usage_error(f"{path} has no checkpoints/last.keras: pass a train_dcgan model_dir")
    from suite.runtime.startup import load_tensorflow

    load_tensorflow()
    import keras

    from suite.data.generation import load_generation_images
    from suite.metrics import generative
    from suite.metrics.classifier_features import load_feature_classifier
    from suite.models import dcgan  # noqa: F401  (registers DCGAN for load_model)
    from suite.tasks.dcgan import generate

    train, test, _ = load_generation_images("mnist", mnist_dir=args.data_dir)
    rng = np.random.default_rng(args.seed + 2)  # as DcganTask._judge draws them
    latents = rng.normal(size=(args.samples, 100)).astype(np.float32)
    real = train[rng.permutation(len(train))[:args.samples]]
    test = test[:args.samples]
    images = {}
    for path in generators:
        gan = keras.models.load_model(os.path.join(path, "checkpoints", "last.keras"), compile=False)
        images[path] = generate(gan.sampler, latents)
    rows, payload = [], {"command": machine.command(__file__),
                         "machine": machine.describe(), "judges": {}}
    for judge_path in judges:
        judge = load_feature_classifier(judge_path, train.shape[1:])
        real_features, _ = judge(real)
        test_features, test_probs = judge(test)
        floor = {"real_test_classifier_score": generative.classifier_score(test_probs)[0],
                 "frechet_floor_test_vs_train": generative.frechet_distance(test_features,
                                                                           real_features)}
        entry = {"source": judge.source, **floor, "generators": {}}
        rows.append(f"| {judge_path} | real test digits (the floor) | "
                    f"{floor['real_test_classifier_score']:.2f} | "
                    f"{floor['frechet_floor_test_vs_train']:.2f} | |")
        for path, generated in images.items():
            features, probs = judge(generated)
            score, std = generative.classifier_score(probs)
            histogram = generative.class_histogram(probs, probs.shape[1])
            entry["generators"][path] = {
                "classifier_score": score, "classifier_score_std": std,
                "frechet_distance": generative.frechet_distance(features, real_features),
                "class_histogram": histogram.round(4).tolist()}
            rows.append(f"| {judge_path} | {path} | {score:.2f} ± {std:.2f} | "
                        f"{entry['generators'][path]['frechet_distance']:.1f} | "
                        f"{histogram.min():.1%} / {histogram.max():.1%} |")
            print(rows[-1], flush=True)
        payload["judges"][judge_path] = entry
    report = "\n".join([f"# DCGAN generators before several judges ({machine.label()})", "",
                        f"`{payload['command']}`", "",
                        "| judge | images | classifier score | Frechet distance | smallest / "
                        "largest class |", "|---|---|---:|---:|---|", *rows]) + "\n"
    interleaved.write(args.out, report, payload)


if __name__ == "__main__":
    cli.run(main, define_flags)
