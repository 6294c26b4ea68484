"""bench/ is a package with the apps' command line: every bench runs as `python -m
bench.<name>`, answers --help without PyTorch or TensorFlow loading, and refuses a bad flag with
exit code 2 and one `error:` line."""
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from absl import flags

from bench import cli, preset_run, time_to_accuracy
from conftest import REPO, run_app

BENCH = os.path.join(REPO, "bench")


def source(name: str) -> str:
    with open(os.path.join(BENCH, f"{name}.py")) as f:
        return f.read()


MODULES = sorted(f[:-3] for f in os.listdir(BENCH) if f.endswith(".py") and f != "__init__.py")
BENCHES = [m for m in MODULES if re.search(r'^if __name__ == "__main__":', source(m), re.M)]


def test_the_benches_are_the_modules_with_a_main():
    assert set(MODULES) - set(BENCHES) == {"cli", "interleaved", "machine", "torch_dcgan",
                                           "torch_deep_convnet", "torch_fcn", "torch_resnet20"}


def test_no_bench_edits_sys_path_or_names_the_old_invocation():
    for name in MODULES:
        text = source(name)
        assert "sys.path" not in text, name
        assert "python bench/" not in text, name  # python -m bench.<name>


def test_every_bench_answers_help_and_refuses_a_bad_flag():
    """In parallel: some 40 interpreters that import only absl, NumPy and the suite's config."""
    def both(name):
        return run_app(f"bench.{name}", "--help", timeout=120), run_app(
            f"bench.{name}", "--no_such_flag", timeout=120)

    with ThreadPoolExecutor(max_workers=8) as pool:
        done = dict(zip(BENCHES, pool.map(both, BENCHES)))
    for name, (helped, refused) in done.items():
        # absl's --help exits 1, as the apps' does; the module's docstring comes first.
        assert helped.returncode == 1, (name, helped.stderr[-2000:])
        assert f"python -m bench.{name}" in helped.stdout, name
        assert refused.returncode == 2, (name, refused.stderr[-2000:])
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert errors == ["error: Unknown command line flag 'no_such_flag'"], name


def test_a_bench_runs_with_its_flags():
    done = run_app("bench.multiworker_overhead", "--cost_model", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| ResNet-50 (batch 64/GPU, fp16) | 10 Gb/s Ethernet" in done.stdout


def bench_flags(module) -> flags.FlagValues:
    fv = flags.FlagValues()
    module.define_flags(fv)
    return fv


@pytest.mark.parametrize("given", [["--flagfile=apps/flags/mnist.flags"],
                                   ["--flagfile", "apps/flags/mnist.flags"]])
def test_an_apps_flagfile_is_the_benchs_flag_and_app_flags_follow_the_double_dash(given):
    """absl would read --flagfile as the bench's own flags; preset_run passes it to the app."""
    fv = bench_flags(preset_run)
    rest = cli.parse(["preset_run", "--name=book", "--app=train_mnist", *given, "--seeds=0,1",
                      "--", "--data_dir=../shared/data/mnist", "--noexport"], fv)
    assert rest == ["preset_run", "--data_dir=../shared/data/mnist", "--noexport"]
    assert (fv.flagfile, fv.seeds, fv.name) == ("apps/flags/mnist.flags", "0,1", "book")


def test_a_required_flag_missing_and_a_flagfile_left_out():
    with pytest.raises(SystemExit) as raised:
        cli.parse(["preset_run", "--name=book", "--app=train_mnist"], bench_flags(preset_run))
    assert raised.value.code == 2
    fv = bench_flags(time_to_accuracy)
    cli.parse(["time_to_accuracy", "--seeds=0"], fv)
    assert fv.flagfile == "apps/flags/mnist_fast.flags"


def test_peer_names_keep_their_order_and_an_unknown_one_is_a_usage_error(capsys):
    assert cli.peer_names("torch,keras,", ["keras", "torch"]) == ["torch", "keras"]
    with pytest.raises(SystemExit) as raised:
        cli.peer_names("keras,tpu", ["keras", "torch"], of="resnet20")
    assert raised.value.code == 2
    assert "error: unknown peers ['tpu'] for resnet20; choose from keras, torch" in (
        capsys.readouterr().err)
