"""Checks a batch/v1 Job or v1 Service (dicts, e.g. from launch.k8s.indexed_job_manifests)
before kubectl sees them.

    from launch.schemas.kubernetes import validate
    validate(manifest)  # ValueError naming every offending field, else None

Two layers (SOURCE.md says where the schemas come from):
1. The Kubernetes v1.30.0 API's own JSON schemas for the kind (job-batch-v1.json,
   service-v1.json: verbatim copies of yannh/kubernetes-json-schema's "standalone-strict" ones,
   generated from the API server's OpenAPI document), checked as launch.schemas checks the
   TFJob CRD: Draft 4, int32/int64 ranges and x-kubernetes-list-type uniqueness. "strict" means
   every object already has additionalProperties: false, so a misspelt field fails here.
2. What the API server's Go validation adds and the schemas cannot say (enums, ranges, rules
   between fields), for the fields launch.k8s writes: pkg/apis/batch/validation and
   pkg/apis/core/validation at v1.30, plus the metadata checks shared with the TFJob.
Not checked: every other Go rule (e.g. of fields launch.k8s never writes), admission plugins,
and what only the kubelet checks when it starts a pod.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from launch.schemas import _FORMATS, _Validator, _problems, metadata_problems, report

__all__ = ["SCHEMA_FILES", "schema", "validate"]

HERE = Path(__file__).parent
SCHEMA_FILES = {("batch/v1", "Job"): HERE / "job-batch-v1.json",
                ("v1", "Service"): HERE / "service-v1.json"}

# Layer 2, from k8s.io/api batch/v1 and core/v1 types.go and their validation at v1.30.
RESTART_POLICIES = ("OnFailure", "Never")  # a Job's pods: Always is refused
COMPLETION_MODES = ("NonIndexed", "Indexed")
POD_FAILURE_ACTIONS = ("FailJob", "FailIndex", "Ignore", "Count")
EXIT_CODE_OPERATORS = ("In", "NotIn")
CONDITION_STATUSES = ("True", "False", "Unknown")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PROTOCOLS = ("TCP", "UDP", "SCTP")


@functools.lru_cache(maxsize=None)
def _schema(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def schema(api_version: str, kind: str) -> dict:
    """The saved JSON schema of `kind` (a fresh copy: change it freely)."""
    return json.loads(json.dumps(_schema(SCHEMA_FILES[api_version, kind])))


@functools.lru_cache(maxsize=None)
def _validator(path: Path):
    return _Validator(_schema(path), format_checker=_FORMATS)


def _enum(out, value, allowed, path):
    if value is not None and value not in allowed:
        out.append((path, f"{value!r} is not one of {list(allowed)}"))


def _natural(out, spec, field, path):
    value = spec.get(field)
    if isinstance(value, int) and value < 0:
        out.append((path + [field], f"{value} must be >= 0"))


def _job_problems(spec: dict) -> list[tuple[list, str]]:
    """JobSpec's Go validation for what launch.k8s writes: counts, completionMode, the pods'
    restartPolicy, and podFailurePolicy's rules (validatePodFailurePolicy)."""
    out, at = [], ["spec"]
    for field in ("parallelism", "completions", "backoffLimit"):
        _natural(out, spec, field, at)
    _enum(out, spec.get("completionMode"), COMPLETION_MODES, at + ["completionMode"])
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        out.append((at + ["completions"], "required when completionMode is Indexed"))
    pod = ((spec.get("template") or {}).get("spec") or {})
    pod_at = at + ["template", "spec"]
    restart = pod.get("restartPolicy")
    if restart not in RESTART_POLICIES:
        out.append((pod_at + ["restartPolicy"], f"{restart!r}: a Job's pods need one of "
                                                f"{list(RESTART_POLICIES)}"))
    containers = [c.get("name") for c in pod.get("containers") or [] if isinstance(c, dict)]
    if not containers:
        out.append((pod_at + ["containers"], "at least one container is required"))
    policy = spec.get("podFailurePolicy")
    if not isinstance(policy, dict):
        return out
    if restart != "Never":
        out.append((pod_at + ["restartPolicy"], "must be Never when podFailurePolicy is set"))
    for index, rule in enumerate(policy.get("rules") or []):
        where = at + ["podFailurePolicy", "rules", index]
        _enum(out, rule.get("action"), POD_FAILURE_ACTIONS, where + ["action"])
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (conditions is None):
            out.append((where, "set exactly one of onExitCodes and onPodConditions"))
        for k, condition in enumerate(conditions or []):
            _enum(out, condition.get("status"), CONDITION_STATUSES,
                  where + ["onPodConditions", k, "status"])
        if codes:
            out.extend(_exit_code_problems(codes, containers, where + ["onExitCodes"]))
    return out


def _exit_code_problems(codes: dict, containers: list, where: list) -> list[tuple[list, str]]:
    out = []
    operator, values = codes.get("operator"), codes.get("values") or []
    _enum(out, operator, EXIT_CODE_OPERATORS, where + ["operator"])
    if not 1 <= len(values) <= 255:
        out.append((where + ["values"], "give 1 to 255 exit codes"))
    if values != sorted(set(values)):
        out.append((where + ["values"], "must be unique and in increasing order"))
    if operator == "In" and 0 in values:
        out.append((where + ["values"], "0 (success) cannot be a failure's exit code with In"))
    name = codes.get("containerName")
    if name is not None and name not in containers:
        out.append((where + ["containerName"], f"{name!r} is no container of the pod"))
    return out


def _service_problems(spec: dict) -> list[tuple[list, str]]:
    """ServiceSpec's Go validation for what launch.k8s writes: type, ports, a headless
    service's clusterIP."""
    out, at = [], ["spec"]
    _enum(out, spec.get("type"), SERVICE_TYPES, at + ["type"])
    cluster_ip = spec.get("clusterIP")
    if cluster_ip == "None" and spec.get("type", "ClusterIP") != "ClusterIP":
        out.append((at + ["clusterIP"], "None (headless) needs type ClusterIP"))
    for index, port in enumerate(spec.get("ports") or []):
        where = at + ["ports", index]
        for field in ("port", "targetPort"):
            value = port.get(field)
            if isinstance(value, int) and not 1 <= value <= 65535:
                out.append((where + [field], f"{value} is not a port number (1-65535)"))
        _enum(out, port.get("protocol"), PROTOCOLS, where + ["protocol"])
    selector = spec.get("selector")
    if selector is not None and not all(isinstance(v, str) for v in selector.values()):
        out.append((at + ["selector"], "must map label names to strings"))
    return out


def validate(manifest: dict) -> None:
    """Raises ValueError listing every field of `manifest` (a batch/v1 Job or v1 Service) that
    the Kubernetes API would refuse: the path of each (e.g. spec.completions) and why."""
    if not isinstance(manifest, dict):
        raise ValueError(f"a manifest is a mapping, not {type(manifest).__name__}")
    key = (manifest.get("apiVersion"), manifest.get("kind"))
    if key not in SCHEMA_FILES:
        raise ValueError(f"apiVersion {key[0]!r}, kind {key[1]!r}: only "
                         f"{[' '.join(k) for k in SCHEMA_FILES]} are checked here")
    problems = [p for error in _validator(SCHEMA_FILES[key]).iter_errors(manifest)
                for p in _problems(error)]
    problems.extend(metadata_problems(manifest))
    spec = manifest.get("spec")
    if isinstance(spec, dict) and not problems:  # layer 2 reads a well-formed spec
        problems.extend(_job_problems(spec) if key[1] == "Job" else _service_problems(spec))
    report(key[1], problems)
