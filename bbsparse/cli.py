"""The ``bbsparse`` command (DESIGN §8): a thin layer over the golden models and generator.

Each subcommand is an ``add_<name>(subparsers)`` function that declares its options and a
``run_<name>(args)`` function that does the work; :func:`main` dispatches. Every failure a
user can cause ends as one line on stderr, ``bbsparse: error: ...``, and exit status 2,
with no output file written.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bbsparse.golden.prune import OPTIONS as PRUNE_OPTIONS
from bbsparse.golden.prune import PRUNERS, PruneOptionError

__all__ = ["CliError", "main"]

PROG = "bbsparse"


class CliError(Exception):
    """A user error: printed as ``bbsparse: error: <message>``, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other error of the tool."""

    def error(self, message):
        hint = f" (see '{self.prog} --help')"
        raise CliError(message + hint)


def number_type(convert, accept, rule: str):
    """An argparse `type` that parses with `convert` and keeps only values `accept` takes;
    anything else is refused as "must be <rule>, not '<text>'"."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
        return value

    return parse


_positive_int = number_type(int, lambda v: v >= 1, "a positive integer")
_count = number_type(int, lambda v: v >= 0, "a non-negative integer")
_probability = number_type(float, lambda v: 0.0 <= v < 1.0, "a probability in [0, 1)")


# -- file helpers ----------------------------------------------------------------------------


def load_matrix(path: str) -> np.ndarray:
    """A 2-D integer matrix from a .npy file; CliError with one clear line otherwise."""
    return load_integers(path, (2,), "a 2-D matrix (rows, cols)")


def load_integers(path: str, ndims: tuple[int, ...], shape_text: str) -> np.ndarray:
    """A non-empty integer array of one of `ndims` dimensions from a .npy file."""
    file = Path(path)
    try:
        with file.open("rb") as stream:
            magic = stream.read(6)
    except IsADirectoryError:
        raise CliError(f"{path} is a directory, not a .npy file") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if magic != b"\x93NUMPY":
        hint = " (a .npz archive; save one array with numpy.save)" if magic[:2] == b"PK" else ""
        raise CliError(f"{path} is not a .npy file{hint}")
    try:
        matrix = np.load(file, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise CliError(f"{path} holds Python objects; need an integer matrix") from None
        raise CliError(f"{path} is not a readable .npy file: {exc}") from None
    except (OSError, EOFError) as exc:
        raise CliError(f"{path} is not a readable .npy file: {exc}") from None
    if matrix.ndim not in ndims:
        raise CliError(
            f"{path} holds a {matrix.ndim}-D array of shape {matrix.shape}; need {shape_text}"
        )
    if not np.issubdtype(matrix.dtype, np.integer):
        raise CliError(
            f"{path} holds {matrix.dtype} values; need integers (quantise the weights first)"
        )
    if matrix.size == 0:
        raise CliError(f"{path} holds an empty array of shape {matrix.shape}")
    return matrix


def save_array(path: str, array: np.ndarray) -> None:
    """Write `array` to `path` as .npy atomically: a temporary file, then a rename.

    A reader never sees a half-written file, and a failure leaves no file behind.
    """
    target = Path(path)
    if target.is_dir():
        raise CliError(f"cannot write {path}: it is a directory")
    directory = target.parent
    if not directory.is_dir():
        raise CliError(f"cannot write {path}: directory {str(directory)!r} does not exist")
    try:
        handle, temporary = tempfile.mkstemp(
            dir=directory, prefix=f".{target.name}.", suffix=".tmp"
        )
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, array, allow_pickle=False)
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
    parser.add_argument("--bank-size", type=_positive_int, metavar="K", help="columns per bank")
    parser.add_argument("--nnz-per-bank", type=_positive_int, metavar="N", help="kept per bank")
    parser.add_argument("--n", type=_positive_int, help="nm: weights kept of every M")
    parser.add_argument("--m", type=_positive_int, help="nm: group length")
    parser.add_argument("--nnz", type=_count, metavar="TOTAL", help="unstructured: kept weights")
    parser.add_argument("--block", type=_positive_int, metavar="B", help="block: block side")
    parser.add_argument("--blocks", type=_count, metavar="COUNT", help="block: kept blocks")
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
    pruned = PRUNERS[args.pattern](matrix, **params)
    save_array(args.out, pruned)
    rows, cols = pruned.shape
    kept = int(np.count_nonzero(pruned))
    print(
        f"{args.out}: {rows}x{cols} {pruned.dtype}, {description}: {kept} of {pruned.size} "
        f"weights nonzero (density {kept / pruned.size:.4f})"
    )
    return 0


# -- configuration options shared by generate / spmv ------------------------------------------


