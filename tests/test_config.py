"""Typed configs (suite.config) and the flags generated from them (suite.runtime.flags): one
place per option, checks on both paths, and errors that name what the caller typed: the field
for a Python caller, the flag for a command-line user."""
import dataclasses

import pytest
from absl import flags

from conftest import REPO, app_task, parse_app_flags, run_app
from suite import config as cfg
from suite.config import Config, group, option, rule
from suite.errors import ConfigError, DataError
from suite.runtime.config import OptimizerConfig, RuntimeConfig, ScheduleConfig
from suite.runtime.flags import as_flags, config_from_flags, define_flags
from suite.tasks.captioning import CaptionerConfig, CaptioningTask
from suite.tasks.classifier import ClassifierConfig, ClassifierTask
from suite.tasks.dcgan import DcganConfig, DcganTask
from suite.tasks.detection import DetectionTask, DetectorConfig
from suite.tasks.dqn import DqnConfig
from suite.tasks.mnist import MnistConfig
from suite.tasks.segmentation import SegmenterConfig
from suite.tasks.style_transfer import StyleConfig


@dataclasses.dataclass
class ToyConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/toy")
    g: OptimizerConfig = group(OptimizerConfig, prefix="g_", of="the generator",
                               learning_rate=0.5)
    width: int = option(32, "Units of the hidden layer.", bounds=">= 1")
    rate: float = option(0.5, "A rate.", bounds="[0, 1)")
    mode: str = option("a", "A mode.", choices=("a", "b"))
    depth: int = option(50, "Depth.", choices=(18, 50))
    sizes: tuple[int, ...] = option((2, 3), "Sizes.", bounds=">= 1")
    source: str | None = option(None, "Where from.")

    @rule("width", "rate")
    def _small(width, rate):
        if width > 100 and rate > 0.9:
            return "`width` above 100 needs `rate` at most 0.9"


def test_a_config_checks_types_bounds_choices_and_rules_naming_the_field():
    assert ToyConfig().g.learning_rate == 0.5 and ToyConfig().runtime.model_dir == "runs/toy"
    for kwargs, message in [
            ({"width": 0}, "`width` must be >= 1"),
            ({"width": "8"}, "`width` must be an integer, got '8'"),
            ({"width": True}, "`width` must be an integer, got True"),
            ({"rate": 1.0}, "`rate` must be in [0, 1)"),
            ({"mode": "c"}, "`mode` must be one of a, b; got 'c'"),
            ({"depth": 34}, "`depth` must be one of 18, 50; got 34"),
            ({"sizes": (2, 0)}, "`sizes` must be >= 1"),
            ({"sizes": 3}, "`sizes` must be a comma-separated list of integers, got 3"),
            ({"width": 200, "rate": 0.95}, "`width` above 100 needs `rate` at most 0.9")]:
        with pytest.raises(ConfigError) as error:
            ToyConfig(**kwargs)
        assert str(error.value) == message, kwargs
    made = ToyConfig(sizes=[4, 5], rate=0, source="")
    assert made.sizes == (4, 5) and made.rate == 0.0 and isinstance(made.rate, float)
    assert made.source is None  # an empty optional text is unset
    with pytest.raises(ConfigError, match="`learning_rate` must be > 0"):
        OptimizerConfig(learning_rate=0)
    with pytest.raises(ConfigError, match="`dataset` must be given"):
        DetectorConfig()


def test_bounds_are_checked_as_written():
    for bounds, inside, outside in [(">= 1", [1, 5], [0]), ("> 0", [1e-9], [0, -1]),
                                    ("[0, 1)", [0, 0.99], [1, -0.1]), ("(0, 1]", [1], [0]),
                                    ("[-1, 2]", [-1, 2], [-1.5, 2.5]), ("< 3", [2], [3])]:
        assert all(cfg._within(v, bounds) for v in inside), bounds
        assert not any(cfg._within(v, bounds) for v in outside), bounds
    with pytest.raises(ValueError, match="write '>= 1'"):
        option(1, "x", bounds="at least 1")  # a typo fails where the option is declared


def test_flags_are_generated_with_prefixes_defaults_help_and_checks():
    fv = flags.FlagValues()
    define_flags(fv, ToyConfig)
    assert {"width", "rate", "mode", "depth", "sizes", "source", "model_dir",
            "g_learning_rate", "g_lr_schedule"} <= set(fv)
    assert "learning_rate" not in fv
    assert fv["g_learning_rate"].default == 0.5 and fv["model_dir"].default == "runs/toy"
    assert fv["g_optimizer"].help.endswith("Optimizer of the generator; 'momentum' is SGD "
                                           "with --g_momentum, 'adamw' uses --g_weight_decay.")
    assert fv["depth"].flag_type() == "string enum"
    assert fv["sizes"].flag_type() == "comma separated list of strings"
    fv(["app", "--depth=18", "--sizes=7,8", "--source=", "--g_lr_decay_epochs=9,3",
        "--g_lr_schedule=step"])
    made = config_from_flags(fv, ToyConfig)
    assert (made.depth, made.sizes, made.source, made.g.lr_decay_epochs) == (18, (7, 8), None,
                                                                               (3, 9))
    for args, message in [(["--width=0"], "--width must be >= 1"),
                          (["--sizes=1,x"], "--sizes must be a comma-separated list of integers"),
                          (["--width=200", "--rate=0.95"],
                           "--width above 100 needs --rate at most 0.9"),
                          (["--g_lr_schedule=step"],
                           "--g_lr_schedule=step needs --g_lr_decay_epochs")]:
        bad = flags.FlagValues()
        define_flags(bad, ToyConfig)
        with pytest.raises(flags.IllegalFlagValueError) as error:
            bad(["app", *args])
        assert message in str(error.value), args


