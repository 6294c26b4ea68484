"""TF Serving's warm-up records: a few requests per signature, which the server replays when it
loads a version, before the version takes traffic.

Without them the first client request of every new version pays for what runs once: kernel
and oneDNN primitive creation, tf.data's decode pipeline, functions instantiated on first
call. Measured in a session as TF Serving runs one (2-core CPU): a tiny MNIST export's first
request took 110 ms, the next ones 1-2 ms; a tiny detector's 11.7 s, then 0.05-0.4 s.

TF Serving reads `assets.extra/tf_serving_warmup_requests`, a TFRecord file of `PredictionLog`
protos (at most 1000), and refuses to load a version whose warm-up request fails: every record
is an example request (suite.export.examples) that passes the signature's checks, one of one
row and one of two rows per signature.
"""
from __future__ import annotations

import os

import numpy as np

from suite.export import guards
from suite.export.examples import example_request

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
BATCHES = (1, 2)


def warmup_logs(name: str, signatures: dict) -> list:
    """PredictionLog protos: for each signature, a request of each of BATCHES rows."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    logs = []
    for signature_name, signature in signatures.items():
        inputs = [guards.as_input(declared) for declared in signature.inputs]
        for batch in BATCHES:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.model_spec.signature_name = signature_name
            for key, value in example_request(inputs, batch).items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup(version_dir: str, name: str, signatures: dict) -> str:
    """Writes `<version_dir>/assets.extra/tf_serving_warmup_requests`; returns its path."""
    import tensorflow as tf

    path = os.path.join(version_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_logs(name, signatures):
            writer.write(log.SerializeToString())
    return path


def read_warmup(version_dir: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(signature name, {input: array}) of every warm-up record, in file order; [] for an
    export written before warm-up records existed."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(version_dir, WARMUP_FILE)
    if not os.path.isfile(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        requests.append((request.model_spec.signature_name or "serving_default",
                         {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}))
    return requests
