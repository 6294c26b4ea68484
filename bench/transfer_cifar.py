r"""Transfer learning on CIFAR-10: what pretraining on 5 classes buys 5 new classes with few labels.

    python -m bench.transfer_cifar \
        --data=../shared/data/cifar10-subset/cifar10_jpg_test10000_train20000.zip
    python -m bench.transfer_cifar --smoke --out=/tmp/transfer_cifar_smoke.md   # ~2 min check

1. Pretrain ResNet-20 on airplane, automobile, bird, cat, deer (every training image of those
   classes) with the CIFAR recipe of apps/flags/cifar_resnet20.flags.
2. On dog, frog, horse, ship, truck with only --per_class labelled training images each, train
   three ways from the same images: from scratch; fine-tuning every layer from step 1 (10x lower
   learning rate); training only a new head on step 1's frozen backbone.
3. Test all on every test image of the 5 new classes; report mean and spread over --seeds and the
   gain over scratch, in <out> (Markdown) and <out>.json.

Every run is apps.train_classifier's run() in its own model_dir under --work_dir, so an
interrupted bench resumes where it stopped and finished runs are not retrained.
"""
from __future__ import annotations

import json
import os
import platform
import time

import numpy as np
from absl import flags

from bench import REPO, RESULTS, SHARED_DATA, cli, machine

PRETRAIN_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
TARGET_CLASSES = ("dog", "frog", "horse", "ship", "truck")


