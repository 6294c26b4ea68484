"""Checks a TFJob manifest (a dict, e.g. from launch.k8s.tfjob_manifest) before kubectl sees it.

    from launch.schemas import validate_tfjob
    validate_tfjob(manifest)  # ValueError naming every offending field, else None

Three layers, each documented where it is defined below; SOURCE.md says where the schema comes
from and how to update it:
1. The TFJob CustomResourceDefinition's v1 openAPIV3Schema (kubeflow.org_tfjobs.yaml, a verbatim
   copy from the Kubeflow training operator v1.9.0), checked with `jsonschema` as Draft 4 (the
   draft OpenAPI 3.0 schemas, and so Kubernetes structural schemas, are based on), plus what the
   API server adds to plain JSON Schema: x-kubernetes-int-or-string, the int32/int64 formats and
   x-kubernetes-list-type set/map uniqueness.
2. Unknown fields fail. The API server prunes them silently from a custom resource (or, with
   `kubectl apply`'s default --validate=strict and server-side field validation, rejects the
   request), and a silently dropped `restartpolicy:` typo is the bug this check is for. So every
   schema object that lists `properties` and has neither `additionalProperties` nor
   x-kubernetes-preserve-unknown-fields gets additionalProperties: false here.
3. What the schema leaves to Go code: the enums of the training operator's API types
   (restartPolicy, cleanPodPolicy, replica types), and the rules of its validating admission
   webhook (pkg/webhooks/tensorflow/tfjob_webhook.go at v1.9.0).
Not checked: the CRD's one CEL rule (queue is immutable: only on update), formats other than
int32/int64 (date-time appears only under status), and what the kubelet checks when it creates
the pods (e.g. claimName being a DNS-1123 subdomain). PyYAML (the test extra) reads the schema.
"""
from __future__ import annotations

import copy
import difflib
import functools
import json
import re
from pathlib import Path

import jsonschema
from jsonschema import Draft4Validator, Draft7Validator, FormatChecker, ValidationError

__all__ = ["API_VERSION", "KIND", "SCHEMA_FILE", "tfjob_crd", "tfjob_schema", "validate_tfjob"]

SCHEMA_FILE = Path(__file__).with_name("kubeflow.org_tfjobs.yaml")
API_VERSION = "kubeflow.org/v1"
KIND = "TFJob"

# Layer 3, from pkg/apis/kubeflow.org/v1/{common,tensorflow}_types.go at v1.9.0. The operator
# also accepts replica types in other letter cases and rewrites them (setTypeNameToCamelCase);
# only the canonical spelling passes here.
RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")
CLEAN_POD_POLICIES = ("All", "Running", "None")
REPLICA_TYPES = ("Chief", "Master", "PS", "Worker", "Evaluator")
MANAGED_BY = ("kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue")
DEFAULT_CONTAINER = "tensorflow"  # TFJobDefaultContainerName

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # metadata.name (webhook)
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # metadata.namespace
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@functools.lru_cache(maxsize=1)
def _crd() -> dict:
    import yaml  # the test extra; launch.k8s itself needs no PyYAML

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 0.1 s instead of 1 s
    with SCHEMA_FILE.open(encoding="utf-8") as stream:
        return yaml.load(stream, Loader=loader)


def tfjob_crd() -> dict:
    """The whole CustomResourceDefinition as saved (a fresh copy: change it freely)."""
    return copy.deepcopy(_crd())


def _v1_schema(crd: dict) -> dict:
    for version in crd["spec"]["versions"]:
        if version["name"] == API_VERSION.split("/")[1]:
            return version["schema"]["openAPIV3Schema"]
    raise LookupError(f"{SCHEMA_FILE.name} has no version {API_VERSION}")


def tfjob_schema() -> dict:
    """The CRD's kubeflow.org/v1 openAPIV3Schema as saved, without this module's additions."""
    return copy.deepcopy(_v1_schema(_crd()))


