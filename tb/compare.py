"""BBS against unstructured sparsity on the same multipliers, cycle for cycle (`make compare`).

One random int8 matrix is pruned to the same number of nonzeros twice: bank-balanced
(bank_size, nnz_per_bank) and unstructured (global magnitude). Each runs on the RTL under
Verilator with the same lanes and PEs: the BBS core, and the unstructured engine (the same
PEs behind the crossbar gather). Both results are checked against the golden model.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..golden import prune, spmv
from ..golden.config import Config
from .harness import run_spmv


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bbsparse.tb.compare", description=__doc__)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--cols", type=int, default=512)
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--pes", type=int, default=2)
    parser.add_argument("--bank-size", type=int, default=8)
    parser.add_argument("--nnz-per-bank", type=int, default=1)
    parser.add_argument("--vectors", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    dense = rng.integers(-128, 128, size=(args.rows, args.cols))
    X = rng.integers(-128, 128, size=(args.vectors, args.cols))
    bbs = prune.prune_bbs(dense, args.bank_size, args.nnz_per_bank)
    nonzeros = args.rows * (args.cols // args.bank_size) * args.nnz_per_bank
    loose = prune.prune_unstructured(dense, nonzeros)
    common = dict(lanes=args.lanes, pes=args.pes, cols=args.cols, bank_size=args.bank_size,
                  nnz_per_bank=args.nnz_per_bank)
    runs = [
        ("BBS core", Config(**common), bbs, "banks"),
        ("unstructured, bank-ordered", Config(pattern="unstructured", **common), loose, "banks"),
        ("unstructured, column-ordered", Config(pattern="unstructured", **common), loose,
         "columns"),
    ]
    print(f"{args.rows} x {args.cols} int8, {nonzeros} nonzeros each "
          f"(density {nonzeros / dense.size:.4f}), {args.lanes} lanes x {args.pes} PEs, "
          f"{args.vectors} vectors, seed {args.seed}", flush=True)
    header = (f"{'engine':30} {'cycles':>8} {'ideal':>8} {'stalls':>8} {'util':>7} "
              f"{'steady':>7}  check")
    lines = [header, "-" * len(header)]
    ok = True
    for name, config, W, order in runs:
        result = run_spmv(config, W, X, order=order, log=lambda m: print(m, flush=True))
        r = result.report
        exact = np.array_equal(result.y, spmv.spmv(config, W, X))
        ok &= exact and not r["error"]
        lines.append(f"{name:30} {r['cycles']:>8} {r['ideal_cycles']:>8} "
                     f"{r.get('crossbar_stall_cycles', 0):>8} {100 * r['utilization']:>6.1f}% "
                     f"{100 * r['utilization_steady']:>6.1f}%  "
                     f"{'exact' if exact else 'MISMATCH'}")
    print("\n".join(lines))
    print(f"cycles: first x beat accepted to last y beat, inclusive; ideal: x load plus one "
          f"cycle per w beat; stalls: cycles the crossbar spent on bank conflicts; util: useful "
          f"MACs / ({args.lanes * args.pes} multipliers x cycles), whole run and steady state "
          f"(first to last w beat accepted)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