def train(model_dir, epochs, steps, batch_size, lr, seed, data, **options) -> dict:
    """The classifier app's task through the runner with the CIFAR ResNet recipe: SGD momentum
    0.9, lr / 10 at 50% and 75% of the epochs."""
    from suite.runtime.config import OptimizerConfig, RuntimeConfig, ScheduleConfig
    from suite.runtime.runner import run_task
    from suite.tasks.classifier import ClassifierConfig, ClassifierTask

    decays = tuple(sorted({max(1, int(epochs * f)) for f in (0.5, 0.75)} - {epochs})) or (epochs,)
    optimizer = OptimizerConfig(optimizer="momentum", momentum=0.9, learning_rate=lr,
                                lr_schedule="step", lr_decay_epochs=decays)
    config = ClassifierConfig(runtime=RuntimeConfig(model_dir, seed=seed, export=False),
                              schedule=ScheduleConfig(epochs, steps, batch_size),
                              optimizer=optimizer, **options)
    return run_task(ClassifierTask(config, data_override=data), config.runtime)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("data", os.path.join(SHARED_DATA, "cifar10-subset",
                                             "cifar10_jpg_test10000_train20000.zip"),
                        "any --dataset of the app holding the 10 CIFAR-10 classes (zip, folder, "
                        "cifar10)", flag_values=fv)
    flags.DEFINE_string("model", "resnet20", "the classifier app's --model", flag_values=fv)
    flags.DEFINE_integer("per_class", 50, "labelled images per new class", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("pretrain_epochs", 30, "epochs of pretraining on the first 5 classes",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("finetune_epochs", 8, "evaluation intervals of --finetune_steps steps "
                         "each", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("finetune_steps", 50, "steps per fine-tuning interval", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("finetune_batch", 50, "batch size on the new classes", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_float("finetune_lr", 0.01, "learning rate of fine-tuning every layer",
                       flag_values=fv)
    flags.DEFINE_float("scratch_lr", 0.1, "learning rate from scratch and of the new head",
                       flag_values=fv)
    flags.DEFINE_string("seeds", "0,1,2", "few-label draws and initialisations", flag_values=fv)
    flags.DEFINE_string("work_dir", os.path.join(REPO, "runs", "transfer_cifar"),
                        "where every run's model_dir goes", flag_values=fv)
    flags.DEFINE_string("out", os.path.join(RESULTS, "transfer_cifar.md"),
                        "the Markdown report; its .json beside it", flag_values=fv)
    flags.DEFINE_boolean("smoke", False, "a few steps of everything, one seed: checks the bench, "
                         "measures nothing", flag_values=fv)


def main(args):
    if args.smoke:
        args.pretrain_epochs, args.finetune_epochs, args.finetune_steps, args.seeds = 1, 1, 3, "0"
    seeds = [int(s) for s in args.seeds.split(",")]

    from suite.data.classification import load_classification, subset

    start = time.time()
    data = load_classification(args.data)
    common = dict(model=args.model, model_weight_decay=1e-4, augmentations=("crop_flip",))

    # -- 1. pretraining on the first 5 classes --------------------------------------------------
    pre_data = subset(data, PRETRAIN_CLASSES)
    pre_dir = os.path.join(args.work_dir, "pretrain")
    pre = train(pre_dir, args.pretrain_epochs, 3 if args.smoke else 0, 128, 0.1, 0, pre_data,
                **common)

    # -- 2. few labels of the other 5, three ways ----------------------------------------------
    variants = {
        "scratch": dict(lr=args.scratch_lr, init_from=None, freeze_backbone=False),
        "fine-tune all layers": dict(lr=args.finetune_lr, init_from=pre_dir, freeze_backbone=False),
        "frozen backbone, new head": dict(lr=args.scratch_lr, init_from=pre_dir,
                                          freeze_backbone=True),
    }
    scores: dict[str, list[float]] = {name: [] for name in variants}
    for seed in seeds:
        few = subset(data, TARGET_CLASSES, args.per_class, seed)
        for name, v in variants.items():
            folder = os.path.join(args.work_dir, f"{name.split()[0].strip(',')}-seed{seed}")
            result = train(folder, args.finetune_epochs, args.finetune_steps,
                           args.finetune_batch, v["lr"], seed, few, init_from=v["init_from"],
                           freeze_backbone=v["freeze_backbone"], **common)
            scores[name].append(result["test_top1_accuracy"])
            print(f"{name}, seed {seed}: {100 * scores[name][-1]:.2f}%", flush=True)

    # -- 3. report ---------------------------------------------------------------------------
    base = float(np.mean(scores["scratch"]))
    rows = {name: {"mean": float(np.mean(s)), "std": float(np.std(s)), "runs": s,
                   "gain_over_scratch_pp": 100 * (float(np.mean(s)) - base)}
            for name, s in scores.items()}
    record = {"smoke": args.smoke, "args": vars(args), "pretrain_top1": pre["test_top1_accuracy"],
              "pretrain_classes": PRETRAIN_CLASSES, "target_classes": TARGET_CLASSES,
              "train_images_pretrain": pre_data.train.count, "results": rows,
              "seconds": round(time.time() - start, 1), "machine": platform.platform(),
              "cpus": os.cpu_count()}
    title = "# Transfer learning on CIFAR-10" + (" (SMOKE RUN: measures nothing)" * args.smoke)
    lines = [
        title,
        "", f"    {machine.command(__file__)}", "",
        f"{args.model} pretrained on {', '.join(PRETRAIN_CLASSES)} ({pre_data.train.count} images, "
        f"{args.pretrain_epochs} epochs): top-1 {100 * pre['test_top1_accuracy']:.2f}% on their "
        "test images.", "",
        f"Then {', '.join(TARGET_CLASSES)} with {args.per_class} labelled images per class, "
        f"{args.finetune_epochs} x {args.finetune_steps} steps of batch {args.finetune_batch}; "
        f"top-1 on all their test images, mean +- std over seeds {args.seeds}:", "",
        "| start | trained | lr | top-1 (%) | gain over scratch (pp) |", "|---|---|---|---|---|"]
    for name, v in variants.items():
        r = rows[name]
        lines.append(f"| {'pretrained' if v['init_from'] else 'random'} | {name} | {v['lr']} | "
                     f"{100 * r['mean']:.2f} +- {100 * r['std']:.2f} | "
                     f"{r['gain_over_scratch_pp']:+.2f} |")
    lines += ["", f"{record['seconds']} s on {record['machine']}, {record['cpus']} CPUs."]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(record, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    cli.run(main, define_flags)
