"""The PyTorch comparisons are against PyTorch's best peer of the same precision in the run, and
every large-batch round times enough calls to mean something (no PyTorch needed: the choosing
and counting are plain functions)."""
from bench import inference_throughput as inference
from bench import interleaved, training_throughput


def test_each_round_times_at_least_min_calls_at_large_batches():
    sizes = [1, 256, 1000]
    assert inference.calls_per_round(1, sizes, 200, 10) == 200
    assert inference.calls_per_round(256, sizes, 200, 10) == 10  # 200 // 256 would be 0
    assert inference.calls_per_round(1000, sizes, 200, 10) == 10
    assert inference.calls_per_round(256, sizes, 5000, 10) == 19  # 5000 images' worth


def _result(ms_by_batch: dict) -> dict:
    return {b: {"median_ms": ms, "gflops": 1.0} for b, ms in ms_by_batch.items()}


def test_the_ratio_is_against_the_fastest_pytorch_peer_of_its_precision_per_batch():
    results = {
        "saved_model": _result({"1": 0.5, "256": 10.0}),
        "keras_call": _result({"1": 0.4, "256": 12.0}),
        "torch": _result({"1": 0.3, "256": 9.0}),
        "torch_channels_last": _result({"1": 0.2, "256": 11.0}),
        "torch_compile": _result({"1": 0.6, "256": 8.0}),
        "torch_compile_frozen": _result({"1": 0.25, "256": 5.0}),
        "keras_bfloat16": _result({"1": 0.4, "256": 6.0}),
        "torch_bfloat16": _result({"1": 0.35, "256": 7.0}),
        "torch_compile_bfloat16": _result({"1": 0.5, "256": 3.0}),
    }
    ratios = inference.summary(results, [1, 256], {})
    assert ratios["float32"]["1"]["torch_peer"] == "torch_channels_last"
    assert ratios["float32"]["1"]["ratio"] == round(0.2 / 0.4, 3)
    assert ratios["float32"]["256"]["torch_peer"] == "torch_compile_frozen"
    assert ratios["float32"]["256"]["best_suite_peer"] == "saved_model"
    assert ratios["float32"]["256"]["ratio"] == round(5.0 / 10.0, 3)
    assert ratios["bfloat16"]["1"]["torch_peer"] == "torch_bfloat16"
    assert ratios["bfloat16"]["256"]["torch_peer"] == "torch_compile_bfloat16"


def test_the_compiled_peers_exist_with_their_layouts():
    assert {"torch_compile_channels_last", "torch_compile_frozen",
            "torch_compile_bfloat16"} <= set(inference.PEERS)
    assert {"torch_compile_channels_last", "torch_compile_bfloat16"} <= set(
        training_throughput.PEERS)
    assert interleaved.torch_options("torch_compile_channels_last") == {
        "channels_last": True, "compiled": True}
    assert interleaved.torch_options("torch") == {"channels_last": False, "compiled": False}
    assert interleaved.torch_options("torch_channels_last") == {
        "channels_last": True, "compiled": False}
    # the autocast and frozen peers are channels-last, as their names in the tables say
    assert interleaved.torch_options("torch_bfloat16") == {
        "channels_last": True, "compiled": False, "bfloat16": True}
    assert interleaved.torch_options("torch_compile_bfloat16") == {
        "channels_last": True, "compiled": True, "bfloat16": True}
    assert interleaved.torch_options("torch_compile_frozen") == {
        "channels_last": True, "compiled": True, "frozen": True}


def test_training_ratios_take_the_best_pytorch_peer_of_each_precision():
    def peer(images_per_s):
        return {"mean_images_per_s": images_per_s}

    ratios = training_throughput.ratios({
        "keras": peer(100.0), "keras_bfloat16": peer(150.0), "torch": peer(80.0),
        "torch_compile_channels_last": peer(125.0), "torch_bfloat16": peer(100.0),
        "torch_compile_bfloat16": peer(200.0)})
    assert ratios["keras_vs_best_torch_float32"] == 0.8
    assert ratios["keras_bfloat16_vs_torch_bfloat16"] == 0.75
    assert ratios["keras_bfloat16_vs_best_torch"] == 0.75
