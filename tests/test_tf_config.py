"""TF_CONFIG as the apps read it (suite.runtime.devices.cluster_tasks): what TensorFlow accepts
is counted, anything else is one clear error before any strategy starts."""
from __future__ import annotations

import json

import pytest

from conftest import run_app
from suite.runtime.devices import cluster_tasks


def _tasks(cluster) -> int:
    return cluster_tasks({"TF_CONFIG": json.dumps({"cluster": cluster})})[0]


def test_both_forms_tensorflow_reads_are_counted():
    assert _tasks({"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}) == 2
    assert _tasks({"chief": ["a:1"], "worker": {"0": "b:2", "1": "c:3"}, "ps": ["d:4"]}) == 3
    assert _tasks({"worker": ["[::1]:2222"]}) == 1


@pytest.mark.parametrize("cluster, detail", [
    (["a"], """'cluster' is ["a"]"""),
    (None, "'cluster' is null"),  # TensorFlow's ClusterSpec(None) raises TypeError
    ({"worker": "127.0.0.1:1"}, """job 'worker' is "127.0.0.1:1\""""),  # len() would say 11
    ({"worker": ["a:1", 3]}, """job 'worker' is ["a:1", 3]"""),
    ({"worker": ["no-port"]}, """job 'worker' is ["no-port"]"""),
    ({"worker": {"first": "a:1"}}, """job 'worker' is {"first": "a:1"}"""),
    ({"ps": [{"host": "a:1"}], "worker": ["b:2"]}, "job 'ps' is"),  # TensorFlow reads every job
])
def test_a_malformed_cluster_is_one_clear_error(cluster, detail):
    with pytest.raises(ValueError) as raised:
        _tasks(cluster)
    message = str(raised.value)
    assert message.startswith("TF_CONFIG is not a JSON object whose 'cluster' maps each job to "
                              'a list of "host:port" addresses')
    assert detail in message and message.endswith("fix it, or unset it to train on this machine "
                                                  "alone")


def test_an_app_exits_2_on_a_malformed_tf_config_and_writes_nothing(tmp_path):
    out = run_app("apps.train_mnist", f"--model_dir={tmp_path}/run",
                  "--data_dir=tests/fixtures/mnist_small", "--noverify_checksums",
                  env={"TF_CONFIG": '{"cluster": {"worker": "127.0.0.1:1"}}'}, timeout=120)
    assert out.returncode == 2, out.stderr
    assert """error: TF_CONFIG is not a JSON object whose 'cluster' maps""" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()
