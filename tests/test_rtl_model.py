"""A whole model (`bbs_model`) under Verilator, through the Python-free harness
(tb/model_harness.py): random models as tests/test_hdl_model.py makes them, with and without
random stalls, against the golden forward pass, and the cycle figures against the layer
table."""

import dataclasses
import functools

import numpy as np
import pytest

from bbsparse.golden.model import IntegerModel
from bbsparse.hdl.generate import describe_model
from bbsparse.tb.harness import Stalls
from bbsparse.tb.model_harness import run_model

from .test_hdl_model import random_model

CASES = {
    "3layers-pes2": dict(sizes=(20, 13, 9, 5), lanes=2, pes=2, bank_size=4, nnz=2),
    # One layer with an output shift; test_model_without_shifts has none at all.
    "one-layer-pes3": dict(sizes=(12, 7), lanes=2, pes=3, bank_size=2, nnz=1, shift=3),
    "wide-hidden": dict(sizes=(16, 24, 8), lanes=4, pes=1, bank_size=4, nnz=1),
}
STALLS = Stalls(x_idle=0.3, y_stall=0.3, y_burst=0.01)
#: Cycles a layer-to-layer hand-over (the hidden y scattered into the next x) may take
#: beyond the pipeline latency; 3-4 are measured.
HANDOVER_SLACK = 8


def case_seed(name: str) -> int:
    return sum(CASES[name]["sizes"]) + CASES[name]["lanes"]


@functools.cache
def case_model(name: str) -> IntegerModel:
    case = dict(CASES[name])
    shift = case.pop("shift", None)
    model = random_model(case_seed(name), **case)
    if shift is not None:
        last = dataclasses.replace(model.layers[-1], out_shift=shift)
        model = IntegerModel(model.config, (*model.layers[:-1], last), model.out_width,
                             model.bias_width)
    return model


def case_inputs(name: str, vectors: int) -> np.ndarray:
    """Random inputs, the first two vectors at the ends of the range."""
    model = case_model(name)
    lo, hi = -(1 << (model.config.act_width - 1)), (1 << (model.config.act_width - 1)) - 1
    X = np.random.default_rng(case_seed(name)).integers(lo, hi + 1, (vectors, model.inputs))
    X[0], X[1] = lo, hi
    return X


def pipeline_floor(model: IntegerModel) -> int:
    """The fewest cycles one inference can take: per layer, its x frame, its w frame and
    then the core's and the output stage's latency before its last result exists (the next
    layer's x is made of all of them)."""
    info = describe_model(model)
    layers = info["model"]["layers"]
    latency = info["derived"]["core_latency"] + info["derived"]["output_latency"]
    return sum(layer["x_beats"] + layer["w_beats"] + latency for layer in layers)


@pytest.mark.parametrize("stalls", [Stalls(), STALLS], ids=["free", "stalls"])
@pytest.mark.parametrize("name", list(CASES))
def test_model_matches_golden(name, stalls, tmp_path):
    model = case_model(name)
    seed = case_seed(name)
    X = case_inputs(name, vectors=8)
    result = run_model(model, X, seed=seed, stalls=stalls, workdir=tmp_path)
    report = result.report
    print(name, {k: report[k] for k in ("cycles", "cycles_per_inference",
                                        "cycles_per_inference_batch", "ideal_cycles",
                                        "fill_cycles", "sim_seconds",
                                        "verilator_build_seconds")})
    expected = model.forward(X)
    mismatches = np.argwhere(result.y != expected)
    assert mismatches.size == 0, (
        f"seed {seed}: {len(mismatches)} outputs differ, first (vector, output) "
        f"{tuple(mismatches[0])}: RTL {result.y[tuple(mismatches[0])]}, "
        f"golden {expected[tuple(mismatches[0])]}")
    assert result.y.dtype == np.int64 and result.y.shape == expected.shape
    assert not report["error"], f"seed {seed}: error output rose"
    assert report["y_tlast_ok"], f"seed {seed}: y tlast misplaced"

    layers = len(model.layers)
    floor = pipeline_floor(model)
    # Stalls only add cycles; nothing overlaps within one inference.
    assert report["cycles_per_inference"] >= floor, f"seed {seed}: {report}"
    assert report["fill_cycles"] == report["cycles_per_inference"] - report["ideal_cycles"]
    w_beats = sum(layer["w_beats"] for layer in describe_model(model)["model"]["layers"])
    # The one core runs every layer's w frame of every vector, one beat a cycle at most.
    assert report["cycles"] >= len(X) * w_beats
    if stalls == STALLS:
        assert report["y_wait_cycles"] > 0, "no back-pressure happened"
    else:
        if layers == 1:
            assert report["cycles_per_inference"] == floor, f"seed {seed}: {report}"
        assert report["cycles_per_inference"] <= floor + HANDOVER_SLACK * (layers - 1), (
            f"seed {seed}: {report}")
        # The next vector's x is taken while the current one's last layers run.
        assert report["cycles_per_inference_batch"] < report["cycles_per_inference"]


def test_second_run_is_cached(tmp_path):
    name = "one-layer-pes3"
    model = case_model(name)
    X = case_inputs(name, vectors=3)
    run_model(model, X, workdir=tmp_path)
    calls = []
    result = run_model(model, X[2], workdir=tmp_path,
                       progress=lambda done, total: calls.append((done, total)))
    assert result.report["cached"] is True
    assert result.report["verilator_build_seconds"] == 0.0
    assert calls == [(0, 1), (1, 1)]
    assert result.y.shape == (model.outputs,)
    np.testing.assert_array_equal(result.y, model.forward(X[2]))


@pytest.mark.parametrize("X, message", [
    (np.zeros((2, 11), dtype=int), r"X must have shape \(12,\) or \(batch, 12\)"),
    (np.zeros((0, 12), dtype=int), r"with batch >= 1, not \(0, 12\)"),
    (np.full((2, 12), 128), r"X\[0, 0\] = 128 does not fit act_width = 8"),
    (np.full(12, 0.5), r"X must hold integers"),
])
def test_run_model_rejects_bad_inputs(X, message):
    with pytest.raises(ValueError, match=message):
        run_model(case_model("one-layer-pes3"), X)


def test_run_model_rejects_bad_stalls():
    with pytest.raises(ValueError, match=r"y_stall must be in \[0, 1\), not 1.0"):
        run_model(case_model("one-layer-pes3"), np.zeros(12, dtype=int),
                  stalls=Stalls(y_stall=1.0))




def test_model_without_shifts():
    """Every layer with out_shift 0 (no rounding half anywhere) builds under -Wall and
    matches: no zero-width field is left in the output stage."""
    case = dict(CASES["one-layer-pes3"])
    case.pop("shift")
    model = random_model(case_seed("one-layer-pes3"), **case)
    assert all(layer.out_shift == 0 for layer in model.layers)
    X = case_inputs("one-layer-pes3", vectors=4)
    np.testing.assert_array_equal(run_model(model, X).y, model.forward(X))
