r"""Faster R-CNN on the raccoon set: the backbone from a suite classifier against random
initialisation in the same budget, training throughput and peak memory, and the exported model's
latency at batch 1.

    python -m apps.train_classifier --flagfile=apps/flags/cifar_resnet18_backbone.flags \
        --dataset=../shared/data/cifar10-subset/cifar10_jpg_test10000_train20000.zip
    python -m bench.detector_raccoon [--skip_training] [--steps=30]

1. Runs the two presets one after the other (apps/flags/raccoon_faster_rcnn.flags, backbone from
   runs/cifar_resnet18; raccoon_faster_rcnn_scratch.flags, random), each as its own process, and
   takes their training time from Keras's epoch lines ("80/80 - 190s"), validation included.
2. Times --steps training steps (after 5 warm-up steps) of the preset's model on its augmented
   batches in this process: images per second, and the process's peak resident memory.
3. Loads the first preset's export and times serving_default on one held-out JPEG (batch 1,
   median of 20 after 3 warm-up calls), bytes in, decoded boxes out.

Writes bench/results/raccoon_detection/results.json and README.md. Run on a quiet machine: the
training times are what the bar (mAP@0.5 >= 0.30 within 60 minutes) is about.
"""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time

import numpy as np
from absl import flags

from bench import REPO, RESULTS, SHARED_DATA, cli, machine

PRESETS = {"classifier_backbone": "raccoon_faster_rcnn",
           "random_init": "raccoon_faster_rcnn_scratch"}
EPOCH_LINE = re.compile(r"^\s*(\d+)/(\d+) - (\d+)s - ")
KEYS = ("map", "map_50", "map_75", "recall_100", "detection_ms_per_image")


def train(preset: str) -> dict:
    """Runs one preset to completion; its results and training seconds from the epoch lines."""
    command = [sys.executable, "-m", "apps.train_detector", f"--flagfile=apps/flags/{preset}.flags"]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO})
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    seconds = [int(m.group(3)) for m in map(EPOCH_LINE.match, done.stdout.splitlines()) if m]
    return {"command": " ".join(["python"] + command[1:]), "training_seconds": sum(seconds),
            "epoch_seconds": seconds, "command_seconds": round(wall, 1)}


def results_of(model_dir: str) -> dict:
    with open(os.path.join(REPO, model_dir, "results.json")) as f:
        return json.load(f)


def throughput(flagfile: str, steps: int) -> dict:
    """Training images per second of the preset's model on its augmented batches."""
    import keras

    from suite.data import detection_pipeline as pipeline
    from suite.models.faster_rcnn import build_faster_rcnn, compile_faster_rcnn
    from suite.runtime.flags import config_from_args
    from suite.tasks.detection import DetectorConfig

    c = config_from_args(DetectorConfig, [f"--flagfile={flagfile}", "--init_from="])
    from suite.data.detection import load_detection

    data = load_detection(c.dataset, None, c.test_files)
    arrays = pipeline.letterboxed_arrays(data.train, c.image_size,
                                         pipeline.max_boxes_of(data.train, data.test))
    batches = pipeline.train_dataset(arrays, c.schedule.batch_size, seed=0)
    model = build_faster_rcnn(data.num_classes, **c.network())
    compile_faster_rcnn(model, keras.optimizers.SGD(0.001, momentum=0.9))
    model.fit(batches, steps_per_epoch=5, epochs=1, verbose=0)  # traces
    started = time.perf_counter()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
    elapsed = time.perf_counter() - started
    return {"image_size": c.image_size, "batch_size": c.schedule.batch_size, "steps": steps,
            "images_per_second": round(steps * c.schedule.batch_size / elapsed, 2),
            "seconds_per_step": round(elapsed / steps, 3),
            "peak_resident_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "parameters": int(model.count_params())}


def export_latency(export_dir: str, image_path: str, repeats: int = 20) -> dict:
    import tensorflow as tf

    loaded = tf.saved_model.load(export_dir)
    serve = loaded.signatures["serving_default"]
    encoded = tf.constant([open(image_path, "rb").read()])
    for _ in range(3):
        out = serve(image_bytes=encoded)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = serve(image_bytes=encoded)
        times.append(time.perf_counter() - started)
    return {"export": os.path.relpath(export_dir, REPO), "image": os.path.basename(image_path),
            "batch": 1, "median_ms": round(1000 * float(np.median(times)), 1),
            "detections": int(out["num_detections"].numpy()[0])}


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_boolean("skip_training", False, "Use the finished runs as they are (their "
                         "training times are then read from the last bench results).",
                         flag_values=fv)
    flags.DEFINE_integer("steps", 30, "timed training steps (after 5 warm-up steps)",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_string("out", os.path.join(RESULTS, "raccoon_detection"),
                        "folder of results.json and README.md", flag_values=fv)


def main(args) -> None:
    from suite.runtime.startup import load_tensorflow

    load_tensorflow()
    os.makedirs(args.out, exist_ok=True)
    previous_path = os.path.join(args.out, "results.json")
    previous = json.load(open(previous_path)) if os.path.isfile(previous_path) else {}
    report = {"machine": machine.describe(), "runs": {}}
    for name, preset in PRESETS.items():
        timing = (previous.get("runs", {}).get(name, {}).get("timing") if args.skip_training
                  else train(preset))
        results = results_of(f"runs/{preset}")
        report["runs"][name] = {"timing": timing, **{k: results.get(k) for k in KEYS},
                                "init_from": results.get("init_from"),
                                "backbone_batch_norm": results.get("backbone_batch_norm"),
                                "epochs": results.get("epochs")}
        print(name, json.dumps(report["runs"][name]), flush=True)
    report["training_throughput"] = throughput("apps/flags/raccoon_faster_rcnn.flags", args.steps)
    print(json.dumps(report["training_throughput"]), flush=True)
    first = results_of(f"runs/{PRESETS['classifier_backbone']}")
    test_image = os.path.join(SHARED_DATA, "raccoon-detection", "images",
                              first["held_out_files"][0])
    report["export_latency"] = export_latency(first["export"], test_image)
    print(json.dumps(report["export_latency"]), flush=True)
    with open(previous_path, "w") as f:
        json.dump(report, f, indent=1)
    write_readme(report, os.path.join(args.out, "README.md"))


def write_readme(report: dict, path: str) -> None:
    runs, speed, latency = report["runs"], report["training_throughput"], report["export_latency"]
    lines = [
        "Faster R-CNN (ResNet-18 pyramid, 256x256) on the raccoon set's 40 held-out images "
        f"({machine.label(report['machine'])}); `{machine.command(__file__, [])}`.", "",
        "| backbone start | mAP@0.5 | COCO mAP | mAP@0.75 | recall@100 | training (min) |",
        "|---|---|---|---|---|---|"]
    for name, run in runs.items():
        minutes = run["timing"]["training_seconds"] / 60 if run["timing"] else float("nan")
        lines.append(f"| {name.replace('_', ' ')} | {run['map_50']:.3f} | {run['map']:.3f} | "
                     f"{run['map_75']:.3f} | {run['recall_100']:.3f} | {minutes:.1f} |")
    lines += ["", f"Training: {speed['images_per_second']} images/s ({speed['seconds_per_step']} "
              f"s per step of {speed['batch_size']}), peak resident memory "
              f"{speed['peak_resident_mb']} MB, {speed['parameters']:,} parameters.",
              f"Export, batch 1 (JPEG bytes in, decoded boxes out): {latency['median_ms']} ms "
              "median."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    cli.run(main, define_flags)
