"""``bbsparse synth`` and ``bbsparse board``: the command line of the FPGA flow.

The flow itself (:mod:`bbsparse.synth`) knows nothing of the command line: it raises its own
errors (:class:`~bbsparse.synth.targets.FitError`, :class:`~bbsparse.synth.tools.FlowError`,
:class:`~bbsparse.synth.boards.BoardError`), which become :class:`~bbsparse.cli.CliError`
here, with a hint where there is a way out.

The configuration: with ``--config``, the file, with ``--set`` applied over it (as for every
other subcommand); without it, the target's (the board's) default core, with ``--set``
applied over it. The UP5K's default is 8 lanes x 1 PE (its 8 SB_MAC16, as
``configs/ice40-up5k.toml``); every ECP5 target's is the default configuration.

Exit status of ``bbsparse synth``: 0 when timing is met (or ``--allow-unmet``), 2 for a
usage error or a failed tool (nothing trusted is left), and
:data:`~bbsparse.synth.flow.TIMING_NOT_MET_STATUS` (3) when the bitstream and report are
written but the target's constraint is not met (DESIGN §12.7).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bbsparse.cliutil import (
    CliError,
    add_config_options,
    check_folder,
    config_from,
    megahertz,
    minutes,
    number_type,
    positive_int,
    write_outputs,
)
from bbsparse.golden.config import Config, ConfigError, parse_overrides
from bbsparse.synth.boards import BOARDS, build_board
from bbsparse.synth.flow import (
    DEFAULT_PLACER,
    PLACERS,
    TIMING_NOT_MET_STATUS,
    FlowError,
    default_folder,
    fit_search,
    pes_text,
    progress,
    run_flow,
)
from bbsparse.synth.targets import RAM_POLICIES, TARGETS, FitError, Target, fit_check

__all__ = ["add_synth", "run_synth", "add_board", "run_board", "config_for"]

# nextpnr reads its seed as a C int: a larger one would fail in the tool, minutes in.
_seed = number_type(int, lambda v: -(2**31) <= v < 2**31,
                    "an integer from -2147483648 to 2147483647")


def config_for(args, default) -> Config:
    """The configuration of a synth / board run: ``--config`` and ``--set``, or, without
    ``--config``, `default` (a :class:`Target` or a board) with ``--set`` over its core."""
    if args.config is not None:
        return config_from(args)
    try:
        return default.default_config(parse_overrides(args.set))
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _way_out(target: Target, args, ram: str) -> str:
    """What to try when the configuration does not fit `target`."""
    default = target.default_config()
    given = [option for option, value in (("--config", args.config), ("--set", args.set))
             if value]
    if given and not fit_check(target, default, ram).problems():
        return (f"; use --fit, or the {target.name}'s default core, {pes_text(default)} "
                f"(leave out {' and '.join(given)})")
    return "; use --fit"


# -- bbsparse synth ----------------------------------------------------------------------------


def add_synth(subparsers) -> None:
    """Declare ``bbsparse synth``."""
    parser = subparsers.add_parser(
        "synth", help="synthesis, place and route, bitstream and a JSON report for an FPGA",
        description="Run Amaranth -> Yosys -> nextpnr -> icepack/ecppack for one target and "
                    "write the bitstream, the logs and report.json into the output folder. "
                    "The configuration is checked against the device first. Without "
                    "--config, the target's default core (below), with --set applied over it.",
        epilog="targets: " + "; ".join(
            f"{t.name} = {t.description}, {t.dsps} {t.dsp_name}, {t.bram_blocks} "
            f"{t.bram.name}, default core {pes_text(t.default_config())}"
            for t in TARGETS.values()))
    add_config_options(parser)
    parser.add_argument("--target", required=True, choices=list(TARGETS), metavar="TARGET",
                        help="one of " + ", ".join(TARGETS))
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default: build/synth/<target>-<lanes>x<pes>, "
                             "with -<ram> for a --ram other than auto and a short hash of the "
                             "configuration when it differs from the target's default core "
                             "in more than lanes and pes)")
    parser.add_argument("--freq", type=megahertz, metavar="MHZ",
                        help="clock constraint for nextpnr (default: the target's own, "
                             + ", ".join(f"{t.name} {t.freq_mhz:g}" for t in TARGETS.values())
                             + ")")
    parser.add_argument("--allow-unmet", action="store_true",
                        help="exit 0 even if timing is not met (Fmax below the constraint, "
                             "or DSP blocks nextpnr cannot time); without it such a run "
                             f"still writes the bitstream and report but exits "
                             f"{TIMING_NOT_MET_STATUS}")
    parser.add_argument("--seed", type=_seed, default=1, help="nextpnr placement seed (default 1)")
    parser.add_argument("--seeds", type=number_type(int, lambda v: 1 <= v <= 32,
                                                    "an integer from 1 to 32"),
                        default=1, metavar="N",
                        help="also place and route with the next N-1 seeds (2 at a time) and "
                             "report Fmax min / median over the N (default 1)")
    parser.add_argument("--placer", choices=list(PLACERS), default=DEFAULT_PLACER,
                        help="nextpnr's placer: heap (default, nextpnr's own) or static "
                             "(electrostatic: the ECP5-85k mix places and routes in about 20 "
                             "minutes instead of 40-85, DESIGN section 12.8)")
    parser.add_argument("--pnr-time-limit", type=minutes, metavar="MINUTES",
                        help="stop nextpnr (any seed's) after MINUTES of wall time: the "
                             "bitstream's seed fails the run naming the phase it was in, e.g. "
                             "router1's arcs left in a congestion tail; a further seed (--seeds) "
                             "is reported as stopped, below every seed that finished (default: "
                             "no limit)")
    parser.add_argument("--dsp-floorplan", action="store_true",
                        help="place every hard multiplier at a DSP site of its own PE's band "
                             "of columns (targets with a DSP site list: ecp5-85k) instead of "
                             "where nextpnr would, DESIGN section 12.8")
    parser.add_argument("--ram", choices=list(RAM_POLICIES), default="auto",
                        help="where memories go: auto (Yosys' choice), lutram (ECP5: no block "
                             "RAM, synth_ecp5 -nobram: no EBR clock-to-output in the read "
                             "path), block (no LUT RAM, -nolutram)")
    parser.add_argument("--fit", action="store_true",
                        help="search lanes x pes for the largest configuration that fits the "
                             "device (other parameters from the configuration), then run it")
    parser.add_argument("--fit-multipliers", choices=("dsp", "mix"), default="dsp",
                        help="what --fit fills: dsp (default: DSP blocks only) or mix (every "
                             "DSP block, then LUT multipliers within half the LUTs, 55 %% on "
                             "the 85k; the 85k's mix takes 40-60 minutes of nextpnr with "
                             "--placer static --dsp-floorplan and misses its 180 MHz goal, "
                             "DESIGN section 12.8)")
    parser.add_argument("--check", action="store_true",
                        help="only the fit check (and the --fit search): run no tool")
    parser.set_defaults(run=run_synth)


def run_synth(args) -> int:
    """``bbsparse synth``."""
    target = TARGETS[args.target]
    config = config_for(args, target)
    fit_info = None
    try:
        if args.fit:
            if args.config is None:
                config = target.fit_base(config, given=parse_overrides(args.set),
                                         multipliers=args.fit_multipliers)
            candidates = fit_search(target, config, ram=args.ram,
                                    multipliers=args.fit_multipliers)
            best = candidates[0]
            config = best["_config"]
            progress(f"fit search on {target.name}: {pes_text(config)} = "
                     f"{best['multipliers']} multipliers, {best['dsps']}/{target.dsps} "
                     f"{target.dsp_name}, {best['brams']}/{target.bram_blocks} "
                     f"{target.bram.name}"
                     + "".join(f", {k} {getattr(config, k)}"
                               for k in {**target.fit_core, **target.fit_core_mix}
                               if getattr(config, k, None))
                     + "; next best: "
                     + ", ".join(f"{c['lanes']}x{c['pes']}" for c in candidates[1:5]))
            fit_info = {"rule": "most multipliers, then least lane padding, then most lanes",
                        "chosen": {"lanes": best["lanes"], "pes": best["pes"]},
                        "candidates": [{k: v for k, v in c.items() if k != "_config"}
                                       for c in candidates]}
        report = fit_check(target, config, args.ram)  # FitError for a --ram it cannot follow
        if report.refusal():
            raise CliError(report.refusal() + _way_out(target, args, args.ram))
        if args.check:
            progress(f"{target.name}: {pes_text(config)} fits: {report.summary()}")
            return 0
        out = Path(args.out) if args.out else default_folder(target, config, args.ram)
        check_folder(out)  # before any tool: a folder it cannot write is refused now
        result = run_flow(target, config, out, args.freq, args.seed, fit_info, args.ram,
                          seeds=args.seeds, placer=args.placer,
                          dsp_floorplan=args.dsp_floorplan,
                          pnr_time_limit=args.pnr_time_limit and 60 * args.pnr_time_limit)
    except (FitError, FlowError) as exc:
        raise CliError(str(exc)) from None
    if not result.met:
        timing = result.report["timing"]
        what = "; ".join(timing["reasons"])
        if args.allow_unmet:
            progress(f"TIMING NOT MET ({what}); --allow-unmet: exit status 0")
            return 0
        print(f"bbsparse: TIMING NOT MET for {target.name} at {timing['constraint_mhz']:g} MHz: "
              f"{what}. The bitstream {result.bitstream} is written but does not meet its "
              f"constraint; exit status {TIMING_NOT_MET_STATUS} (--allow-unmet to accept it)",
              file=sys.stderr, flush=True)
        return TIMING_NOT_MET_STATUS
    return 0


# -- bbsparse board ----------------------------------------------------------------------------


def add_board(subparsers) -> None:
    """Declare ``bbsparse board``."""
    parser = subparsers.add_parser(
        "board", help="the core with its UART host link for a real board, to a bitstream",
        description="Build the board top (core, on-chip weight memory, UART host link; the "
                    "protocol is in bbsparse/host.py and the README) with the board's pin "
                    "constraints, through Yosys, nextpnr and the packer. Without --config, "
                    "the board's default core (its target's), with --set applied over it.",
        epilog="boards: " + "; ".join(f"{b.name} = {b.target_info.description}, "
                                      f"{b.clock_hz / 1e6:g} MHz oscillator, design clock "
                                      f"{b.default_clock_hz / 1e6:g} MHz from its PLL, "
                                      f"default core {pes_text(b.default_config())}"
                                      for b in BOARDS.values()))
    add_config_options(parser)
    parser.add_argument("--board", required=True, choices=list(BOARDS))
    parser.add_argument("--out", metavar="DIR", help="output folder (default build/board/<board>)")
    parser.add_argument("--baud", type=number_type(int, lambda v: v >= 1, "a positive integer"),
                        default=115200, help="UART baud rate (default 115200)")
    parser.add_argument("--max-w-beats", type=positive_int, metavar="N",
                        help="weight memory depth in w beats, from the core's cycles_per_row "
                             "to 65535 (default: the board's)")
    parser.add_argument("--seed", type=_seed, default=1, help="nextpnr placement seed")
    parser.add_argument("--clock-mhz", type=megahertz, metavar="MHZ",
                        help="design clock, made by the FPGA's PLL from the board's oscillator "
                             "(refused, naming the nearest, if the PLL cannot make it; the "
                             "oscillator's own frequency means no PLL); the UART divisor, the "
                             "timeout and the clock constraint follow it (default: the "
                             "board's, "
                             + ", ".join(f"{b.name} {b.default_clock_hz / 1e6:g}"
                                         for b in BOARDS.values()) + ")")
    parser.set_defaults(run=run_board)


def run_board(args) -> int:
    """``bbsparse board``."""
    board = BOARDS[args.board]
    config = config_for(args, board)
    out = Path(args.out) if args.out else Path("build") / "board" / board.name
    check_folder(out)  # before anything is built: a folder it cannot write is refused now
    try:
        build_board(board, config, out, baud=args.baud, max_w_beats=args.max_w_beats,
                    seed=args.seed, write=write_outputs, clock_mhz=args.clock_mhz)
    except (ValueError, FlowError) as exc:  # FitError and BoardError are ValueErrors
        raise CliError(str(exc)) from None
    return 0
