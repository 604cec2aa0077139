"""The ``bbsparse`` command (DESIGN §8): a thin layer over the golden models and generator.

Each subcommand is an ``add_<name>(subparsers)`` function that declares its options and a
``run_<name>(args)`` function that does the work; :func:`main` dispatches. Every failure a
user can cause ends as one line on stderr, ``bbsparse: error: ...``, and exit status 2,
with no output file written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bbsparse.cliutil import (  # noqa: F401 - number_type: synth/flow.py until it moves
    PROG,
    CliError,
    MoveFile,
    Parser,
    add_config_options,
    check_folder,
    check_outputs,
    config_from,
    count,
    load_integers,
    load_matrix,
    minutes,
    number_type,
    positive_int,
    probability,
    save_array,
    staging_file,
    write_outputs,
)
from bbsparse.golden.prune import OPTIONS as PRUNE_OPTIONS
from bbsparse.golden.prune import PRUNERS, PruneOptionError
from bbsparse.toolchain import bbsparse_version

__all__ = ["CliError", "build_parser", "main"]


# -- prune -----------------------------------------------------------------------------------

def _prune_help() -> str:
    """The epilog of ``bbsparse prune``: every pattern of the pruner registry."""
    lines = ["patterns and their options:"]
    for pruner in PRUNERS.values():
        first, *rest = pruner.usage.split("\n")
        lines.append(f"  {pruner.name:<13} {first}")
        lines += [f"  {'':<13} {line}" for line in rest]
    lines.append("ties in magnitude go to the lower index, so the result is deterministic")
    return "\n".join(lines) + "\n"


def add_prune(subparsers) -> None:
    """Declare ``bbsparse prune``."""
    parser = subparsers.add_parser(
        "prune",
        help="prune a dense integer matrix to BBS (or another pattern)",
        description="Prune a dense integer matrix (.npy) by magnitude and write the result.",
        epilog=_prune_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--weights", required=True, metavar="W.npy", help="dense 2-D integer matrix"
    )
    parser.add_argument("--out", required=True, metavar="P.npy", help="pruned matrix to write")
    parser.add_argument(
        "--pattern",
        choices=list(PRUNERS),
        default="bbs",
        help="sparsity pattern (default: bbs)",
    )
    parser.add_argument("--bank-size", type=positive_int, metavar="K",
                        help="columns per bank (bbs: required; nm, unstructured, block: the "
                             "budget without their own options, see below)")
    parser.add_argument("--nnz-per-bank", type=positive_int, metavar="N",
                        help="weights kept per bank (bbs: required; as --bank-size)")
    parser.add_argument("--n", type=positive_int, help="nm: weights kept of every M")
    parser.add_argument("--m", type=positive_int, help="nm: group length")
    parser.add_argument("--nnz", type=count, metavar="TOTAL", help="unstructured: kept weights")
    parser.add_argument("--block", type=positive_int, metavar="B", help="block: block side")
    parser.add_argument("--blocks", type=count, metavar="COUNT", help="block: kept blocks")
    parser.set_defaults(run=run_prune)


def prune_params(args, shape: tuple[int, int]) -> tuple[dict, str]:
    """The keyword arguments of the chosen pruner and a description (the registry's rules)."""
    options = {name: getattr(args, name) for name in PRUNE_OPTIONS}
    try:
        return PRUNERS[args.pattern].resolve(options, shape, args.weights)
    except PruneOptionError as exc:
        raise CliError(str(exc)) from None


def run_prune(args) -> int:
    """``bbsparse prune``: load, prune, write atomically, print a one-line summary."""
    matrix = load_matrix(args.weights)
    params, description = prune_params(args, matrix.shape)
    check_outputs([args.out])
    pruned = PRUNERS[args.pattern](matrix, **params)
    save_array(args.out, pruned)
    rows, cols = pruned.shape
    kept = int(np.count_nonzero(pruned))
    print(
        f"{args.out}: {rows}x{cols} {pruned.dtype}, {description}: {kept} of {pruned.size} "
        f"weights nonzero (density {kept / pruned.size:.4f})"
    )
    return 0


# -- generate --------------------------------------------------------------------------------


def add_generate(subparsers) -> None:
    """Declare ``bbsparse generate``."""
    parser = subparsers.add_parser(
        "generate", help="write the core's Verilog and its JSON description",
        description="Generate bbs_spmv.v and bbs_spmv.json (parameters and derived figures) "
                    "for a configuration.")
    add_config_options(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.set_defaults(run=run_generate)


def run_generate(args) -> int:
    import time

    from bbsparse.hdl.generate import describe, write_design

    config = config_from(args)
    start = time.monotonic()
    out = Path(args.out)
    check_outputs([out / "bbs_spmv.v", out / "bbs_spmv.json"], make_dirs=True)
    v_path, j_path = write_design(config, out, write=lambda files: write_outputs(
        files, only_if_changed=True, make_dirs=True))
    derived = describe(config)["derived"]
    print(f"{v_path}, {j_path}: {config.lanes} lanes x {config.pes} PEs, "
          f"{config.format.outline(config)}, latency {derived['latency']} "
          f"({time.monotonic() - start:.1f} s)")
    return 0


# -- spmv ------------------------------------------------------------------------------------


def add_spmv(subparsers) -> None:
    """Declare ``bbsparse spmv``."""
    parser = subparsers.add_parser(
        "spmv", help="run y = W @ x on the generated RTL under Verilator",
        description="Multiply an integer weight matrix by one vector or a batch on the "
                    "generated RTL (Verilator) and write Y plus a JSON report of the cycle "
                    "figures. The configuration's pattern selects the engine: bbs (the "
                    "bank-balanced core: W must follow the bank pattern) or unstructured "
                    "(any sparsity, through the crossbar gather).")
    add_config_options(parser)
    parser.add_argument("--weights", required=True, metavar="W.npy",
                        help="(rows, cols) integer matrix following the configured pattern")
    parser.add_argument("--x", required=True, metavar="X.npy", help="(cols,) or (batch, cols)")
    parser.add_argument("--out", required=True, metavar="Y.npy",
                        help="results; the report goes beside it as Y.json")
    parser.add_argument("--seed", type=count, default=1,
                        help="seed of the stall generators (default 1)")
    parser.add_argument("--x-idle", type=probability, default=0.0, metavar="P",
                        help="probability of an idle cycle on the x stream (default 0)")
    parser.add_argument("--w-idle", type=probability, default=0.0, metavar="P",
                        help="probability of an idle cycle on the w stream (default 0)")
    parser.add_argument("--y-stall", type=probability, default=0.0, metavar="P",
                        help="probability of back-pressure on y in a cycle (default 0)")
    parser.add_argument("--y-burst", type=probability, default=0.0, metavar="P",
                        help="probability of starting a 1..256-cycle back-pressure burst "
                             "(default 0)")
    parser.add_argument("--waves", metavar="FILE.vcd", help="write a VCD of the run")
    parser.add_argument("--order", choices=("banks", "columns"), default="banks",
                        help="pattern unstructured: order of a row's nonzeros in the stream; "
                             "banks (default) avoids crossbar conflicts, columns is plain")
    parser.set_defaults(run=run_spmv)


def run_spmv(args) -> int:
    import json

    from bbsparse.golden import spmv as golden
    from bbsparse.tb.harness import SimulationError, Stalls
    from bbsparse.tb.harness import run_spmv as rtl_spmv

    config = config_from(args)
    weights = load_matrix(args.weights)
    x = load_integers(args.x, (1, 2), "a vector (cols,) or a batch (batch, cols)")
    rows, cols = weights.shape
    if cols > config.cols:
        raise CliError(f"{args.weights} has {cols} columns; the core is generated for cols = "
                       f"{config.cols} (a shorter matrix is padded, a longer one does not fit)")
    if x.shape[-1] != cols:
        raise CliError(f"{args.x} has {x.shape[-1]} columns; {args.weights} has {cols}")
    violation = config.format.weights_violation(config, weights)
    if violation is not None:
        raise CliError(f"{args.weights} breaks the configured pattern "
                       f"({config.pattern}): {violation}")
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    if json_path == out:
        raise CliError(f"--out {args.out}: the report goes beside the result as "
                       f"{json_path}, the same file; name the result Y.npy")
    outputs = [out, json_path] + ([Path(args.waves)] if args.waves else [])
    check_outputs(outputs)  # before the run: a bad path must not cost a simulation
    expected = golden.spmv(config, weights, x)  # also checks the value ranges
    stalls = Stalls(x_idle=args.x_idle, w_idle=args.w_idle, y_stall=args.y_stall,
                    y_burst=args.y_burst)
    # The simulator writes the waveform into a temporary file beside FILE.vcd, which is
    # renamed into place with the other outputs.
    waves = staging_file(args.waves) if args.waves else None
    try:
        result = rtl_spmv(config, weights, x, seed=args.seed, stalls=stalls, waves=waves,
                          order=args.order,
                          log=lambda message: print(message, file=sys.stderr, flush=True))
    except BaseException as exc:
        if waves is not None:
            waves.unlink(missing_ok=True)
        if isinstance(exc, SimulationError):  # the RTL's failure, not the user's: status 1
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        raise
    if waves is not None and waves.stat().st_size == 0:
        waves.unlink()
        raise CliError(f"the simulator wrote no waveform for {args.waves}")
    report = dict(result.report)
    mismatches = int(np.count_nonzero(result.y != expected))
    report["golden_mismatches"] = mismatches
    report["parameters"] = config.to_dict()
    files = {out: result.y, json_path: json.dumps(report, indent=2) + "\n"}
    if waves is not None:
        files[Path(args.waves)] = MoveFile(waves)
    write_outputs(files)
    print(f"{args.out}: {result.y.shape} from the RTL; cycles {report['cycles']} (ideal "
          f"{report['ideal_cycles']}), utilization {report['utilization']:.4f} whole run, "
          f"{report['utilization_steady']:.4f} steady; {report['sim_cycles_per_second'] / 1e6:.2f}"
          f" M simulated cycles/s; golden check: "
          + ("all match" if mismatches == 0 else f"{mismatches} MISMATCHES"))
    print(f"report: {json_path}" + (f"; waveform: {args.waves}" if args.waves else ""))
    failures = []
    if mismatches:
        failures.append(f"{mismatches} results differ from the golden model")
    if report["error"]:
        failures.append("the core raised its error output")
    if not report["y_tlast_ok"]:
        failures.append("y tlast was not on exactly the last row group of every matrix")
    if failures:
        print(f"{PROG}: {'; '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


# -- demo ------------------------------------------------------------------------------------


def add_demo(subparsers) -> None:
    """Declare ``bbsparse demo``."""
    parser = subparsers.add_parser(
        "demo", help="a real model end to end: train, prune, quantize, run on the RTL",
        description="Train a small network, prune it with every pattern at equal density, "
                    "quantize it to int8 with the core's output stage between the layers, run "
                    "the test split on the RTL (Verilator) and the golden model, print a table.")
    parser.add_argument("model", choices=("digits",),
                        help="digits: scikit-learn's handwritten digits, MLP 64-256-10")
    parser.add_argument("--out", default="build/demo-digits", metavar="DIR",
                        help="folder for the table, results.json and the int8 weights "
                             "(default: build/demo-digits)")
    parser.add_argument("--seed", type=count, default=0, metavar="N",
                        help="seed of the training (the data split is fixed; default 0)")
    parser.set_defaults(run=run_demo)


def run_demo(args) -> int:
    from bbsparse import demo_digits

    out = Path(args.out)
    check_folder(out)
    return demo_digits.main(out, args.seed)


# -- bench -----------------------------------------------------------------------------------


def add_bench(subparsers) -> None:
    """Declare ``bbsparse bench``."""
    from bbsparse.synth.targets import TARGETS

    parser = subparsers.add_parser(
        "bench", help="the project's figures in one run: patterns, scaling, FPGA targets",
        description="Measure BBS at several densities against unstructured and dense on one "
                    "array, the scaling with lanes and PEs, and the largest configuration "
                    "that fits each FPGA target (Yosys, nextpnr), every result checked "
                    "against the golden model; write results.json, results.md and plots. "
                    "With every target it takes 2-3 hours here, most of it the ECP5-85k "
                    "mix's placement seeds (--pnr-time-limit bounds each).")
    parser.add_argument("--out", default="build/bench", metavar="DIR",
                        help="output folder (default: build/bench; 'make bench-save' copies "
                             "a run into the committed bench/)")
    parser.add_argument("--targets", default=",".join(TARGETS), metavar="T1,T2",
                        help="FPGA targets, comma-separated, or 'none' (default: all: "
                             + ", ".join(TARGETS) + ")")
    parser.add_argument("--reuse-synth", action="store_true",
                        help="reuse a target's report.json when its configuration and the "
                             "Verilog of its synthesis top are unchanged")
    parser.add_argument("--seed", type=count, default=7, help="seed of the data (default 7)")
    parser.add_argument("--pnr-time-limit", type=minutes, metavar="MINUTES",
                        help="stop a nextpnr run after MINUTES of wall time: a further seed "
                             "then ranks below the seeds that finished, a first seed leaves "
                             "its core's row 'stopped' and the bench goes on (default: no "
                             "limit; 'make bench' gives 90)")
    parser.set_defaults(run=run_bench)


def _bench_command(args) -> str:
    """The ``bbsparse bench`` command line `args` stand for (results.md names it)."""
    from bbsparse.synth.targets import TARGETS

    parts = ["bbsparse bench", f"--out {args.out}"]
    if args.targets != ",".join(TARGETS):
        parts.append(f"--targets {args.targets}")
    if args.reuse_synth:
        parts.append("--reuse-synth")
    if args.seed != 7:
        parts.append(f"--seed {args.seed}")
    if args.pnr_time_limit:
        parts.append(f"--pnr-time-limit {args.pnr_time_limit:g}")
    return " ".join(parts)


def run_bench(args) -> int:
    from bbsparse import bench
    from bbsparse.synth.targets import TARGETS

    targets = [] if args.targets == "none" else args.targets.split(",")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise CliError(f"--targets: unknown target {unknown[0]!r}; known: "
                       f"{', '.join(TARGETS)}, or 'none'")
    out = Path(args.out)
    check_folder(out)
    from bbsparse.synth.tools import FlowError

    try:
        return bench.main(out, seed=args.seed, targets=targets, reuse_synth=args.reuse_synth,
                          pnr_time_limit=args.pnr_time_limit and 60 * args.pnr_time_limit,
                          command=_bench_command(args))
    except FlowError as exc:
        raise CliError(str(exc)) from None


# -- entry point -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``bbsparse`` with every subcommand."""
    parser = Parser(prog=PROG, description="Bank-balanced sparse SpMV accelerator generator.")
    parser.add_argument("--version", action="version", version=f"{PROG} {bbsparse_version()}")
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="command", parser_class=Parser
    )
    add_prune(subparsers)
    add_generate(subparsers)
    add_spmv(subparsers)
    add_demo(subparsers)
    add_bench(subparsers)
    from bbsparse.verify import add_verify

    add_verify(subparsers)
    # Imported here: synth_commands uses this module's helpers (CliError, config options).
    from bbsparse.synth_commands import add_board, add_synth

    add_synth(subparsers)
    add_board(subparsers)
    from bbsparse.model_commands import add_compile, add_run

    add_compile(subparsers)
    add_run(subparsers)
    from bbsparse.explore import add_explore

    add_explore(subparsers)
    return parser


def main(argv=None) -> int:
    """Run ``bbsparse`` with `argv` (default: the process arguments); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.run(args)
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        # The golden models raise ValueError with messages written for the user.
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except MemoryError:
        # The loaders and the configuration bounds refuse what cannot fit before allocating;
        # an input that is merely too large for this machine still ends in one line.
        print(f"{PROG}: error: not enough memory for this input", file=sys.stderr)
        return 2
    except SystemExit as exc:
        # --help exits through argparse; report its status instead of leaving the process.
        return exc.code if isinstance(exc.code, int) else 0
