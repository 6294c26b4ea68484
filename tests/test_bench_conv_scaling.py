"""bench/conv_scaling.py: which convolutions a training step runs, and how often."""
from __future__ import annotations

import pytest

from bench import conv_scaling
from suite.models.deep_convnet import build_deep_convnet
from suite.models.registry import build_model


def test_deep_convnet_has_six_convolutions_and_no_input_gradient_for_the_first():
    shapes = conv_scaling.conv_shapes(build_deep_convnet())
    assert [(s["height"], s["channels"], s["filters"], s["padding"]) for s in shapes] == [
        (28, 1, 16, "SAME"), (28, 16, 16, "SAME"), (14, 16, 32, "SAME"),
        (18, 32, 32, "VALID"), (8, 32, 64, "SAME"), (8, 64, 64, "SAME")]  # conv4: padded 2
    assert [s["layers"] for s in shapes] == [1] * 6
    assert [s["input_gradients"] for s in shapes] == [0, 1, 1, 1, 1, 1]


def test_resnet20_shapes_repeat_and_add_up_to_nineteen_convolutions():
    shapes = conv_scaling.conv_shapes(build_model("resnet20"))
    assert sum(s["layers"] for s in shapes) == 19  # 20 weight layers less the dense one
    assert sum(s["input_gradients"] for s in shapes) == 18
    by_input = {(s["height"], s["channels"], s["filters"], s["stride"]): s["layers"]
                for s in shapes}
    assert by_input[(32, 16, 16, 1)] == 6 and by_input[(8, 64, 64, 1)] == 5
    assert {k[3] for k in by_input} == {1, 2}


def test_per_step_weighs_each_shape_by_its_layers_and_takes_the_median():
    shapes = [{"layers": 2, "input_gradients": 1}, {"layers": 1, "input_gradients": 1}]

    def run(scale):
        return {"ms": [dict.fromkeys(conv_scaling.PASSES, 1.0 * scale),
                       dict.fromkeys(conv_scaling.PASSES, 10.0 * scale)]}

    totals = conv_scaling.per_step([run(1), run(3), run(2)], shapes)  # median: scale 2
    assert totals == pytest.approx({"forward": 2 * 2 + 20, "input gradient": 2 + 20,
                                    "weight gradient": 2 * 2 + 20})
