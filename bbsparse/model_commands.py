"""``bbsparse compile`` and ``bbsparse run``: a user's ONNX model on the chip (DESIGN §16)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bbsparse.cliutil import (
    CliError,
    check_outputs,
    load_floats,
    load_integers,
    megahertz,
    positive_int,
    write_outputs,
)

__all__ = ["add_compile", "add_run"]

_SUPPORTED = """supported ONNX: chains of Gemm (transB, alpha, beta, bias) or MatMul + Add (constant
bias) with Relu between them; Identity, Cast to float, Flatten/Reshape of the batch input
are skipped. Element-wise preprocessing before the first linear layer (Scaler, Sub, Div,
...) and the tail after the last one (Softmax, ArgMax, ArrayFeatureExtractor, ...) run on
the host with onnxruntime. Anything else between linear layers is refused."""


def _labels(path: str | None):
    if path is None:
        return None
    try:
        return load_integers(path, (1,), "a 1-D array of labels")
    except CliError:
        array = np.load(path, allow_pickle=False)
        if array.ndim != 1:
            raise CliError(f"{path} holds shape {array.shape}; need a 1-D array of "
                           f"labels") from None
        return array


def add_compile(subparsers) -> None:
    from bbsparse.compiler.build import BOARD_TARGETS, TARGETS
    from bbsparse.synth.boards import BOARDS

    parser = subparsers.add_parser(
        "compile",
        help="compile an ONNX model (linear layers + ReLU) into an accelerator folder",
        description="Prune, quantize (int8, power-of-two scales, biases) and generate the "
                    "accelerator that runs every linear layer of MODEL on chip, one after "
                    "another on one bank-balanced sparse core, weights in on-chip ROM.",
        epilog=_SUPPORTED,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL.onnx", help="the trained model")
    parser.add_argument("--calibration", required=True, metavar="CAL.npy",
                        help="float inputs (samples, features) for the scales")
    parser.add_argument("--pattern", default="bbs", choices=["bbs"],
                        help="sparsity pattern of the core (default: bbs)")
    parser.add_argument("--bank-size", type=positive_int, required=True, metavar="K",
                        help="columns per bank")
    parser.add_argument("--nnz-per-bank", type=positive_int, required=True, metavar="N",
                        help="weights kept per bank (a layer already within it is kept as is)")
    parser.add_argument("--lanes", type=positive_int, default=8,
                        help="multipliers per PE (default: 8, the UP5K's 8 DSPs)")
    parser.add_argument("--pes", type=positive_int, default=1, help="PEs (default: 1)")
    parser.add_argument("--target", choices=TARGETS, default="sim",
                        help="sim (Verilator only), a board (bitstream with the UART top) or "
                             "a chip (bitstream of the core alone) (default: sim)")
    parser.add_argument("--finetune", metavar="X.npy",
                        help="float inputs for masked fine-tuning after pruning")
    parser.add_argument("--labels", metavar="y.npy",
                        help="labels of --finetune's inputs (or of --calibration's without "
                             "it): accuracy is reported after every step")
    parser.add_argument("--epochs", type=positive_int, default=10,
                        help="fine-tuning epochs (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="fine-tuning seed (default: 0)")
    parser.add_argument("--placement-seed", type=positive_int, default=1,
                        help="nextpnr seed for an FPGA target (default: 1)")
    parser.add_argument("--clock-mhz", type=megahertz, metavar="MHZ",
                        help="a board: the design clock its PLL makes (default: the board's "
                             "model clock, "
                             + ", ".join(f"{name} {BOARDS[name].model_clock_hz / 1e6:g}"
                                         for name in BOARD_TARGETS)
                             + " MHz); a chip: the clock constraint (default: the target's)")
    parser.add_argument("--baud", type=positive_int,
                        help="a board: the UART's rate, within 2 %% of the clock / an integer "
                             "(default: 115200; bbsparse run uses it)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder to write (replaced whole, only when all succeeded)")
    parser.set_defaults(run=run_compile)


def run_compile(args) -> int:
    from bbsparse.compiler.build import CompileOptions, compile_model
    from bbsparse.compiler.quantize import CoreShape

    calibration = load_floats(args.calibration, (2,), "a 2-D array (samples, features)")
    finetune_x = (load_floats(args.finetune, (2,), "a 2-D array (samples, features)")
                  if args.finetune else None)
    labels = _labels(args.labels)
    if finetune_x is not None and labels is None:
        raise CliError("--finetune needs --labels")
    shape = CoreShape(pattern=args.pattern, bank_size=args.bank_size,
                      nnz_per_bank=args.nnz_per_bank, lanes=args.lanes, pes=args.pes)
    options = CompileOptions(model=args.model, calibration=calibration, shape=shape,
                             target=args.target, finetune_x=finetune_x, labels=labels,
                             epochs=args.epochs, seed=args.seed,
                             placement_seed=args.placement_seed, clock_mhz=args.clock_mhz,
                             baud=args.baud)
    from bbsparse.synth.tools import FlowError

    try:
        compile_model(options, args.out)
    except FlowError as exc:
        raise CliError(str(exc)) from None
    return 0


def add_run(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a compiled model on its RTL (Verilator) or its board, checked",
        description="Quantize X with the compiled input scale, run it through the compiled "
                    "accelerator (its RTL under Verilator, or the board over the UART with "
                    "--port), write the dequantized outputs of the last accelerated layer "
                    "and a JSON report beside them: golden mismatches (must be 0), cycles "
                    "per inference, latency, top-1 agreement with onnxruntime, accuracy.",
    )
    parser.add_argument("folder", metavar="DIR", help="a folder bbsparse compile wrote")
    parser.add_argument("--x", required=True, metavar="X.npy",
                        help="float inputs (batch, features), as the model takes them")
    parser.add_argument("--out", required=True, metavar="Y.npy",
                        help="outputs (batch, outputs) float32; Y.json beside it")
    parser.add_argument("--labels", metavar="y.npy", help="labels of X: accuracy")
    parser.add_argument("--port", help="serial port of the board (default: simulate)")
    parser.add_argument("--baud", type=positive_int,
                        help="baud rate with --port (default: the compiled board's, "
                             "bbsparse compile --baud, else 115200)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the simulation's stall generators (default: 1)")
    parser.add_argument("--waves", metavar="FILE.vcd", help="waveforms of the simulation")
    parser.set_defaults(run=run_run)


def run_run(args) -> int:
    from bbsparse.compiler.build import BOARD_BAUD, load_compiled
    from bbsparse.compiler.run import run_compiled

    out = Path(args.out)
    report_path = out.with_suffix(".json")
    check_outputs([out, report_path])
    X = load_floats(args.x, (1, 2), "(features,) or (batch, features)")
    labels = _labels(args.labels)
    compiled = load_compiled(args.folder)
    baud = args.baud or compiled.manifest.get("bitstream", {}).get("baud") or BOARD_BAUD
    Y, report = run_compiled(compiled, X, labels=labels, seed=args.seed, port=args.port,
                             baud=baud, waves=args.waves)
    write_outputs({out: Y.astype(np.float32),
                   report_path: json.dumps(report, indent=2) + "\n"})
    shown = {k: report[k] for k in ("golden_mismatches", "cycles_per_inference", "latency_us",
                                    "top1_agreement_with_onnxruntime", "accuracy")
             if k in report}
    print("run: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in shown.items()))
    print(f"wrote {out} and {report_path}")
    failed = (report["golden_mismatches"] or report.get("error")
              or report.get("y_tlast_ok") is False)
    return 1 if failed else 0
