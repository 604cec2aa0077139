"""Pruning, masked fine-tuning and quantization of float layers into an IntegerModel
(bbsparse.compiler.quantize)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from bbsparse.compiler.quantize import (
    CompileError,
    CoreShape,
    accuracy,
    finetune,
    float_forward,
    prune_layers,
    quantize,
)
from bbsparse.golden.arith import signed_range
from bbsparse.golden.prune import check_bbs, prune_bbs

SEED = 20261202


@dataclass
class Layer:
    """What bbsparse.onnx_import's FloatLayer carries (duck-typed)."""

    name: str
    weight: np.ndarray
    bias: np.ndarray | None
    relu: bool


def random_layers(rng, sizes, relus, bias_scale=0.1):
    layers = []
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        W = rng.normal(0.0, math.sqrt(2.0 / n_in), (n_out, n_in))
        layers.append(Layer(f"fc{k + 1}", W, rng.normal(0.0, bias_scale, n_out), relus[k]))
    return layers


def clusters(rng, n, dims, classes, spread=0.35):
    """A separable synthetic set: `classes` Gaussian blobs around random unit-ish centres."""
    centres = rng.normal(0.0, 1.0, (classes, dims))
    labels = rng.integers(0, classes, n)
    X = centres[labels] + rng.normal(0.0, spread, (n, dims))
    return X, labels


def parts(layers):
    return ([layer.weight for layer in layers], [layer.bias for layer in layers],
            [layer.relu for layer in layers])


# -- construction --------------------------------------------------------------------------


def test_core_shape_rejects_bad_choices():
    with pytest.raises(CompileError, match="pattern must be one of 'bbs', 'unstructured', 'cbs', "
                                           "not 'block'"):
        CoreShape(pattern="block", bank_size=8, nnz_per_bank=2)
    with pytest.raises(CompileError, match=r"core: nnz_per_bank must not exceed bank_size \(8\)"
                                           r", not 9"):
        CoreShape(bank_size=8, nnz_per_bank=9)
    with pytest.raises(CompileError, match="act_width must be at least 2 bits"):
        CoreShape(bank_size=8, nnz_per_bank=1, act_width=1)
    with pytest.raises(CompileError, match="lanes must be a power of two"):
        CoreShape(pattern="unstructured", bank_size=8, nnz_per_bank=1, lanes=6)


# -- pruning -------------------------------------------------------------------------------


def test_prune_keeps_a_bbs_layer_and_prunes_a_dense_one():
    rng = np.random.default_rng(SEED)
    shape = CoreShape(bank_size=8, nnz_per_bank=2)
    user_pruned = prune_bbs(rng.normal(size=(6, 32)), 8, 2)
    dense = rng.normal(size=(5, 32))
    layers = [Layer("a", user_pruned, None, True), Layer("b", dense, None, False)]
    messages = []
    weights, status = prune_layers(layers, shape, log=messages.append)
    assert status == ["kept", "pruned"], f"seed {SEED}"
    assert np.array_equal(weights[0], user_pruned)
    assert weights[1].shape == dense.shape and weights[1].dtype == np.float64
    assert check_bbs(weights[1], 8, 2) is None
    assert np.array_equal(weights[1], prune_bbs(dense, 8, 2))
    assert np.count_nonzero(weights[1]) == 5 * 4 * 2
    assert "kept" in messages[0] and "pruned, 160 -> 40 nonzero" in messages[1], messages


def test_prune_pads_columns_to_a_bank_and_removes_the_padding():
    rng = np.random.default_rng(SEED + 1)
    shape = CoreShape(bank_size=8, nnz_per_bank=2)
    W = rng.normal(size=(4, 13))  # banks 0..7 and 8..12 (+3 zero columns)
    (pruned,), status = prune_layers([Layer("odd", W, None, True)], shape)
    assert status == ["pruned"]
    assert pruned.shape == (4, 13)
    padded = np.pad(W, ((0, 0), (0, 3)))
    assert np.array_equal(pruned, prune_bbs(padded, 8, 2)[:, :13])
    assert check_bbs(np.pad(pruned, ((0, 0), (0, 3))), 8, 2) is None
    assert np.all(np.count_nonzero(pruned[:, 8:], axis=1) == 2)
    # Pruned once, it follows the pattern and is kept the second time.
    (again,), status = prune_layers([Layer("odd", pruned, None, True)], shape)
    assert status == ["kept"] and np.array_equal(again, pruned)


