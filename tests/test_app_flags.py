"""Every app's flags are generated from its Task's config (suite.runtime.flags): the same names,
types, defaults, help and enum values as the hand-written flags they replaced, and every preset
in apps/flags/ still reads as the same values (tests/fixtures/app_flags_before_redesign.json,
recorded before the change). Flags added since are listed in ADDED, with their defaults."""
import json
import os

import pytest
from absl import flags

from conftest import REPO
from suite.runtime.flags import define_flags
from suite.tasks.captioning import CaptioningTask
from suite.tasks.classifier import ClassifierTask
from suite.tasks.dcgan import DcganTask
from suite.tasks.detection import DetectionTask
from suite.tasks.dqn import DqnTask
from suite.tasks.mnist import MnistTask
from suite.tasks.segmentation import SegmentationTask
from suite.tasks.style_transfer import StyleTransferTask

BEFORE = json.load(open(os.path.join(REPO, "tests", "fixtures",
                                     "app_flags_before_redesign.json")))
# Issue #33: which data chooses the checkpoint (the test set only when asked: --validation=test).
ADDED = {
    "train_mnist": {"validation": "holdout", "validation_images": 5000},
    "train_classifier": {"validation": "holdout", "validation_fraction": 0.1},
    "train_segmenter": {"validation": "holdout", "validation_images": 4},
    "train_detector": {"validation": "holdout", "validation_every": 8},
}
# Presets changed since, and why.
CHANGED = {
    # #33: 6 of its 64 training images validate; 3 epochs left the chosen model at 75%.
    "cifar_resnet20_smoke.flags": {"epochs": 5},
}
TASKS = {"train_mnist": MnistTask, "train_classifier": ClassifierTask, "train_dqn": DqnTask,
         "train_segmenter": SegmentationTask, "train_dcgan": DcganTask,
         "train_captioner": CaptioningTask, "train_detector": DetectionTask,
         "style_transfer": StyleTransferTask}
# Since: keep_checkpoints_every (epoch-NNN.keras every N epochs, for curves drawn after a run),
# a runtime flag, so in every app.
for _app in TASKS:
    ADDED.setdefault(_app, {})["keep_checkpoints_every"] = 0


def app_flags(task_class) -> flags.FlagValues:
    fv = flags.FlagValues()
    define_flags(fv, task_class.config_class)
    return fv


def test_every_app_is_recorded():
    assert set(BEFORE["apps"]) == set(TASKS)
    for app in TASKS:  # each app module names its Task
        source = open(os.path.join(REPO, "apps", f"{app}.py")).read()
        assert TASKS[app].__name__ in source and "flags.DEFINE_" not in source


@pytest.mark.parametrize("app", sorted(TASKS))
def test_flags_have_the_names_types_defaults_and_help_they_had(app):
    fv = app_flags(TASKS[app])
    before = BEFORE["apps"][app]
    added = ADDED.get(app, {})
    assert sorted(fv) == sorted([*before, *added])
    assert {name: fv[name].default for name in added} == added
    for name, was in before.items():
        flag = fv[name]
        now = {"type": flag.flag_type(),
               "default": flag.serialize() if flag.value is not None else None,
               "help": flag.help, "enum_values": getattr(flag.parser, "enum_values", None)}
        assert now == was, name


@pytest.mark.parametrize("preset", sorted(BEFORE["presets"]))
def test_every_preset_reads_as_the_values_it_gave(preset):
    """Each preset's lines parsed by the generated flags' own parsers (validators left out:
    presets name data under ../shared that a fresh clone lacks) give every flag the value it
    had, defaults included."""
    recorded = BEFORE["presets"][preset]
    fv = app_flags(TASKS[recorded["app"]])
    old_cwd = os.getcwd()
    os.chdir(REPO)  # presets include each other by repository-relative paths
    try:
        args = fv.read_flags_from_files([f"--flagfile=apps/flags/{preset}"], force_gnu=False)
    finally:
        os.chdir(old_cwd)
    for arg in args:
        key, eq, value = arg[2:].partition("=")
        if not eq and key not in fv and key.startswith("no"):
            fv[key[2:]].parse("false")
        else:
            fv[key].parse(value if eq else "true")
    values = {n: list(fv[n].value) if isinstance(fv[n].value, (list, tuple)) else fv[n].value
              for n in fv}
    assert values == {**ADDED.get(recorded["app"], {}), **recorded["values"],
                      **CHANGED.get(preset, {})}
