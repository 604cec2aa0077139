"""``bbsparse verify``: a soak of random cases on the RTL, reproducible from one seed.

The drawing, running and checking are :mod:`bbsparse.tb.soak`; this module is the command
line around it, in the shape of :mod:`bbsparse.cli` (``add_verify`` declares the options,
``run_verify`` does the work, user errors are :class:`~bbsparse.cliutil.CliError`).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from bbsparse.cliutil import CliError, count, positive_int

__all__ = ["add_verify", "run_verify"]


def add_verify(subparsers) -> None:
    """Declare ``bbsparse verify``."""
    from bbsparse.hdl.engines import ENGINES
    from bbsparse.tb.soak import DEFAULT_CONFIGS

    parser = subparsers.add_parser(
        "verify", help="soak the RTL with random cases, each checked against the golden model",
        description="Draw configurations, matrices, vectors and stall patterns for every "
                    "engine from one seed, run each case on the RTL (Verilator) and check y, "
                    "the error output, tlast and the cycle counts against the golden model. "
                    "Every case replays alone with --seed S --case K. Exit status 0 only "
                    "when no case failed.")
    parser.add_argument("--cases", type=positive_int, default=1000, metavar="N",
                        help="cases to run, 0 .. N-1 (default 1000; make soak runs 10000)")
    parser.add_argument("--seed", type=count, metavar="S",
                        help="seed of everything drawn (default: a fresh one, printed)")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="J",
                        help="worker processes (default: every core, here "
                             f"{os.cpu_count() or 1}; 1 runs in this process)")
    parser.add_argument("--engines", default=",".join(ENGINES), metavar="E1,E2",
                        help="engines to draw configurations for, comma-separated (default: "
                             f"all: {', '.join(ENGINES)})")
    parser.add_argument("--configs", type=positive_int, default=DEFAULT_CONFIGS, metavar="N",
                        help="configurations in the pool the cases draw from; each is one "
                             f"Verilator build (default {DEFAULT_CONFIGS}); a smaller pool is "
                             "the first configurations of a larger one")
    parser.add_argument("--case", type=count, metavar="K",
                        help="run case K alone (the command a failure prints) and describe it")
    parser.add_argument("--waves", metavar="FILE.vcd", help="with --case: write a VCD of the run")
    parser.add_argument("--out", metavar="FILE.json", help="write a JSON summary")
    parser.set_defaults(run=run_verify)


def _plan(args):
    from bbsparse.hdl.engines import ENGINES
    from bbsparse.tb.soak import Plan

    engines = tuple(name.strip() for name in args.engines.split(",") if name.strip())
    unknown = [name for name in engines if name not in ENGINES]
    if unknown or not engines:
        raise CliError(f"--engines: unknown engine {(unknown or [''])[0]!r}; known: "
                       f"{', '.join(ENGINES)}")
    seed = secrets.randbelow(1 << 31) if args.seed is None else args.seed
    return Plan(seed=seed, configs=args.configs, engines=tuple(dict.fromkeys(engines)))


def _check_out(path: str | None) -> None:
    if path is None:
        return
    out = Path(path)
    if out.is_dir():
        raise CliError(f"cannot write {path}: it is a directory")
    if not out.parent.is_dir():
        raise CliError(f"cannot write {path}: directory {str(out.parent)!r} does not exist")


def _write_json(path: str, data: dict) -> None:
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None


def run_verify(args) -> int:
    """``bbsparse verify``: the soak, or one case with ``--case``."""
    import dataclasses

    from bbsparse.tb import soak

    if args.waves is not None and args.case is None:
        raise CliError("--waves needs --case K (one case's waveforms)")
    _check_out(args.out)
    _check_out(args.waves)
    plan = _plan(args)

    def log(message: str) -> None:
        print(message, flush=True)

    if args.case is not None:
        result = soak.replay(plan, args.case, waves=args.waves, log=log)
        if args.out is not None:
            _write_json(args.out, {"seed": plan.seed, "configs": plan.configs,
                                   "engines": list(plan.engines),
                                   **dataclasses.asdict(result)})
        return 0 if result.ok else 1

    summary = soak.run_soak(plan, args.cases, jobs=args.jobs, log=log)
    if args.out is not None:
        _write_json(args.out, summary.to_json())
        print(f"summary: {args.out}", file=sys.stderr)
    return 0 if not summary.failures else 1