def test_prune_unstructured_keeps_the_bbs_budget():
    rng = np.random.default_rng(SEED + 2)
    shape = CoreShape(pattern="unstructured", bank_size=8, nnz_per_bank=1)
    W = rng.normal(size=(10, 16))
    sparse = np.where(rng.random((10, 16)) < 0.05, W, 0.0)  # well under 20 nonzeros
    weights, status = prune_layers([Layer("w", W, None, True), Layer("s", sparse, None, False)],
                                   shape)
    assert status == ["pruned", "kept"]
    assert np.count_nonzero(weights[0]) == 10 * 2 * 1
    kept = np.abs(weights[0][weights[0] != 0])
    assert kept.min() >= np.abs(W[weights[0] == 0]).max()  # the largest magnitudes survive
    assert np.array_equal(weights[1], sparse)


def test_prune_names_the_layer_with_a_nan():
    W = np.ones((2, 8))
    W[1, 3] = np.nan
    with pytest.raises(CompileError, match=r"layer 1 \(bad\): weight \(1, 3\) is nan"):
        prune_layers([Layer("ok", np.ones((8, 8)), None, True), Layer("bad", W, None, False)],
                     CoreShape(bank_size=8, nnz_per_bank=1))


# -- fine-tuning ---------------------------------------------------------------------------


def test_finetune_improves_accuracy_and_keeps_pruned_weights_zero():
    rng = np.random.default_rng(SEED + 3)
    X, labels = clusters(rng, 400, 16, 3)
    labels = np.array([5, 7, 9])[labels]  # classes need not be 0..n-1
    layers = random_layers(rng, [16, 24, 3], [True, False])
    weights, _ = prune_layers(layers, CoreShape(bank_size=8, nnz_per_bank=2))
    masks = [W != 0 for W in weights]
    biases = [layer.bias for layer in layers]
    relus = [layer.relu for layer in layers]
    before = accuracy(weights, biases, relus, X, labels)
    log = []
    tuned, tuned_biases = finetune(layers, weights, masks, X, labels, epochs=15, seed=4,
                                   rate=3e-3, log=log.append)
    after = accuracy(tuned, tuned_biases, relus, X, labels)
    assert after >= before and after >= 0.95, f"seed {SEED + 3}: {before} -> {after}"
    assert len(log) == 15 and log[-1].startswith("fine-tune epoch 15/15")
    for W, mask, old in zip(tuned, masks, weights, strict=True):
        assert np.all(W[~mask] == 0) and not np.signbit(W[~mask]).any()
        assert not np.array_equal(W, old)  # it did train the kept weights
    assert not np.array_equal(tuned_biases[0], biases[0])  # and the biases
    # Deterministic from the seed; the inputs are left alone.
    again = finetune(layers, weights, masks, X, labels, epochs=15, seed=4, rate=3e-3)
    assert all(np.array_equal(a, b) for a, b in zip(again[0] + again[1],
                                                    tuned + tuned_biases, strict=True))
    assert np.array_equal(weights[0] != 0, masks[0])


def test_finetune_refuses_more_classes_than_outputs():
    rng = np.random.default_rng(SEED + 4)
    layers = random_layers(rng, [8, 3], [False])
    X = rng.normal(size=(20, 8))
    with pytest.raises(CompileError, match=r"layer 0 \(fc1\): 3 outputs for 4 classes"):
        finetune(layers, [layers[0].weight], None, X, np.arange(20) % 4, epochs=1)


def test_binary_logistic_output():
    rng = np.random.default_rng(SEED + 5)
    X, labels = clusters(rng, 200, 8, 2)
    layers = random_layers(rng, [8, 8, 1], [True, False])
    weights, biases = finetune(layers, [layer.weight for layer in layers], None, X,
                               labels, epochs=20, seed=1, rate=3e-3)
    assert accuracy(weights, biases, [True, False], X, labels) >= 0.95, f"seed {SEED + 5}"


# -- quantization --------------------------------------------------------------------------


def trained_network(seed, pattern="bbs"):
    """A 3-layer network (20 -> 24 -> 12 -> 4) pruned to 8/2 and trained on clusters."""
    rng = np.random.default_rng(seed)
    X, labels = clusters(rng, 500, 20, 4, spread=0.5)
    layers = random_layers(rng, [20, 24, 12, 4], [True, False, False])
    shape = CoreShape(pattern=pattern, bank_size=8, nnz_per_bank=2, lanes=8, pes=2)
    weights, _ = prune_layers(layers, shape)
    weights, biases = finetune(layers, weights, [W != 0 for W in weights], X, labels,
                               epochs=10, seed=seed, rate=3e-3)
    return shape, X, labels, weights, biases, [layer.relu for layer in layers]


