"""`bbsparse run`: a compiled model on its RTL (Verilator) or its board, checked (DESIGN §16.4).

The float inputs go through the model's host-side head (onnxruntime), are quantized with
the calibrated input scale and run on the accelerator; its integer outputs are compared
with the golden integer model (they must be equal), dequantized, and compared with the
float model under onnxruntime (top-1 agreement) and with the labels when given.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .build import Compiled
from .quantize import CompileError

__all__ = ["run_compiled"]

Log = Callable[[str], None]


def _fmax(compiled: Compiled) -> tuple[float | None, str]:
    """The clock the latency is quoted at: the compiled bitstream's Fmax, else none."""
    bitstream = compiled.manifest.get("bitstream")
    if bitstream:
        return float(bitstream["fmax_mhz"]), f"Fmax of {bitstream['file']}"
    return None, "no bitstream in this folder (compiled for sim): compile with --target"


def _predicted_labels(compiled: Compiled, logits: np.ndarray) -> np.ndarray:
    """The class each row's outputs give: the tail's label output when the model has one
    (skl2onnx classifiers map indices to their classes there), else the largest output."""
    outputs = compiled.float_model.postprocess(logits) if compiled.float_model.tail_ops else {}
    for value in outputs.values():
        value = np.asarray(value)
        if value.shape == (len(logits),) and value.dtype.kind in "iuUSO":
            return value
    return logits.argmax(axis=1)


def run_compiled(compiled: Compiled, X: np.ndarray, *, labels: np.ndarray | None = None,
                 seed: int = 1, port: str | None = None, baud: int = 115200,
                 waves: str | None = None, log: Log = print) -> tuple[np.ndarray, dict]:
    """Run float inputs `X` ``(batch, features)`` on the compiled accelerator; return the
    dequantized outputs ``(batch, outputs)`` float32 and the report of DESIGN §16.4."""
    q = compiled.quantized
    model = q.model
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    if X.ndim != 2:
        raise CompileError(f"--x: need (batch, features), not shape {X.shape}")
    if labels is not None and len(labels) != len(X):
        raise CompileError(f"--labels holds {len(labels)} labels for {len(X)} inputs")
    features = np.asarray(compiled.float_model.preprocess(X), dtype=np.float64)
    if features.shape[1] != model.inputs:
        raise CompileError(f"--x gives {features.shape[1]} features after the model's "
                           f"preprocessing; the model takes {model.inputs}")
    x_int = q.quantize_input(features)
    golden = model.forward(x_int)
    started = time.monotonic()
    if port is None:
        from ..tb.model_harness import run_model

        def progress(done, total):
            log(f"run: {done}/{total} inputs simulated ({time.monotonic() - started:.1f} s)")

        run = run_model(model, x_int, seed=seed, waves=waves, progress=progress,
                        log=lambda message: log(message))
        y_int, figures = run.y, run.report
        where = "Verilator (the compiled top's RTL, weights in ROM)"
    else:
        from ..host import ModelHost

        y_int, figures = _on_board(ModelHost, port, baud, x_int, compiled, log)
        where = f"board on {port}"
    mismatches = int(np.count_nonzero(np.any(y_int != golden, axis=1)))
    Y = q.dequantize_output(y_int)
    reference = np.asarray(compiled.float_model.reference_logits(X))
    agreement = float(np.mean(reference.argmax(axis=1) == Y.argmax(axis=1)))
    fmax, fmax_note = _fmax(compiled)
    cycles = figures["cycles_per_inference"]
    report = {
        "inputs": len(X),
        "ran_on": where,
        "golden_mismatches": mismatches,
        "golden_mismatch_note": "inputs whose integer outputs differ from the golden integer "
                                "model (must be 0)",
        "cycles_per_inference": cycles,
        "cycles_note": "batch 1: first x beat accepted to the last y beat, inclusive",
        "fmax_mhz": fmax,
        "fmax_note": fmax_note,
        "latency_us": cycles / fmax if fmax else None,
        "top1_agreement_with_onnxruntime": agreement,
        **{key: figures[key] for key in ("cycles", "ideal_cycles", "fill_cycles", "error",
                                         "y_tlast_ok", "sim_seconds",
                                         "verilator_build_seconds", "cached")
           if key in figures},
        "seed": seed,
    }
    if labels is not None:
        predicted = _predicted_labels(compiled, Y)
        report["accuracy"] = float(np.mean(predicted.astype(str) == np.asarray(labels)
                                           .astype(str)))
        golden_pred = _predicted_labels(compiled, q.dequantize_output(golden))
        report["accuracy_golden"] = float(np.mean(golden_pred.astype(str)
                                                  == np.asarray(labels).astype(str)))
        reference_pred = _predicted_labels(compiled, reference.astype(np.float32))
        report["accuracy_float"] = float(np.mean(reference_pred.astype(str)
                                                 == np.asarray(labels).astype(str)))
    return Y, report


def _on_board(host_class, port, baud, x_int, compiled, log):
    """Each input over the UART: LOAD_X, RUN, READ_Y, READ_CYCLES (DESIGN §10)."""
    with host_class.open(port, baud) as host:
        rows, cycles = [], []
        for i, x in enumerate(x_int):
            y, count = host.infer(x)
            rows.append(y)
            cycles.append(count)
            if (i + 1) % 100 == 0 or i + 1 == len(x_int):
                log(f"run: {i + 1}/{len(x_int)} inputs on the board")
    return np.array(rows), {"cycles_per_inference": cycles[0], "cycles": int(sum(cycles)),
                            "board_cycles": cycles}


def write_report(path: Path, report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"
