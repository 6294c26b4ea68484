"""docs/serving.md's TF Serving requests are the ones tested here: each REST body it shows is
built below, found verbatim in the page, converted to tensors by TF Serving's JSON rules and
run through the signature of a tiny export of that app; its gRPC snippet runs against a
stand-in PredictionService (tensorflow-serving-api's stubs) that answers from a SavedModel.
TF Serving's own binary cannot be installed here (no PyPI or Debian package ships it)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
from concurrent import futures

import pytest
import tensorflow as tf

from conftest import REPO

DOC = os.path.join(REPO, "docs", "serving.md")
DIGIT = os.path.join(REPO, "docs", "examples", "digit.png")  # MNIST test image 0, a 7


def digit_b64() -> str:
    with open(DIGIT, "rb") as f:
        return base64.b64encode(f.read()).decode()


def bodies() -> list[tuple[str, dict]]:
    """(app, REST body): one per kind of input the page shows."""
    image = [{"b64": digit_b64()}]
    return [
        ("dqn", {"instances": [[0.02, 0.01, -0.03, 0.04]]}),
        ("mnist", {"signature_name": "serve_image_bytes", "instances": image}),
        ("dcgan", {"signature_name": "from_seed", "instances": [7, 42]}),
        ("detector", {"signature_name": "detect", "inputs": {
            "image_bytes": image, "score_threshold": 0.3, "max_detections": 5}}),
        ("captioner", {"signature_name": "beam_search", "inputs": {
            "image_bytes": image, "beam_size": 3}}),
    ]


def doc() -> str:
    with open(DOC) as f:
        return f.read()


def decoded(value):
    """JSON values with {"b64": ...} objects made bytes, as TF Serving reads them."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def from_json(body: dict, specs: dict) -> dict:
    """TF Serving's REST body -> {input: tensor} for a signature whose inputs are `specs`:
    "instances" (row format: a list of rows, each an object of named inputs or, for a
    one-input signature, the input's value) or "inputs" (columnar: an object of named inputs,
    or the one input's value); tensorflow_serving/util/json_tensor.h."""
    def named(value):
        return isinstance(value, dict) and set(value) != {"b64"}

    if "instances" in body:
        rows = body["instances"]
        if all(named(row) for row in rows):
            columns = {name: [row[name] for row in rows] for name in specs}
        else:
            (only,) = specs
            columns = {only: rows}
    else:
        columns = body["inputs"] if named(body["inputs"]) else {next(iter(specs)): body["inputs"]}
    assert set(columns) == set(specs), (set(columns), set(specs))
    return {name: tf.constant(decoded(value), specs[name].dtype)
            for name, value in columns.items()}


@pytest.mark.parametrize("app, body", bodies(), ids=[app for app, _ in bodies()])
def test_each_rest_body_of_the_page_is_answered_by_its_signature(tiny_exports, app, body):
    text = json.dumps(body)
    assert text in doc(), f"docs/serving.md lacks the {app} body:\n{text}"
    signature = tiny_exports(app)[1][body.get("signature_name", "serving_default")]
    inputs = from_json(json.loads(text), signature.structured_input_signature[1])
    outputs = signature(**inputs)
    rows = {len(v) for v in inputs.values() if v.shape.rank}
    assert {v.shape[0] for v in outputs.values()} == rows


class StandIn:
    """A PredictionService answering Predict from a SavedModel's signatures, on a free local
    port: what the page's gRPC client talks to in place of TF Serving."""

    def __init__(self, name: str, signatures):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        outer = self

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):
                return outer.predict(request, context)

        self.name, self.signatures = name, signatures
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(),
                                                                            self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def predict(self, request, context):
        import grpc
        from tensorflow_serving.apis import predict_pb2

        if request.model_spec.name != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.model_spec.name}")
        signature = self.signatures[request.model_spec.signature_name or "serving_default"]
        try:
            outputs = signature(**{k: tf.constant(tf.make_ndarray(v))
                                   for k, v in request.inputs.items()})
        except tf.errors.InvalidArgumentError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


def test_the_grpc_snippet_of_the_page_gets_the_signatures_answer(tiny_exports, tmp_path,
                                                                 monkeypatch, capsys):
    snippet = re.search(r"\n## gRPC.*?```python\n(.*?)```", doc(), re.S).group(1)
    assert '"localhost:8500"' in snippet
    stand_in = StandIn("mnist", tiny_exports("mnist")[1])
    try:
        shutil.copy(DIGIT, tmp_path / "digit.png")
        monkeypatch.chdir(tmp_path)
        exec(snippet.replace("localhost:8500", f"127.0.0.1:{stand_in.port}"), {})
    finally:
        stand_in.server.stop(grace=None)
    class_ids, probabilities = capsys.readouterr().out.split("\n", 1)
    assert re.fullmatch(r"\[\d\]", class_ids), class_ids  # one digit's class
    assert probabilities.startswith("[[") and probabilities.count(".") == 10, probabilities