@pytest.mark.parametrize("pattern", ["bbs", "unstructured"])
def test_quantize_matches_the_float_network(pattern):
    shape, X, labels, weights, biases, relus = trained_network(SEED + 6, pattern)
    q = quantize(weights, biases, relus, X, shape, names=["fc1", "fc2", "fc3"])
    model, config = q.model, q.model.config
    assert config.cols == 24 and config.pattern == pattern  # widest in-dim, whole banks
    assert config.acc_width == config.default_acc_width and config.out_shift == 0
    assert model.bias_width == config.acc_width and model.out_width == config.acc_width + 1
    assert [layer.name for layer in model.layers] == ["fc1", "fc2", "fc3"]
    lo, hi = signed_range(model.bias_width)
    for k, (layer, W, e) in enumerate(zip(model.layers, weights, q.exponents, strict=True)):
        assert layer.out_shift == e["out_shift"] >= 0
        assert e["acc"] == e["weight"] + e["input"]
        assert e["output"] - e["acc"] == e["out_shift"]
        assert lo <= layer.bias.min() and layer.bias.max() <= hi
        assert np.abs(layer.weights).max() <= 127
        assert not np.any((layer.weights != 0) & (W == 0)), f"layer {k} gained a nonzero"
        if k:
            assert e["input"] == q.exponents[k - 1]["output"]
    assert model.layers[-1].out_shift == 0 and q.output_exponent == q.exponents[-1]["acc"]
    if pattern == "bbs":
        for k in range(3):
            assert check_bbs(model.padded_weights(k), 8, 2) is None

    x_int = q.quantize_input(X)
    assert x_int.dtype == np.int64 and np.abs(x_int).max() <= 127
    assert np.abs(x_int).max() >= 64  # the finest scale: the largest |x| uses the top bit
    y = q.dequantize_output(model.forward(x_int))
    assert y.dtype == np.float32 and np.array_equal(y, q.run(X))
    reference = float_forward(weights, biases, relus, X)[-1]
    agree = np.mean(y.argmax(axis=1) == reference.argmax(axis=1))
    assert agree >= 0.95, f"seed {SEED + 6}: argmax agreement {agree}"
    error = np.abs(y - reference).max() / np.abs(reference).max()
    assert error < 0.1, f"seed {SEED + 6}: largest error {error:.3f} of the output range"
    assert accuracy(weights, biases, relus, X, labels) >= 0.9


def test_quantize_hidden_scale_and_shift():
    """One hidden ReLU layer with known figures: x up to 1.0 -> e_in = -6 (127 * 2**-7 <
    1.0); weights up to 0.5 -> e_w = -7; outputs up to 1.5 -> e_out = -6; out_shift =
    -6 - (-13) = 7."""
    W1 = np.array([[0.5, 0.25], [-0.5, 0.125]])
    W2 = np.array([[1.0, -1.0]])
    X = np.array([[1.0, 1.0], [0.5, -1.0]])
    b1 = np.array([0.75, 0.0])  # first output: 0.5 + 0.25 + 0.75 = 1.5
    q = quantize([W1, W2], [b1, np.zeros(1)], [True, False], X,
                 CoreShape(bank_size=2, nnz_per_bank=2, lanes=2))
    assert q.input_exponent == -6
    assert q.exponents[0] == {"weight": -7, "input": -6, "acc": -13, "output": -6,
                              "out_shift": 7}
    assert q.exponents[1] == {"weight": -6, "input": -6, "acc": -12, "output": -12,
                              "out_shift": 0}
    assert q.output_exponent == -12 and q.model.layers[1].out_shift == 0
    assert q.model.layers[0].bias.tolist() == [0.75 * 2**13, 0]
    assert np.array_equal(q.model.layers[0].weights, [[64, 32], [-64, 16]])
    assert np.array_equal(q.model.layers[1].weights, [[64, -64]])
    np.testing.assert_allclose(q.run(X), float_forward([W1, W2], [b1, [0.0]], [True, False],
                                                       X)[-1], atol=0.02)


