r"""A detector preset's held-out mAP against training minutes, drawn after the run.

    python -m bench.detector_curve --flagfile=apps/flags/raccoon_faster_rcnn_60min.flags
    python -m bench.detector_curve --flagfile=... --skip_training   # the finished run as it is

1. Runs the preset (`python -m apps.train_detector --flagfile=<flagfile>
   --keep_checkpoints_every=<k> --noexport`) in its own process, as a user would: the app
   chooses its epoch on its validation images and scores the test images once.
2. After it ends, scores every kept epoch-NNN.keras on the test images through the app's one
   inference path (`suite.models.faster_rcnn.detect`, pycocotools): the curve of test mAP@0.5
   and mAP@0.75 against the minutes since the run started (start-up and validation included).
   Nothing in the curve chose anything; the app's own choice is marked on it.
3. Checks what the chosen model returns at the export's score threshold: detections per test
   image against true objects, and same-class pairs overlapping above the model's NMS IoU; and,
   through the real export (`python -m apps.export --model_dir=<run> --checkpoint=best`), what
   `serving_default` returns for the first 10 test images (their pixels as PNG bytes).

Writes <out>/results.json (command, machine, date, commit, every point), curve.png, and
boxes.png: the first test images' true and detected boxes on blank canvases of their sizes (the
raccoon photos may not be redistributed; the run's own gallery.png has them).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import flags

from bench import REPO, RESULTS, cli, machine
from bench.preset_run import commit


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("flagfile", None, "the detector preset (passed to apps.train_detector)",
                        flag_values=fv)
    flags.DEFINE_integer("keep_every", 3, "keep (and score) every k-th epoch's model",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean("skip_training", False, "score the finished run in the preset's "
                         "model_dir as it is", flag_values=fv)
    flags.DEFINE_integer("boxes_images", 8, "test images drawn in boxes.png", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("out", None, "results folder; default bench/results/raccoon_detection/"
                        "<the flagfile's name>", flag_values=fv)
    flags.mark_flag_as_required("flagfile", flag_values=fv)


def preset_config(flagfile: str):
    from suite.runtime.flags import config_from_args
    from suite.tasks.detection import DetectorConfig

    return config_from_args(DetectorConfig, [f"--flagfile={flagfile}"])


def train(flagfile: str, keep_every: int) -> dict:
    command = [sys.executable, "-m", "apps.train_detector", f"--flagfile={flagfile}",
               f"--keep_checkpoints_every={keep_every}", "--noexport"]
    started = time.time()
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed with exit code {done.returncode}")
    return {"command": " ".join(["python"] + command[1:]), "start_unix": started,
            "wall_seconds": round(time.time() - started, 1)}


def overlapping_pairs(boxes: np.ndarray, classes: np.ndarray, iou: float) -> int:
    """Same-class pairs of `boxes` (xyxy) whose IoU exceeds `iou`."""
    count = 0
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if classes[i] != classes[j]:
                continue
            a, b = boxes[i], boxes[j]
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = w * h
            union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
            count += bool(union > 0 and inter / union > iou)
    return count


def returned(found: list[dict], threshold: float, iou: float, true_boxes: list) -> dict:
    kept = [f["scores"] >= max(threshold, 1e-9) for f in found]
    counts = [int(k.sum()) for k in kept]
    pairs = [overlapping_pairs(f["boxes"][k], f["classes"][k], iou) for f, k in zip(found, kept)]
    return {"score_threshold": threshold, "nms_iou": iou,
            "detections_per_image": round(float(np.mean(counts)), 3),
            "true_objects_per_image": round(float(np.mean([len(b) for b in true_boxes])), 3),
            "overlapping_same_class_pairs": int(sum(pairs)),
            "overlapping_pairs_first_10_images": int(sum(pairs[:10]))}


def export_check(run_dir: str, test, iou: float, images: int = 10) -> dict:
    """The run's best model exported as a user would, and `serving_default` asked about the
    first `images` test files' bytes: detections returned and same-class pairs over `iou`."""
    import tensorflow as tf

    export_base = os.path.join(run_dir, "export_check")
    done = subprocess.run([sys.executable, "-m", "apps.export", f"--model_dir={run_dir}",
                           "--checkpoint=best", f"--export_dir={export_base}"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"apps.export failed:\n{done.stderr[-3000:]}")
    name = os.listdir(export_base)[0]
    version = max(os.listdir(os.path.join(export_base, name)), key=int)
    serve = tf.saved_model.load(os.path.join(export_base, name, version)).signatures[
        "serving_default"]
    counts, pairs = [], []
    for image in test.images[:images]:  # the decoded pixels, losslessly as PNG
        out = serve(image_bytes=tf.reshape(tf.io.encode_png(image), [1]))
        kept = out["classes"][0].numpy() > 0
        boxes, classes = out["boxes"][0].numpy()[kept], out["classes"][0].numpy()[kept]
        counts.append(int(kept.sum()))
        pairs.append(overlapping_pairs(boxes, classes, iou))
    return {"images": len(counts), "detections": counts,
            "true_objects": [len(b) for b in test.boxes[:images]],
            "overlapping_same_class_pairs": int(sum(pairs)), "nms_iou": iou}


def draw_curve(points: list[dict], chosen_epoch, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    minutes = [p["minutes"] for p in points]
    ax.plot(minutes, [p["test"]["map_50"] for p in points], "o-", label="test mAP@0.5")
    ax.plot(minutes, [p["test"]["map_75"] for p in points], "s-", label="test mAP@0.75")
    ax.plot(minutes, [p["val_map_50"] for p in points], "^--",
            label="validation mAP@0.5 (chooses the epoch)")
    for p in points:
        if p["epoch"] == chosen_epoch:
            ax.axvline(p["minutes"], color="grey", ls=":", label=f"chosen: epoch {chosen_epoch}")
    ax.set_xlabel("minutes since the run started (2-core CPU)")
    ax.set_ylabel("mAP")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_boxes(test, found: list[dict], threshold: float, count: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    count = min(count, test.count)
    cols = 4
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(count):
        ax = axes.flat[i]
        h, w = test.images[i].shape[:2]
        ax.add_patch(Rectangle((0, 0), w, h, color="#dddddd"))
        for box in test.boxes[i]:
            ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                   ec="black", ls="--", lw=1.5))
        f = found[i]
        for box, score in zip(f["boxes"], f["scores"]):
            if score >= max(threshold, 1e-9):
                ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1],
                                       fill=False, ec="tab:orange", lw=2))
                ax.text(box[0], box[1], f"{score:.2f}", color="tab:orange", fontsize=7,
                        va="bottom")
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_aspect("equal")
        ax.set_title(os.path.basename(test.names[i]), fontsize=8)
    fig.suptitle(f"true boxes dashed black; detections at score >= {threshold} orange")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(args):
    name = os.path.splitext(os.path.basename(args.flagfile))[0]
    out = args.out or os.path.join(RESULTS, "raccoon_detection", name)
    config = preset_config(args.flagfile)
    run_dir = os.path.join(REPO, config.runtime.model_dir)
    info = {**machine.describe(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": commit()}
    if args.skip_training:
        with open(os.path.join(out, "results.json")) as f:
            training = json.load(f)["training"]
    else:
        training = train(args.flagfile, args.keep_every)
    info["load_1min_at_end_of_training"] = round(os.getloadavg()[0], 2)

    from suite.data.detection import load_detection
    from suite.tasks.detection import DetectionTask

    c = config
    data = load_detection(c.dataset, list(c.class_names) or None, c.test_files,
                          c.held_out_every, c.data_dir, c.limit)
    task = DetectionTask(c)
    with open(os.path.join(run_dir, "results.json")) as f:
        app_results = json.load(f)
    chosen = (app_results.get("selection") or {}).get("epoch")
    points = []
    for path in sorted(glob.glob(os.path.join(run_dir, "checkpoints", "epoch-*.keras"))):
        with open(path[:-len(".keras")] + ".json") as f:
            kept = json.load(f)
        scores, _, _ = task._scored(DetectionTask.load_checkpoint(path), data.test)
        points.append({"epoch": kept["epoch"],
                       "minutes": round((kept["saved_unix"] - training["start_unix"]) / 60, 2),
                       "val_map_50": kept["logs"].get("val_map_50"),
                       "test": {k: round(float(scores[k]), 4)
                                for k in ("map", "map_50", "map_75", "recall_100")}})
        print(f"epoch {kept['epoch']} ({points[-1]['minutes']:.1f} min): test mAP@0.5 "
              f"{scores['map_50']:.4f}, mAP@0.75 {scores['map_75']:.4f}", flush=True)
    best = DetectionTask.load_checkpoint(os.path.join(run_dir, "checkpoints", "best.keras"))
    _, found, _ = task._scored(best, data.test)
    nms_iou = float(best.get_config().get("nms_iou", 0.5))
    check = returned(found, c.score_threshold, nms_iou, data.test.boxes)
    check["export"] = export_check(run_dir, data.test, nms_iou)
    os.makedirs(out, exist_ok=True)
    draw_curve(points, chosen, os.path.join(out, "curve.png"))
    draw_boxes(data.test, found, c.score_threshold, args.boxes_images,
               os.path.join(out, "boxes.png"))
    keep = ("map", "map_50", "map_75", "recall_100", "selection", "epochs", "seconds",
            "detection_ms_per_image")
    results = {"command": machine.command(__file__), "training": training,
               "machine": info, "app_results": {k: app_results.get(k) for k in keep},
               "points": points, "returned_at_threshold": check,
               "load_1min_at_end": round(os.getloadavg()[0], 2)}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    for copied in ("history.csv", "learning_curves.png"):
        if os.path.exists(os.path.join(run_dir, copied)):
            shutil.copyfile(os.path.join(run_dir, copied), os.path.join(out, copied))
    print(json.dumps({"test": {k: app_results.get(k) for k in ("map_50", "map_75")},
                      "chosen_epoch": chosen, **check}))


if __name__ == "__main__":
    cli.run(main, define_flags)
