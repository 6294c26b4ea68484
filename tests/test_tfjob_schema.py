"""launch/k8s.py's TFJob manifests against the Kubeflow TFJob CRD's schema (launch/schemas)."""
from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import pytest

import yaml  # noqa: E402  (setup.cfg [test], as is jsonschema)

from launch.k8s import tfjob_manifest  # noqa: E402
from launch.schemas import SCHEMA_FILE, tfjob_crd, tfjob_schema, validate_tfjob  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "launch" / "tfjob_mnist.yaml"
COMMAND = ["python", "-m", "apps.train_mnist", "--flagfile=apps/flags/mnist.flags"]
WORKER = ("spec", "tfReplicaSpecs", "Worker")
CONTAINER = (*WORKER, "template", "spec", "containers", 0)


def manifest(**kwargs) -> dict:
    return tfjob_manifest(COMMAND, **{"name": "mnist", "image": "registry.example.com/suite:0.1",
                                      "num_workers": 2, **kwargs})


def at(document, path):
    for key in path:
        document = document[key]
    return document


def invalid(document, *fragments):
    """The ValueError's message for `document`, checked to contain every fragment."""
    with pytest.raises(ValueError) as raised:
        validate_tfjob(document)
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_saved_crd_is_the_recorded_tfjob_v1_schema():
    source = (REPO / "launch" / "schemas" / "SOURCE.md").read_text()
    recorded = re.search(r"sha256 `([0-9a-f]{64})`", source).group(1)
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == recorded
    assert SCHEMA_FILE.stat().st_size < 1_000_000
    assert (SCHEMA_FILE.parent / "LICENSE.kubeflow-trainer").read_text().lstrip().startswith(
        "Apache License")
    crd = tfjob_crd()
    assert (crd["metadata"]["name"], crd["spec"]["names"]["kind"]) == ("tfjobs.kubeflow.org",
                                                                       "TFJob")
    schema = tfjob_schema()
    assert schema["properties"]["spec"]["required"] == ["tfReplicaSpecs"]
    schema["mutated"] = True  # a copy each time: callers cannot change what is checked
    assert "mutated" not in tfjob_schema()


@pytest.mark.parametrize("kwargs", [
    {},
    {"num_workers": 4, "gpus_per_worker": 1},
    {"namespace": "ml-team", "gpus_per_worker": 8, "pvc": "shared", "mount_path": "/mnt/runs",
     "grace_period_s": 300},
])
def test_generated_manifests_are_valid_tfjobs(kwargs):
    validate_tfjob(manifest(**kwargs))


def test_the_checked_in_example_is_a_valid_tfjob():
    validate_tfjob(yaml.safe_load(EXAMPLE.read_text()))


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "1mnist"}, "starting with a letter"),  # the operator's webhook: DNS-1035
    ({"namespace": "ML_team"}, "a Kubernetes namespace is lowercase letters"),
])
def test_names_kubernetes_would_refuse_are_refused_by_the_generator(kwargs, message):
    with pytest.raises(ValueError, match=message):
        manifest(**kwargs)
    document = manifest()
    document["metadata"].update(kwargs)
    with pytest.raises(ValueError):  # and the schema check agrees
        validate_tfjob(document)


def mutated(path, change):
    document = manifest(gpus_per_worker=1)
    change(at(document, path[:-1]), path[-1])
    return document


def setter(value):
    return lambda parent, key: parent.__setitem__(key, value)


def delete(parent, key):
    del parent[key]


def rename(new):
    return lambda parent, key: parent.__setitem__(new, parent.pop(key))


