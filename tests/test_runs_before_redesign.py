"""Run folders written before the Tasks moved to suite/tasks (their run.json names apps.train_*;
tests/fixtures/runs_before_redesign, see its SOURCE.md) still resume and export."""
import json
import os
import shutil

from conftest import REPO, run_in_process
from suite.tasks.dqn import DqnTask
from suite.tasks.mnist import MnistTask
from suite.tasks.runs import export_run, read_run, task_class

BEFORE = os.path.join(REPO, "tests", "fixtures", "runs_before_redesign")


def copied(name, tmp_path) -> str:
    folder = str(tmp_path / name)
    shutil.copytree(os.path.join(BEFORE, name), folder)
    return folder


def history_epochs(folder) -> list[str]:
    with open(os.path.join(folder, "history.csv")) as f:
        return [line.split(",")[0] for line in f.read().splitlines()[1:]]


def test_their_tasks_are_found_by_name_in_suite_tasks():
    for name, cls in (("mnist", MnistTask), ("dqn_cartpole", DqnTask)):
        run = read_run(os.path.join(BEFORE, name))
        assert run["app"].startswith("apps.train_")  # written before the move
        assert task_class(run) is cls


def test_a_dqn_run_resumes_its_networks_buffer_and_step_then_exports(tmp_path):
    folder = copied("dqn_cartpole", tmp_path)
    before = json.load(open(os.path.join(folder, "results.json")))["gradient_steps_done"]
    out = run_in_process(DqnTask, f"--flagfile={folder}/flags.txt", f"--model_dir={folder}",
                         "--env_steps=600")
    assert out["status"] == "completed"
    assert history_epochs(folder) == ["0", "1", "2"]  # epochs 1-2 kept, epoch 3 trained
    assert out["gradient_steps_done"] == before + 200 // 4  # the optimizer's count went on
    assert out["export"].endswith(os.path.join("cartpole-v1", "2"))
    run = json.load(open(os.path.join(folder, "run.json")))
    assert (run["app"], run["task"]) == ("suite.tasks.dqn", "DqnTask")


def test_an_mnist_run_exports_and_resumes_from_its_checkpoint(tmp_path, mnist_small):
    folder = copied("mnist", tmp_path)
    version = export_run(folder)
    assert version == os.path.join(folder, "export", "mnist", "1")
    out = run_in_process(MnistTask, f"--flagfile={folder}/flags.txt", f"--model_dir={folder}",
                         "--epochs=2", "--resume_from=checkpoint", "--noexport",
                         data_override=mnist_small)
    assert out["status"] == "completed" and out["epochs"] == 2
    assert history_epochs(folder) == ["0", "1"]  # epoch 1 kept from before, epoch 2 trained
