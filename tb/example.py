"""The main job (`make sim`): generate the default core, run random BBS weights through the
RTL under Verilator, check every result against the golden model, print the figures."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ..golden import prune, spmv
from ..golden.config import ConfigError, load_config
from ..hdl.generate import write_design
from .harness import run_spmv


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bbsparse.tb.example", description=__doc__)
    parser.add_argument("--config", default="configs/default.toml")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--vectors", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", default="build/verilog")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.set)
    except ConfigError as exc:
        print(f"bbsparse: error: {exc}", file=sys.stderr)
        return 2

    def log(message):
        print(message, flush=True)

    start = time.monotonic()
    v_path, j_path = write_design(config, args.out)
    log(f"generated {v_path} and {j_path} in {time.monotonic() - start:.1f} s")
    rng = np.random.default_rng(args.seed)
    w_lo, w_hi = -(1 << (config.weight_width - 1)), 1 << (config.weight_width - 1)
    x_lo, x_hi = -(1 << (config.act_width - 1)), 1 << (config.act_width - 1)
    W = prune.prune_bbs(rng.integers(w_lo, w_hi, size=(args.rows, config.cols)),
                        config.bank_size, config.nnz_per_bank)
    X = rng.integers(x_lo, x_hi, size=(args.vectors, config.cols))
    log(f"W: {args.rows} x {config.cols}, bank {config.bank_size}, {config.nnz_per_bank} nonzero "
        f"per bank ({np.count_nonzero(W)} nonzeros); {args.vectors} vectors; seed {args.seed}")

    result = run_spmv(config, W, X, seed=args.seed, log=log)
    expected = spmv.spmv(config, W, X)
    r = result.report
    matched = int(np.all(result.y == expected, axis=1).sum())
    results_matched = int((result.y == expected).sum())
    shape = f"{args.rows} rows x {args.vectors} vectors = {expected.size} results"
    if results_matched == expected.size:
        check = f"{shape} match the golden model"
    else:
        check = (f"{results_matched} of the {shape} match the golden model, "
                 f"{expected.size - results_matched} differ")
    log(f"result check: {check} ({matched}/{args.vectors} vectors exact); error output "
        + ("HIGH" if r["error"] else "low"))
    # The figures of DESIGN §7.1, each with its definition.
    parts = f"ideal {r['ideal_cycles']} + pipeline latency {r['pipeline_latency']}"
    stalls = r["cycles"] - r["ideal_cycles"] - r["pipeline_latency"]
    if stalls > 0:
        parts += f" + {stalls} stall cycles"
    elif stalls < 0:
        parts += f" - {-stalls}"
    log(f"cycles (first x beat accepted to last y beat, inclusive): {r['cycles']} (= {parts})")
    log(f"steady-state cycles (first to last w beat accepted, inclusive): "
        f"{r['steady_cycles']} (ideal {r['ideal_steady_cycles']}: one w beat a cycle)")
    log(f"utilization: {100 * r['utilization']:.2f} % whole run, "
        f"{100 * r['utilization_steady']:.2f} % steady state, on {r['multipliers']} multipliers "
        f"(ideal speedup over dense {config.ideal_speedup:g}x)")
    before = r["simulated_cycles"] - r["cycles"]
    log(f"simulated clock cycles after reset: {r['simulated_cycles']} ({before} before the "
        f"first x beat was accepted, then the {r['cycles']} above), at "
        f"{r['sim_cycles_per_second'] / 1e6:.2f} M cycles/s")
    ok = matched == args.vectors and not r["error"] and r["y_tlast_ok"]
    log("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