def test_quantize_never_shifts_left():
    """Products that cancel: the hidden output (0.001) needs a finer scale (2**-16) than the
    accumulator's (2**-12); e_out is raised to e_acc, never a left shift."""
    W1 = np.array([[1.0, -1.0]])
    q = quantize([W1, np.array([[1.0]])], [None, np.zeros(1)], [True, False],
                 np.array([[1.0, 0.999]]), CoreShape(bank_size=2, nnz_per_bank=2, lanes=2))
    assert q.exponents[0] == {"weight": -6, "input": -6, "acc": -12, "output": -12,
                              "out_shift": 0}
    assert q.exponents[1]["input"] == -12
    assert q.model.layers[0].bias.tolist() == [0]  # None: no bias


def test_quantize_refuses_a_bias_that_overflows():
    rng = np.random.default_rng(SEED + 7)
    layers = random_layers(rng, [16, 8, 4], [True, False])
    biases = [layer.bias for layer in layers]
    biases[1] = biases[1].copy()
    biases[1][2] = 1e9
    weights, relus = [layer.weight for layer in layers], [layer.relu for layer in layers]
    weights, _ = prune_layers(layers, CoreShape(bank_size=8, nnz_per_bank=2))
    with pytest.raises(CompileError, match=r"^layer 1 \(fc2\): bias 1e\+09 \(row 2\) is .* "
                                           r"outside bias_width 18 \[-131072, 131071\]$"):
        quantize(weights, biases, relus, rng.normal(size=(10, 16)),
                 CoreShape(bank_size=8, nnz_per_bank=2), names=["fc1", "fc2"])


def test_quantize_refuses_mismatched_layers():
    shape = CoreShape(bank_size=8, nnz_per_bank=2)
    with pytest.raises(CompileError, match=r"layer 0 \(a\) gives 4 outputs but layer 1 \(b\) "
                                           r"takes 5 inputs"):
        quantize([np.ones((4, 8)), np.ones((2, 5))], [np.zeros(4), np.zeros(2)],
                 [True, False], np.ones((3, 8)), shape, names=["a", "b"])
    with pytest.raises(CompileError, match="calibration data of shape"):
        quantize([np.ones((4, 8))], [np.zeros(4)], [False], np.ones((3, 7)), shape)


# -- a digits-sized run --------------------------------------------------------------------


def test_digits_train_prune_finetune_quantize():
    """64 -> 32 -> 16 -> 10 on scikit-learn's digits, BBS 2 of every 8 on 8 lanes."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=0,
        stratify=digits.target)
    rng = np.random.default_rng(SEED + 8)
    layers = random_layers(rng, [64, 32, 16, 10], [True, True, False], bias_scale=0.0)
    weights, biases = finetune(layers, [layer.weight for layer in layers], None, X_train,
                               y_train, epochs=30, seed=1)
    relus = [layer.relu for layer in layers]
    dense = accuracy(weights, biases, relus, X_test, y_test)

    shape = CoreShape(bank_size=8, nnz_per_bank=2, lanes=8)
    trained = [Layer(layer.name, W, b, layer.relu)
               for layer, W, b in zip(layers, weights, biases, strict=True)]
    pruned, status = prune_layers(trained, shape)
    assert status == ["pruned"] * 3
    masks = [W != 0 for W in pruned]
    just_pruned = accuracy(pruned, biases, relus, X_test, y_test)
    tuned, tuned_biases = finetune(trained, pruned, masks, X_train, y_train, epochs=40,
                                   seed=2)
    pruned_accuracy = accuracy(tuned, tuned_biases, relus, X_test, y_test)

    q = quantize(tuned, tuned_biases, relus, X_train, shape, names=["fc1", "fc2", "fc3"])
    logits = q.run(X_test)
    int8 = float(np.mean(logits.argmax(axis=1) == y_test))
    print(f"digits 64-32-16-10: float {100 * dense:.2f} %, BBS 2/8 pruned "
          f"{100 * just_pruned:.2f} %, fine-tuned {100 * pruned_accuracy:.2f} %, int8 golden "
          f"{100 * int8:.2f} %; exponents {q.exponents}")
    assert dense >= 0.93, f"seed {SEED + 8}"
    assert just_pruned < pruned_accuracy, f"seed {SEED + 8}"  # fine-tuning recovers
    assert pruned_accuracy >= 0.93, f"seed {SEED + 8}"
    assert int8 >= pruned_accuracy - 0.02, f"seed {SEED + 8}: {pruned_accuracy} -> {int8}"