def add_config_options(parser) -> None:
    parser.add_argument("--config", metavar="C.toml",
                        help="configuration file (keys of DESIGN section 2; default: built-in "
                             "defaults, as configs/default.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override one parameter (repeatable)")


def config_from(args):
    from bbsparse.golden.config import ConfigError, load_config

    try:
        return load_config(args.config, args.set)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


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
    try:
        v_path, j_path = write_design(config, args.out)
    except OSError as exc:
        raise CliError(f"cannot write into {args.out}: {exc.strerror}") from None
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
        description="Multiply a BBS weight matrix by one vector or a batch on the generated "
                    "RTL (Verilator) and write Y plus a JSON report of the cycle figures.")
    add_config_options(parser)
    parser.add_argument("--weights", required=True, metavar="W.npy",
                        help="(rows, cols) integer matrix following the configured pattern")
    parser.add_argument("--x", required=True, metavar="X.npy", help="(cols,) or (batch, cols)")
    parser.add_argument("--out", required=True, metavar="Y.npy",
                        help="results; the report goes beside it as Y.json")
    parser.add_argument("--seed", type=_count, default=1, help="seed of the stall generators")
    parser.add_argument("--x-idle", type=_probability, default=0.0, metavar="P",
                        help="probability of an idle cycle on the x stream (default 0)")
    parser.add_argument("--w-idle", type=_probability, default=0.0, metavar="P",
                        help="probability of an idle cycle on the w stream (default 0)")
    parser.add_argument("--y-stall", type=_probability, default=0.0, metavar="P",
                        help="probability of back-pressure on y in a cycle (default 0)")
    parser.add_argument("--y-burst", type=_probability, default=0.0, metavar="P",
                        help="probability of starting a 1..256-cycle back-pressure burst")
    parser.add_argument("--waves", metavar="FILE.vcd", help="write a VCD of the run")
    parser.add_argument("--order", choices=("banks", "columns"), default="banks",
                        help="pattern unstructured: order of a row's nonzeros in the stream; "
                             "banks (default) avoids crossbar conflicts, columns is plain")
    parser.set_defaults(run=run_spmv)


def run_spmv(args) -> int:
    import json

    from bbsparse.golden import spmv as golden
    from bbsparse.tb.harness import Stalls
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
    if not out.parent.is_dir():
        raise CliError(f"cannot write {args.out}: directory {str(out.parent)!r} does not exist")
    expected = golden.spmv(config, weights, x)  # also checks the value ranges
    stalls = Stalls(x_idle=args.x_idle, w_idle=args.w_idle, y_stall=args.y_stall,
                    y_burst=args.y_burst)
    result = rtl_spmv(config, weights, x, seed=args.seed, stalls=stalls, waves=args.waves,
                      order=args.order,
                      log=lambda message: print(message, file=sys.stderr, flush=True))
    report = dict(result.report)
    mismatches = int(np.count_nonzero(result.y != expected))
    report["golden_mismatches"] = mismatches
    report["parameters"] = config.to_dict()
    save_array(args.out, result.y)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.out}: {result.y.shape} from the RTL; cycles {report['cycles']} (ideal "
          f"{report['ideal_cycles']}), utilization {report['utilization']:.4f} whole run, "
          f"{report['utilization_steady']:.4f} steady; {report['sim_cycles_per_second'] / 1e6:.2f}"
          f" M simulated cycles/s; golden check: "
          + ("all match" if mismatches == 0 else f"{mismatches} MISMATCHES"))
    print(f"report: {json_path}")
    if report["error"]:
        print(f"{PROG}: the core raised its error output", file=sys.stderr)
    return 0 if mismatches == 0 and not report["error"] else 1


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
    parser.add_argument("--seed", type=_count, default=0, metavar="N",
                        help="seed of the training (the data split is fixed; default 0)")
    parser.set_defaults(run=run_demo)


def run_demo(args) -> int:
    from bbsparse import demo_digits

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"cannot write into {args.out}: it is not a directory")
    return demo_digits.main(out, args.seed)


# -- entry point -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``bbsparse`` with every subcommand."""
    parser = _Parser(prog=PROG, description="Bank-balanced sparse SpMV accelerator generator.")
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="command", parser_class=_Parser
    )
    add_prune(subparsers)
    add_generate(subparsers)
    add_spmv(subparsers)
    add_demo(subparsers)
    # Imported here: synth.flow uses this module's helpers (CliError, config options).
    from bbsparse.synth.boards import add_board
    from bbsparse.synth.flow import add_synth

    add_synth(subparsers)
    add_board(subparsers)
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
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        # --help exits through argparse; report its status instead of leaving the process.
        return exc.code if isinstance(exc.code, int) else 0
