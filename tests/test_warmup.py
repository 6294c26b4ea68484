"""Every export holds TF Serving's warm-up records (assets.extra/tf_serving_warmup_requests,
PredictionLog protos of tensorflow-serving-api), and each replays through its signature as TF
Serving replays it at load: a failing one would keep the version from loading."""
from __future__ import annotations

import pytest
import tensorflow as tf

from tiny_exports import BUILDERS


@pytest.mark.parametrize("app", list(BUILDERS))
def test_the_warmup_records_replay_through_every_signature(tiny_exports, app):
    from tensorflow_serving.apis import prediction_log_pb2

    from suite.export.warmup import WARMUP_FILE, read_warmup

    folder, signatures = tiny_exports(app)
    logs = [prediction_log_pb2.PredictionLog.FromString(record) for record in
            tf.data.TFRecordDataset(f"{folder}/{WARMUP_FILE}").as_numpy_iterator()]
    assert all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    assert {log.predict_log.request.model_spec.name for log in logs} == {app}
    replayed = read_warmup(folder)
    assert len(replayed) == len(logs) <= 1000  # TF Serving reads at most 1000
    rows = {}
    for name, inputs in replayed:
        outputs = signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        batch = {len(v) for v in inputs.values() if v.ndim}
        assert {value.shape[0] for value in outputs.values()} == batch, (name, outputs)
        rows.setdefault(name, []).extend(batch)
    assert rows == {name: [1, 2] for name in signatures}


def test_an_export_without_warmup_records_reads_as_none(tmp_path):
    from suite.export.warmup import read_warmup

    assert read_warmup(str(tmp_path)) == []