def _structural(node):
    """Layers 1 and 2 on a copy of a schema node: Kubernetes extensions as JSON Schema, and
    additionalProperties: false wherever `properties` are listed and nothing else is allowed."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: (value if key in ("enum", "default", "example", "required")
                  else {k: _structural(v) for k, v in value.items()} if key == "properties"
                  else _structural(value))
            for key, value in node.items()}
    if (node.get("x-kubernetes-int-or-string") and "type" not in node
            and "anyOf" not in node):
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if node.get("x-kubernetes-embedded-resource"):
        node.setdefault("properties", {})
        for name in ("apiVersion", "kind"):
            node["properties"].setdefault(name, {"type": "string"})
        node["properties"].setdefault("metadata", {"type": "object"})
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        node["additionalProperties"] = False
    return node


@functools.lru_cache(maxsize=1)
def _checked_schema() -> dict:
    schema = _structural(_v1_schema(_crd()))
    spec = schema["properties"]["spec"]["properties"]
    spec["runPolicy"]["properties"]["cleanPodPolicy"]["enum"] = list(CLEAN_POD_POLICIES)
    replicas = spec["tfReplicaSpecs"]
    replicas["propertyNames"] = {"enum": list(REPLICA_TYPES)}
    replicas["additionalProperties"]["properties"]["restartPolicy"]["enum"] = list(
        RESTART_POLICIES)
    return schema


def _list_type(validator, list_type, instance, schema):
    """x-kubernetes-list-type: "set" items are unique; "map" items are unique by the values of
    x-kubernetes-list-map-keys (e.g. containers by name); "atomic" says nothing to check."""
    if not validator.is_type(instance, "array") or list_type not in ("set", "map"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen = {}
    for index, item in enumerate(instance):
        if list_type == "map" and isinstance(item, dict):
            identity = json.dumps([item.get(key) for key in keys])
            what = ", ".join(f"{key}={item.get(key)!r}" for key in keys)
        else:
            identity = json.dumps(item, sort_keys=True)
            what = repr(item)
        if identity in seen:
            yield ValidationError(f"duplicate entry ({what}), already at index {seen[identity]}",
                                  path=(index,))
        else:
            seen[identity] = index


# Draft 4 has no propertyNames (Draft 6 added it); only the overlay on tfReplicaSpecs uses it.
_Validator = jsonschema.validators.extend(
    Draft4Validator, validators={"x-kubernetes-list-type": _list_type,
                                 "propertyNames": Draft7Validator.VALIDATORS["propertyNames"]})

_FORMATS = FormatChecker(formats=())  # only the formats below, not the default set


@_FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -2**31 <= value < 2**31


@_FORMATS.checks("int64")
def _int64(value) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -2**63 <= value < 2**63


@functools.lru_cache(maxsize=1)
def _validator():
    return _Validator(_checked_schema(), format_checker=_FORMATS)


def _field_path(parts) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "(the manifest)"


def _problems(error: ValidationError) -> list[tuple[list, str]]:
    """(path, reason) pairs for one jsonschema error, worded for someone editing YAML."""
    path, kind, schema = list(error.absolute_path), error.validator, error.schema
    if kind == "additionalProperties" and error.validator_value is False:
        known = sorted(schema.get("properties", {}))
        out = []
        for extra in sorted(set(error.instance) - set(known)):
            close = difflib.get_close_matches(extra, known, n=1, cutoff=0.6)
            if not close:
                close = [name for name in known if name.lower() == extra.lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.append((path + [extra], f"unknown field{hint}"))
        return out
    if kind == "required":
        missing = re.match(r"^'(.*)' is a required property$", error.message)
        name = missing.group(1) if missing else str(error.validator_value)
        return [(path + [name], "required field is missing")]
    if "propertyNames" in error.relative_schema_path:  # a key of tfReplicaSpecs
        known = list(error.schema["enum"])
        close = difflib.get_close_matches(error.instance, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [(path + [error.instance], f"unknown replica type{hint}: use one of {known}")]
    if kind == "anyOf" and schema.get("x-kubernetes-int-or-string"):
        return [(path, f"{error.instance!r} must be an integer or a string")]
    if kind == "pattern" and schema.get("x-kubernetes-int-or-string"):
        return [(path, f"{error.instance!r} is not a Kubernetes quantity (e.g. 1, 500m, 2Gi)")]
    if kind == "format":
        return [(path, f"{error.instance!r} is out of the {error.validator_value} range")]
    return [(path, error.message)]


def metadata_problems(manifest: dict) -> list[tuple[list, str]]:
    """What the API server checks in any object's metadata that a schema leaves out: a name
    (a DNS-1035 label, what a TFJob's webhook and a Service require, and what an Indexed Job's
    pod hostnames need), a DNS-1123 namespace, labels and annotations of strings."""
    out = []
    metadata = manifest.get("metadata")
    if isinstance(metadata, dict):
        name = metadata.get("name")
        if name is None:
            out.append((["metadata", "name"], "required field is missing (kubectl apply needs "
                                              "a name)"))
        elif not (isinstance(name, str) and DNS1035_LABEL.match(name) and len(name) <= 63):
            out.append((["metadata", "name"], f"{name!r} is not a DNS-1035 label (lowercase "
                        "letters, digits and '-', starting with a letter, ending with a letter "
                        "or digit, at most 63 characters)"))
        namespace = metadata.get("namespace")
        if namespace is not None and not (isinstance(namespace, str) and len(namespace) <= 63
                                          and DNS1123_LABEL.match(namespace)):
            out.append((["metadata", "namespace"], f"{namespace!r} is not a DNS-1123 label"))
        for field in ("labels", "annotations"):  # the CRD schema says only metadata: object
            value = metadata.get(field)
            if value is not None and not isinstance(value, dict):
                out.append((["metadata", field], "must be a mapping of strings to strings"))
            elif value:
                out.extend((["metadata", field, key], f"{item!r} is not a string")
                           for key, item in value.items() if not isinstance(item, str))
    elif metadata is None:
        out.append((["metadata"], "required field is missing"))
    return out


def type_problems(manifest, api_version: str, kind: str) -> list[tuple[list, str]]:
    """Whether `manifest` is a mapping with this apiVersion and kind (ValueError if no mapping)."""
    if not isinstance(manifest, dict):
        raise ValueError(f"a {kind} manifest is a mapping, not {type(manifest).__name__}")
    return [([field], f"{manifest.get(field)!r} is not {want!r}")
            for field, want in (("apiVersion", api_version), ("kind", kind))
            if manifest.get(field) != want]


def report(what: str, problems: list[tuple[list, str]]) -> None:
    """Raises ValueError listing each (path, reason) of `problems` once, sorted; else None."""
    lines = sorted({f"{_field_path(path)}: {reason}" for path, reason in problems})
    if lines:
        raise ValueError(f"invalid {what} manifest:\n  " + "\n  ".join(lines))


def _webhook_problems(manifest: dict) -> list[tuple[list, str]]:
    """Layer 3: metadata (the CRD leaves ObjectMeta to the API server), and the training
    operator's TFJob admission webhook (v1.9.0): name, images, the "tensorflow" container, at
    most one Chief/Master, runPolicy.managedBy."""
    out = metadata_problems(manifest)
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        return out  # the schema reports it
    run_policy = spec.get("runPolicy")
    if isinstance(run_policy, dict) and run_policy.get("managedBy") is not None:
        if run_policy["managedBy"] not in MANAGED_BY:
            out.append((["spec", "runPolicy", "managedBy"], f"not one of {list(MANAGED_BY)}"))
    replica_specs = spec.get("tfReplicaSpecs")
    if not isinstance(replica_specs, dict):
        return out
    chiefs = [kind for kind in replica_specs if kind in ("Chief", "Master")]
    if len(chiefs) > 1:
        out.append((["spec", "tfReplicaSpecs"], f"more than one Chief or Master ({chiefs})"))
    for kind, replica in replica_specs.items():
        where = ["spec", "tfReplicaSpecs", kind, "template", "spec", "containers"]
        try:
            containers = replica["template"]["spec"]["containers"]
        except (KeyError, TypeError):
            containers = None
        if not isinstance(containers, list) or not containers:
            out.append((where, "at least one container is required"))
            continue
        for index, container in enumerate(containers):
            if isinstance(container, dict) and not container.get("image"):
                out.append((where + [index, "image"], "required field is missing or empty"))
        if not any(isinstance(c, dict) and c.get("name") == DEFAULT_CONTAINER
                   for c in containers):
            out.append((where, f"no container named {DEFAULT_CONTAINER!r} (the operator sets "
                               "TF_CONFIG and the port only there)"))
    return out


def validate_tfjob(manifest: dict) -> None:
    """Raises ValueError listing every field of `manifest` that a TFJob (kubeflow.org/v1) must
    not have: the path of each (e.g. spec.tfReplicaSpecs.Worker.replicas) and why."""
    problems = type_problems(manifest, API_VERSION, KIND)
    for error in _validator().iter_errors(manifest):
        problems.extend(_problems(error))
    problems.extend(_webhook_problems(manifest))
    report(KIND, problems)
