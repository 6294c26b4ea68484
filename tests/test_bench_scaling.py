"""bench/SCALING.md's cost model as the cluster bench applies it: the ring's bandwidth term, the
synchronised batch norm's collectives, the calibrated sync cost, and the link for 90%."""
import pytest

from bench import cluster_scaling as scaling
from bench.multiworker_overhead import link_for_efficiency


def test_rates_and_the_rings_bandwidth_term():
    assert scaling.rate_bytes_s("unlimited") is None
    assert scaling.rate_bytes_s("10mbit") == 1.25e6
    assert scaling.rate_bytes_s("1gbit") == 1.25e8
    assert scaling.rate_bytes_s("500kbit") == 62_500
    # 2 workers send (and receive) the whole gradient once; 3 workers 4/3 of it
    assert scaling.link_ms(1.25e6, 2, "10mbit") == pytest.approx(1000.0)
    assert scaling.link_ms(1.25e6, 3, "10mbit") == pytest.approx(4000 / 3)
    assert scaling.link_ms(1.25e6, 3, "unlimited") == 0.0


def _worker(step, compute, gradient=10.0, one_float=2.0, layers=0):
    return {"step_ms": step, "compute_ms": compute, "gradient_allreduce_ms": gradient,
            "one_float_allreduce_ms": one_float, "gradient_bytes": 1.25e6,
            "sync_batch_norm_layers": layers}


def test_model_rows_predict_capped_rows_from_the_uncapped_parts_and_calibrate_syncs():
    configs = [
        {"network": "resnet20", "workers": 1, "cap": "unlimited",
         "per_worker": [_worker(100.0, 100.0, layers=0)]},
        {"network": "resnet20", "workers": 2, "cap": "unlimited",
         "per_worker": [_worker(210.0, 100.0, layers=2), _worker(200.0, 100.0, layers=2)]},
        {"network": "resnet20", "workers": 2, "cap": "10mbit",
         "per_worker": [_worker(1250.0, 100.0, gradient=900.0, layers=2),
                        _worker(1240.0, 100.0, gradient=900.0, layers=2)]},
    ]
    rows = {r["cap"] if r["workers"] > 1 else "single": r for r in scaling.model_rows(configs)}
    assert "model" not in rows["single"]
    capped = rows["10mbit"]
    syncs = scaling.SYNCS_PER_BATCH_NORM * 2
    # as written: compute + uncapped gradient all-reduce + syncs x one float + link
    assert capped["model"]["step_ms"] == pytest.approx(100 + 10 + syncs * 2.0 + 1000)
    assert capped["error"] == pytest.approx(capped["model"]["step_ms"] / 1250 - 1)
    # calibrated: the uncapped step's slowest worker leaves (210 - 100 - 10) ms for the syncs
    assert capped["per_sync_ms"] == pytest.approx(100 / syncs)
    assert capped["corrected"]["step_ms"] == pytest.approx(100 + 10 + 100 + 1000)
    assert rows["unlimited"]["calibration"] and not capped["calibration"]
    assert rows["unlimited"]["corrected_error"] == pytest.approx(0.0)


def test_the_link_for_90_percent_and_when_none_will_do():
    # 9 ms of compute leaves 1 ms; 2 workers move 1 MB over the link: 1 GB/s
    assert link_for_efficiency(0.009, 1e6, 2, 0.0) == pytest.approx(1e9)
    assert link_for_efficiency(0.009, 1e6, 2, 0.0, fixed_s=0.0005) == pytest.approx(2e9)
    # 100 workers: 198 hops of 5 us are 0.99 ms, nearly all of the 1 ms
    assert link_for_efficiency(0.009, 1e6, 100, 5e-6) > 1e11
    assert link_for_efficiency(0.009, 1e6, 100, 50e-6) is None
    assert link_for_efficiency(0.009, 1e6, 1, 0.0) == 0.0
