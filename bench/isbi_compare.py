r"""ISBI 2012 membranes: trained segmenters side by side with a thresholding baseline.

    python -m bench.isbi_compare --runs=runs/isbi_fcn32s,runs/isbi_fcn8s,runs/isbi_unet \
        --dataset=../shared/data/isbi2012-em-membrane/train --out=bench/results/isbi

Reads each run's results.json (its held-out mIoU, pixel error and Rand error, computed by the
app on images 24-29) and its checkpoints/last.keras (to draw a held-out image), and adds the
baseline every learned model must beat: one global gray-level threshold (pixels darker than it
are membrane), the one with the lowest pixel error on the 24 training images, plus Otsu's
threshold per image. Writes <out>/compare.md, compare.json and compare.png (a held-out crop:
input | truth | threshold | each run; then the three scores as bars).
"""
from __future__ import annotations

import json
import os

import numpy as np
from absl import flags

from bench import cli

CROP = 192  # side of the drawn crop of held-out image 0


def threshold_scores(data, boundary_class: int = 0):
    """The best global threshold on the training images, and Otsu per image, on held-out."""
    from skimage.filters import threshold_otsu

    from suite.metrics import segmentation as metrics

    def predict(image, threshold):  # dark pixels are membranes (class 0), the rest cells
        return np.where(image[..., 0] < threshold, boundary_class, 1 - boundary_class)

    errors = [np.mean([np.mean(predict(im, t) != m) for im, m in
                       zip(data.train.images, data.train.masks)]) for t in range(256)]
    best = int(np.argmin(errors))
    out = {}
    for name, fn in (("global threshold", lambda im: predict(im, best)),
                     ("Otsu threshold", lambda im: predict(im, threshold_otsu(im[..., 0])))):
        predictions = [fn(im).astype(np.uint8) for im in data.test.images]
        matrix = sum(metrics.confusion(t, p, 2) for t, p in zip(data.test.masks, predictions))
        out[name] = {**metrics.class_scores(matrix),
                     **metrics.mean_isbi_scores(data.test.masks, predictions, boundary_class),
                     "prediction": predictions[0]}
    out["global threshold"]["threshold"] = best
    return out


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("runs", None, "comma-separated model_dirs", flag_values=fv)
    flags.DEFINE_string("dataset", "../shared/data/isbi2012-em-membrane/train",
                        "the ISBI training folder the runs trained on", flag_values=fv)
    flags.DEFINE_integer("held_out", 6, "its last images the runs held out (as their "
                         "--held_out)", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("out", "bench/results/isbi", "folder of compare.md, compare.json and "
                        "compare.png", flag_values=fv)
    flags.mark_flag_as_required("runs", flag_values=fv)


def main(args):
    import keras
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import suite.models.dense_prediction  # noqa: F401 - registers the layers the models use
    from suite.data.segmentation import load_mask_folder
    from suite.viz.segmentation import palette

    data = load_mask_folder(args.dataset, ["membrane", "cell"], [0, 255], args.held_out)
    rows = threshold_scores(data)
    for run in args.runs.split(","):
        results = json.load(open(os.path.join(run, "results.json")))
        model = keras.models.load_model(os.path.join(run, "checkpoints", "last.keras"))
        image = data.test.images[0][None].astype(np.float32)
        prediction = np.argmax(model.predict(image, verbose=0)[0], -1).astype(np.uint8)
        rows[results["model"]] = {k: results[k] for k in ("mean_iou", "pixel_accuracy",
                                                          "pixel_error", "rand_error",
                                                          "per_class_iou")}
        rows[results["model"]].update(prediction=prediction, run=run,
                                      run_seconds=results.get("seconds"),
                                      steps=results["epochs"] * results["steps_per_epoch"],
                                      parameters=int(model.count_params()))

    os.makedirs(args.out, exist_ok=True)
    lines = ["| method | pixel error | Rand error | mIoU | membrane IoU | training (whole run) |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        training = (f"{r['steps']} steps, {r['run_seconds'] / 60:.1f} min"
                    if r.get("run_seconds") else "none")
        lines.append(f"| {name} | {r['pixel_error']:.4f} | {r['rand_error']:.4f} | "
                     f"{r['mean_iou']:.4f} | {r['per_class_iou'][0]:.4f} | {training} |")
    with open(os.path.join(args.out, "compare.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "compare.json"), "w") as f:
        json.dump({n: {k: v for k, v in r.items() if k != "prediction"} for n, r in rows.items()},
                  f, indent=1)
    print("\n".join(lines))

    colors = palette(2)
    panels = [("input", np.repeat(data.test.images[0][:CROP, :CROP], 3, -1)),
              ("truth", colors[data.test.masks[0][:CROP, :CROP]])]
    panels += [(name, colors[r["prediction"][:CROP, :CROP]]) for name, r in rows.items()]
    fig = plt.figure(figsize=(2.2 * len(panels), 5.4), layout="constrained")
    for i, (name, picture) in enumerate(panels):
        ax = fig.add_subplot(2, len(panels), i + 1)
        ax.imshow(picture)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    names = list(rows)
    for j, key in enumerate(("pixel_error", "rand_error", "mean_iou")):
        ax = fig.add_subplot(2, 3, 4 + j)
        ax.bar(range(len(names)), [rows[n][key] for n in names], color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(key.replace("_", " ") + (" (higher is better)" if key == "mean_iou"
                                               else " (lower is better)"), fontsize=8)
    fig.suptitle(f"ISBI 2012 membranes, held-out images {data.test.names[0].split('/')[-1]}"
                 f"..{data.test.names[-1].split('/')[-1]} (crop of the first)", fontsize=9)
    fig.savefig(os.path.join(args.out, "compare.png"), dpi=110)
    print(f"wrote {args.out}/compare.md, compare.json, compare.png")


if __name__ == "__main__":
    cli.run(main, define_flags)
