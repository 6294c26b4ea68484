"""Trained DCGAN generators measured by several suite MNIST classifiers ("judges").

    python bench/dcgan_judges.py --generators=runs/dcgan_mnist \
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

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import suite  # noqa: E402,F401  (first: the suite's oneDNN default before TensorFlow loads)
from suite.runtime.startup import load_tensorflow  # noqa: E402

load_tensorflow()
import keras  # noqa: E402

import machine  # noqa: E402
from suite.data.generation import load_generation_images  # noqa: E402
from suite.metrics import generative  # noqa: E402
from suite.metrics.classifier_features import load_feature_classifier  # noqa: E402
from suite.models import dcgan  # noqa: E402,F401  (registers DCGAN for load_model)
from suite.tasks.dcgan import generate  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generators", required=True, help="comma-separated train_dcgan model_dirs")
    p.add_argument("--judges", required=True, help="comma-separated classifier model_dirs")
    p.add_argument("--data_dir", default=os.path.join(HERE, "..", "..", "shared", "data", "mnist"))
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0, help="the DCGAN runs' --seed")
    p.add_argument("--out", default=os.path.join(HERE, "results", "dcgan_mnist", "judges"))
    args = p.parse_args(argv)
    generators = [g for g in args.generators.split(",") if g]
    judges = [j for j in args.judges.split(",") if j]
    for path in generators:
        if not os.path.isfile(os.path.join(path, "checkpoints", "last.keras")):
            p.error(f"{path} has no checkpoints/last.keras: pass a train_dcgan model_dir")
    train, test, _ = load_generation_images("mnist", mnist_dir=args.data_dir)
    rng = np.random.default_rng(args.seed + 2)  # as DcganTask._judge draws them
    latents = rng.normal(size=(args.samples, 100)).astype(np.float32)
    real = train[rng.permutation(len(train))[:args.samples]]
    test = test[:args.samples]
    images = {}
    for path in generators:
        gan = keras.models.load_model(os.path.join(path, "checkpoints", "last.keras"), compile=False)
        images[path] = generate(gan.sampler, latents)
    rows, payload = [], {"command": machine.command(__file__, argv),
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
    print("\n" + report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(report)
    with open(args.out + ".json", "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}.md and {args.out}.json")


if __name__ == "__main__":
    main()