@pytest.mark.parametrize("path, change, fragments", [
    ((*WORKER, "replicas"), setter("two"),
     ["spec.tfReplicaSpecs.Worker.replicas: 'two' is not of type 'integer'"]),
    ((*WORKER, "replicas"), setter(2**31), ["Worker.replicas: 2147483648 is out of the int32"]),
    ((*WORKER, "restartPolicy"), rename("restartpolicy"),
     ["spec.tfReplicaSpecs.Worker.restartpolicy: unknown field (did you mean 'restartPolicy'?)"]),
    ((*CONTAINER, "volumeMounts"), rename("volumeMount"),
     ["containers[0].volumeMount: unknown field (did you mean 'volumeMounts'?)"]),
    (("spec", "runPolicy"), rename("runpolicy"), ["spec.runpolicy: unknown field"]),
    ((*WORKER, "restartPolicy"), setter("Sometimes"),
     ["Worker.restartPolicy: 'Sometimes' is not one of ['Always', 'OnFailure', 'Never', "
      "'ExitCode']"]),
    (("spec", "runPolicy", "cleanPodPolicy"), setter("none"),
     ["spec.runPolicy.cleanPodPolicy: 'none' is not one of"]),
    (WORKER, rename("Workers"),
     ["spec.tfReplicaSpecs.Workers: unknown replica type (did you mean 'Worker'?)"]),
    (("spec", "tfReplicaSpecs"), delete, ["spec.tfReplicaSpecs: required field is missing"]),
    ((*CONTAINER, "name"), delete,
     ["containers[0].name: required field is missing",
      "containers: no container named 'tensorflow'"]),
    ((*CONTAINER, "image"), delete,  # the schema does not require it; the operator's webhook does
     ["spec.tfReplicaSpecs.Worker.template.spec.containers[0].image: required field is missing"]),
    ((*CONTAINER, "ports", 0, "containerPort"), delete,
     ["containers[0].ports[0].containerPort: required field is missing"]),
    ((*CONTAINER, "resources", "limits", "nvidia.com/gpu"), setter("one"),
     ['containers[0].resources.limits["nvidia.com/gpu"]: \'one\' is not a Kubernetes quantity']),
    ((*CONTAINER, "env"), lambda parent, key: parent[key].append(dict(parent[key][0])),
     ["containers[0].env[1]: duplicate entry (name='PYTHONUNBUFFERED')"]),
    ((*WORKER, "template", "spec", "terminationGracePeriodSeconds"), setter("120s"),
     ["terminationGracePeriodSeconds: '120s' is not of type 'integer'"]),
    (("metadata", "name"), setter("MNIST"), ["metadata.name: 'MNIST' is not a DNS-1035 label"]),
    (("metadata", "name"), delete, ["metadata.name: required field is missing"]),
    (("apiVersion",), setter("kubeflow.org/v2"), ["apiVersion: 'kubeflow.org/v2' is not"]),
    (("kind",), setter("PyTorchJob"), ["kind: 'PyTorchJob' is not 'TFJob'"]),
])
def test_invalid_manifests_fail_naming_the_field(path, change, fragments):
    invalid(mutated(path, change), *fragments)


def test_every_problem_is_reported_at_once():
    document = manifest()
    worker = at(document, WORKER)
    worker["replicas"] = "two"
    worker["restartpolicy"] = worker.pop("restartPolicy")
    message = invalid(document, "Worker.replicas:", "Worker.restartpolicy:")
    assert message.startswith("invalid TFJob manifest:\n  ")
    assert len(message.splitlines()) == 3, message


def test_a_second_chief_is_refused_as_by_the_webhook():
    document = manifest()
    replicas = document["spec"]["tfReplicaSpecs"]
    replicas["Chief"] = copy.deepcopy(replicas["Worker"])
    replicas["Chief"]["replicas"] = 1
    validate_tfjob(document)
    replicas["Master"] = copy.deepcopy(replicas["Chief"])
    invalid(document, "spec.tfReplicaSpecs: more than one Chief or Master")


def test_what_the_schema_leaves_open_stays_open():
    """Fields that the CRD types loosely must not be refused: int-or-string quantities, and
    metadata fields the CRD does not list (the API server checks ObjectMeta itself)."""
    document = manifest(gpus_per_worker=1)
    at(document, CONTAINER)["resources"]["limits"].update({"nvidia.com/gpu": "1", "memory": "8Gi"})
    document["metadata"].update({"labels": {"team": "ml"}, "annotations": {"note": "x"},
                                 "generation": 1})
    validate_tfjob(document)
    document["metadata"]["labels"]["team"] = 7
    invalid(document, "metadata.labels.team: 7 is not a string")