def test_a_python_caller_reads_the_field_a_command_line_user_the_flag(tmp_path):
    """The same checks and the same library errors, worded for whoever called."""
    with pytest.raises(ConfigError, match="^`freeze_backbone` needs `init_from`"):
        ClassifierConfig(freeze_backbone=True)
    with pytest.raises(flags.IllegalFlagValueError, match="--freeze_backbone needs --init_from"):
        parse_app_flags(ClassifierTask, "--freeze_backbone")
    with pytest.raises(ConfigError, match="^`lr_schedule=step` needs `lr_decay_epochs`"):
        DcganConfig(g_optimizer=OptimizerConfig(lr_schedule="step"))
    with pytest.raises(flags.IllegalFlagValueError,
                       match="--g_lr_schedule=step needs --g_lr_decay_epochs"):
        parse_app_flags(DcganTask, "--g_lr_schedule=step")
    # A library error at run time: the data folder is read long after the flags were parsed.
    from suite.data.mnist import load_mnist

    missing = str(tmp_path / "no_such_folder")
    with pytest.raises(DataError, match=f"^`data_dir={missing}` is not a folder"):
        load_mnist(missing)
    out = run_app("apps.train_mnist", f"--data_dir={missing}",
                  f"--model_dir={tmp_path / 'run'}", timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: --data_dir={missing} is not a folder"), out.stderr
    assert "`" not in out.stderr.splitlines()[0]


def test_as_flags_words_only_the_fields_it_knows():
    names = cfg.field_names(DcganConfig)
    assert names["batch_size"] == "batch_size" and names["latent_dim"] == "latent_dim"
    assert as_flags("`latent_dim=8` and `batch_size`; `no_such` and `other words`", names) == (
        "--latent_dim=8 and --batch_size; `no_such` and `other words`")


# Every optional text option of every app: empty on the command line means unset, as it does
# for a Python caller, so a preset's path is cleared the same way everywhere.
OPTIONAL_TEXT = [(config, spec.name) for config in (
    MnistConfig, ClassifierConfig, DqnConfig, SegmenterConfig, DcganConfig, CaptionerConfig,
    DetectorConfig, StyleConfig) for spec in cfg.specs(config)
    if spec.kind is str and spec.optional and not spec.required]


@pytest.mark.parametrize("config, name", OPTIONAL_TEXT,
                         ids=[f"{c.__name__}.{n}" for c, n in OPTIONAL_TEXT])
def test_an_empty_optional_path_is_unset_in_every_app(config, name):
    required = {spec.name: "x" for spec in cfg.specs(config) if spec.required}
    assert getattr(config(**required, **{name: ""}), name) is None
    fv = flags.FlagValues()
    define_flags(fv, config)
    fv(["app", *[f"--{k}={v}" for k, v in required.items()], f"--{name}="])
    assert getattr(config_from_flags(fv, config), name) is None


def test_a_preset_path_is_cleared_alike_in_the_captioner_and_the_detector(tmp_path,
                                                                          monkeypatch):
    """The detector preset's backbone and the captioner preset's encoder are both cleared
    with an empty value (the captioner refused `--encoder_from=`)."""
    monkeypatch.chdir(REPO)
    captioner = app_task(CaptioningTask, "--flagfile=apps/flags/flickr8k_nic.flags",
                         "--encoder_from=", "--nofreeze_encoder", "--noprecompute_features",
                         f"--dataset={tmp_path}")
    assert captioner.config.encoder_from is None
    detector = app_task(DetectionTask, "--flagfile=apps/flags/raccoon_faster_rcnn.flags",
                        "--init_from=", f"--dataset={tmp_path}", f"--test_files={tmp_path}")
    assert detector.config.init_from is None and detector.initial_weights is None


def test_the_runtime_and_schedule_groups_keep_their_own_checks():
    with pytest.raises(ConfigError, match="`model_dir` must not be empty"):
        RuntimeConfig("")
    with pytest.raises(ConfigError, match="`batch_size` must be a positive integer"):
        ScheduleConfig(batch_size=0)
    with pytest.raises(ConfigError, match="`peer_timeout_s` must be >= 0"):
        RuntimeConfig("runs/x", peer_timeout_s=-1)
