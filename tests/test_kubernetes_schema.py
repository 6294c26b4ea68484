"""launch/k8s.py's Indexed Job and headless Service against the Kubernetes API's own schemas
(launch/schemas/job-batch-v1.json, service-v1.json) and the Go rules launch.schemas.kubernetes
adds."""
from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import pytest

from launch.k8s import indexed_job_manifests
from launch.schemas.kubernetes import SCHEMA_FILES, schema, validate

REPO = Path(__file__).resolve().parents[1]
COMMAND = ["python", "-m", "apps.train_mnist", "--flagfile=apps/flags/mnist.flags"]


def manifests():
    return indexed_job_manifests(COMMAND, "mnist", "registry.example.com/suite:0.1", 2)


def invalid(document, *fragments):
    with pytest.raises(ValueError) as raised:
        validate(document)
    for fragment in fragments:
        assert fragment in str(raised.value), str(raised.value)


def test_the_saved_schemas_are_the_recorded_ones():
    source = (REPO / "launch" / "schemas" / "SOURCE.md").read_text()
    for path in SCHEMA_FILES.values():
        recorded = re.search(rf"`{re.escape(path.name)}`[^\n]*sha256 `([0-9a-f]{{64}})`", source)
        assert recorded, path.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded.group(1)
    assert (REPO / "launch" / "schemas" / "LICENSE.kubernetes").read_text().lstrip().startswith(
        "Apache License")
    job = schema("batch/v1", "Job")
    assert job["properties"]["kind"]["enum"] == ["Job"] and job["additionalProperties"] is False
    job["mutated"] = True  # a copy each time
    assert "mutated" not in schema("batch/v1", "Job")


@pytest.mark.parametrize("workers, gpus", [(1, 0), (4, 1), (64, 8)])
def test_every_generated_manifest_is_valid(workers, gpus):
    for manifest in indexed_job_manifests(COMMAND, "mnist", "img", workers,
                                          gpus_per_worker=gpus, namespace="ml"):
        validate(manifest)


def test_misspelt_or_misplaced_fields_fail_with_their_path():
    service, job = manifests()
    job["spec"]["template"]["spec"]["restartpolicy"] = "Never"
    invalid(job, "spec.template.spec.restartpolicy: unknown field (did you mean "
                 "'restartPolicy'?)")
    job = manifests()[1]
    job["spec"]["completions"] = "2"
    invalid(job, "spec.completions: '2' is not of type")
    service["spec"]["clusterIp"] = "None"
    invalid(service, "spec.clusterIp: unknown field (did you mean 'clusterIP'?)")


@pytest.mark.parametrize("change, message", [
    (lambda j: j["spec"]["template"]["spec"].update(restartPolicy="Always"),
     "spec.template.spec.restartPolicy: 'Always': a Job's pods need one of"),
    (lambda j: j["spec"]["template"]["spec"].update(restartPolicy="OnFailure"),
     "spec.template.spec.restartPolicy: must be Never when podFailurePolicy is set"),
    (lambda j: j["spec"].pop("completions"),
     "spec.completions: required when completionMode is Indexed"),
    (lambda j: j["spec"].update(completionMode="indexed"),
     "spec.completionMode: 'indexed' is not one of"),
    (lambda j: j["spec"].update(backoffLimit=-1), "spec.backoffLimit: -1 must be >= 0"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].update(
        values=[143, 137]), "must be unique and in increasing order"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].update(
        operator="In", values=[0, 1]), "0 (success) cannot be a failure's exit code with In"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].update(
        containerName="main"), "'main' is no container of the pod"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][0].update(action="Retry"),
     "rules[0].action: 'Retry' is not one of"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0].update(
        status="true"), "status: 'true' is not one of"),
    (lambda j: j["metadata"].update(name="Mnist"), "metadata.name: 'Mnist' is not a DNS-1035"),
])
def test_what_the_api_servers_go_validation_refuses_in_a_job(change, message):
    job = copy.deepcopy(manifests()[1])
    change(job)
    invalid(job, message)


@pytest.mark.parametrize("change, message", [
    (lambda s: s["spec"].update(type="Headless"), "spec.type: 'Headless' is not one of"),
    (lambda s: s["spec"].update(type="NodePort"), "None (headless) needs type ClusterIP"),
    (lambda s: s["spec"]["ports"][0].update(port=70000), "70000 is not a port number"),
    (lambda s: s["spec"]["ports"][0].update(port=2**40), "is out of the int32 range"),
    (lambda s: s.update(apiVersion="v2"), "only ['batch/v1 Job', 'v1 Service'] are checked"),
])
def test_what_the_api_server_refuses_in_a_service(change, message):
    service = copy.deepcopy(manifests()[0])
    change(service)
    invalid(service, message)
