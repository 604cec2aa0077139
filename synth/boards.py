"""`bbsparse board`: the board top (core, host link, UART) with the real pins of a board, down
to a bitstream, through amaranth-boards' platforms and the YoWASP tools.

Boards (:data:`BOARDS`): the iCEBreaker (iCE40 UP5K, 12 MHz, FTDI UART on pins 6/9) and the
ULX3S with the LFE5U-25F (25 MHz, FTDI UART on M1/L4). The LEDs show ``busy`` (a run) and
``failed`` (the last reply was an error). The board's default core is its target's
(:attr:`~.targets.Target.default_core`).

Amaranth's platform (with the family's platform hooks, so the design is the one
``bbsparse synth`` builds) writes the pin constraints, the Yosys script and the tool
commands (``build_<name>.json``) with the family's build options (:meth:`board_options`),
a Yosys ``stat -json`` and nextpnr's ``--report``; the commands run one by one through
:mod:`.tools`, as the YoWASP builds of this venv, each with its log. Before nextpnr's result
is used, the DSP blocks are checked as in ``bbsparse synth`` (every multiplier in one). The
output folder keeps everything and ``board.json``: the configuration, the link's sizes, the
baud rate, and resource use and Fmax from nextpnr's report.

The host talks to the board with :class:`bbsparse.host.Host` (``Host.open(port, baud)``).
The command line (``bbsparse board``) is :mod:`bbsparse.synth_commands`.

:func:`build_model_board` builds the *model board* of a compiled model the same way
(``ModelBoardTop``: UART, host link without the weight path, the model core with every
layer's weights and biases in ROM), writing ``report.json``; the host talks to it with
:class:`bbsparse.host.ModelHost`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..golden.config import Config
from ..golden.model import IntegerModel
from ..golden.protocol import MAX_LENGTH, ModelInfo
from ..hdl.clocking import PLLError, PLLSetting, pll_setting
from ..hdl.engines import MemoryNeed
from ..hdl.generate import write_if_changed
from .families import KEEP_COPIES, with_hooks
from .flow import classify_cell, parse_nextpnr_report, parse_yosys_stat
from .targets import TARGETS, FitError, Target, fit_check, require_fit
from .tools import FlowError, run_step, yowasp

__all__ = ["BOARDS", "Board", "BoardError", "build_board", "build_model_board",
           "check_max_w_beats", "divisor_for", "link_memories", "model_board_clock",
           "model_board_memories"]

BOARD_TOP = "bbs_board"


class BoardError(ValueError):
    """A board build that cannot be made as asked (a baud rate the clock cannot divide)."""


@dataclass(frozen=True)
class Board:
    name: str
    platform: str         # the amaranth_boards class, "module:Class"
    target: str           # the entry of synth/targets.py with the same device
    clock_hz: float       # the board's oscillator (the PLL's input)
    max_w_beats: int      # default depth of the weight memory
    leds: tuple[str, str]  # LED resources for (busy, failed); one name twice = numbers 0, 1
    default_clock_hz: float  # the design clock the PLL makes unless --clock-mhz says
    #: The model board's default design clock: its model core (y-to-x scatter, ROMs) closes
    #: below the link and core of the SpMV board top.
    model_clock_hz: float = 0.0

    def platform_class(self):
        import importlib

        module, name = self.platform.split(":")
        return getattr(importlib.import_module(module), name)

    @property
    def target_info(self) -> Target:
        return TARGETS[self.target]

    def default_config(self, overrides: dict | None = None) -> Config:
        """The board's default core (its target's), with `overrides` applied."""
        return self.target_info.default_config(overrides)

    @property
    def pll_family(self) -> str:
        """The PLL model of the board's FPGA (:mod:`bbsparse.hdl.clocking`)."""
        return self.target_info.family.name

    def clock(self, clock_mhz: float | None = None) -> tuple[float, PLLSetting | None]:
        """The design clock in Hz and the PLL setting that makes it from the oscillator:
        `clock_mhz` (default: the board's `default_clock_hz`); the oscillator's own frequency
        means no PLL. :class:`BoardError` if the PLL cannot make it (naming the nearest
        frequencies it can)."""
        if clock_mhz is None:
            hz = self.default_clock_hz
        elif isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) \
                or not clock_mhz > 0:
            raise BoardError(f"clock_mhz must be a positive number of MHz, not {clock_mhz!r}")
        else:
            hz = clock_mhz * 1e6
        if abs(hz - self.clock_hz) <= 1e-4 * self.clock_hz:
            return self.clock_hz, None
        try:
            setting = pll_setting(self.pll_family, self.clock_hz, hz)
        except PLLError as exc:
            raise BoardError(f"--clock-mhz {hz / 1e6:g} on the {self.name}: {exc} (or "
                             f"{self.clock_hz / 1e6:g} MHz: the oscillator, no PLL)") from None
        return float(setting.output_hz), setting


BOARDS: dict[str, Board] = {
    # The UP5K's default core, 8 lanes x 1 PE (its 8 SB_MAC16). Block RAM: 10 SB_RAM40_4K
    # for the core, 4 for the x buffer, 2 for the y buffer, 12 for 512 w beats of 88 bits
    # (32 rows of 1024 columns); 30 on the chip. The PLL makes 36 MHz from the 12 MHz
    # oscillator (DIVF 47, DIVQ 4).
    "icebreaker": Board("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform",
                        "ice40-up5k", 12e6, 512, ("led_g", "led_r"), 36e6,
                        # 30 MHz (2.5x): the model core reaches 34.5-39.8 MHz by seed.
                        model_clock_hz=30e6),
    # The default core (8 lanes x 2 PEs); 2048 w beats of 176 bits (256 rows of 1024
    # columns) in 10 of the 56 DP16KD. The PLL makes 75 MHz from 25 MHz (CLKFB_DIV 3).
    "ulx3s": Board("ulx3s", "amaranth_boards.ulx3s:ULX3S_25F_Platform", "ecp5-25k", 25e6,
                   2048, ("led", "led"), 75e6, model_clock_hz=75e6),
}


def block_of(cell: str) -> str:
    """The block of the board top a netlist cell belongs to (the core's as in
    ``bbsparse synth``)."""
    name = cell.lstrip("\\").removeprefix("board.")
    if name.startswith("core."):
        return classify_cell(name)
    if name.startswith("link."):
        return "host link"
    if name.startswith("uart."):
        return "UART"
    return "board I/O"


def _clock_text(board: Board, clock_hz: float, pll: PLLSetting | None) -> str:
    if pll is None:
        return f"clock {clock_hz / 1e6:g} MHz (the oscillator)"
    params = ", ".join(f"{k} {v}" for k, v in pll.params.items())
    return (f"clock {clock_hz / 1e6:g} MHz ({pll.primitive} from {board.clock_hz / 1e6:g} MHz: "
            f"{params})")


def divisor_for(clock_hz: float, baud: int) -> int:
    """Clock cycles a bit at `baud`; refused if the rounding is 2 % off or more."""
    divisor = round(clock_hz / baud)
    from ..hdl.uart import UART

    if divisor < UART.MIN_DIVISOR:
        raise BoardError(f"baud {baud} is too fast for a {clock_hz / 1e6:g} MHz clock (a bit "
                         f"must last at least {UART.MIN_DIVISOR} cycles)")
    error = abs(clock_hz / divisor - baud) / baud
    if error >= 0.02:
        raise BoardError(f"baud {baud} is {error:.1%} off at {clock_hz / 1e6:g} MHz with "
                         f"{divisor} cycles a bit; choose one within 2 %")
    return divisor


def _run_commands(out: Path, commands: list[list[str]], log=None) -> dict[str, float]:
    """Run the build plan's commands (argv lists naming the tools by their upstream names:
    ``yosys``, ``nextpnr-ice40``, ``ecppack``...) in `out`, each as its YoWASP build, with
    its console output in ``<tool>.stdout.log``; the seconds of each. While a tool runs its
    phase is shown (:func:`~bbsparse.synth.tools.run_step`); each step's result line goes
    to stdout, or to `log`."""
    seconds = {}
    for step, (tool, *args) in enumerate(commands, 1):
        # With a title, run_step shows the tool's phase while it runs (live on a terminal,
        # timestamped lines otherwise), as bbsparse synth does.
        title = f"[{step}/{len(commands)}] {tool}"
        seconds[tool] = run_step(tool, [yowasp(tool), *args], out / f"{tool}.stdout.log", out,
                                 title=title)
        line = f"{title}: {seconds[tool]:.1f} s"
        if log is None:
            print(line, flush=True)
        else:
            log(line)
    return seconds


def link_memories(config: Config, max_w_beats: int) -> list[MemoryNeed]:
    """The host link's memories (``hdl/run_sequencer.py``), each one write port and one
    synchronous read port: the weight memory, one x frame, and the y beats of a run."""
    return [
        MemoryNeed("weight memory", 1, max_w_beats, config.w_beat_width),
        MemoryNeed("x buffer", 1, config.x_beats, config.x_beat_width),
        MemoryNeed("y buffer", 1, -(-max_w_beats // config.cycles_per_row), config.y_beat_width),
    ]


def check_max_w_beats(config: Config, max_w_beats) -> None:
    """BoardError unless `max_w_beats` is a weight-memory depth the link can address."""
    if isinstance(max_w_beats, bool) or not isinstance(max_w_beats, int) \
            or not config.cycles_per_row <= max_w_beats <= MAX_LENGTH:
        raise BoardError(f"max_w_beats (--max-w-beats, the weight memory's depth) must be "
                         f"from cycles_per_row ({config.cycles_per_row}, one row group) to "
                         f"{MAX_LENGTH} (the 16-bit length of a LOAD_W frame), not "
                         f"{max_w_beats!r}")


def _design_clock_fmax(raw: dict, fmax: dict, clock_hz: float) -> dict:
    """nextpnr's Fmax of the design's clock: the clock whose constraint is `clock_hz` (with
    a PLL, its output; the first clock otherwise), with ``met`` against it. FlowError if no
    clock was constrained at that frequency (the constraint did not reach nextpnr)."""
    for name, figures in raw.get("fmax", {}).items():
        constraint = float(figures["constraint"])
        if abs(constraint - clock_hz / 1e6) <= 1e-3 * clock_hz / 1e6:
            achieved = float(figures["achieved"])
            return {"clock": name, "achieved_mhz": round(achieved, 2),
                    "constraint_mhz": round(constraint, 4), "met": achieved >= constraint}
    raise FlowError(f"nextpnr's report has no clock constrained at {clock_hz / 1e6:g} MHz "
                    f"(clocks: {fmax})")


def _clock_report(board: Board, clock_hz: float, pll: PLLSetting | None) -> dict:
    """The report's clock keys: the oscillator, the design clock, the PLL."""
    return {"board_clock_mhz": board.clock_hz / 1e6, "clock_mhz": round(clock_hz / 1e6, 6),
            "pll": pll.to_dict() if pll else None}


def _build(board: Board, top, out: Path, fit, seed: int, log=None,
           pll: PLLSetting | None = None):
    """Elaborate `top` (a board top) on `board`'s pins, then run Yosys, nextpnr and the
    packer into `out`. Returns Yosys' cells, nextpnr's figures (the critical path's ends
    named by block), the wall time and each tool's seconds."""
    from ..hdl.board import BoardPins

    target = board.target_info
    family = target.family
    pins = BoardPins(top, leds=board.leds, pll=pll)
    platform = with_hooks(board.platform_class(), family)()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlowError(f"cannot create {out}: {exc.strerror}") from None
    report_name = f"{BOARD_TOP}_nextpnr.json"
    stat_name = f"{BOARD_TOP}_stat.json"
    for stale in (report_name, stat_name, "board.json", "report.json"):
        (out / stale).unlink(missing_ok=True)
    options = {
        "script_after_synth": f"tee -q -o {stat_name} stat -json",
        # A missed clock constraint does not stop the flow (DESIGN §12.7): the report says.
        "nextpnr_opts": f"--report {report_name} --seed {seed} --timing-allow-fail",
        **family.board_options(),
    }
    options["script_after_read"] = KEEP_COPIES + options.get("script_after_read", "")
    start = time.monotonic()
    plan = platform.build(pins, name=BOARD_TOP, build_dir=str(out), do_build=False, **options)
    plan.extract(str(out))
    steps = _run_commands(out, json.loads((out / f"{plan.script}.json").read_text())["commands"],
                          log)
    seconds = time.monotonic() - start

    cells = parse_yosys_stat(json.loads((out / stat_name).read_text()), target)
    if cells["dsps"] != fit.dsps and fit.dsps_exact:
        raise FlowError(f"Yosys made {cells['dsps']} {target.dsp_name} for "
                        f"{fit.dsp_multipliers} multipliers on DSP blocks ({fit.dsps} "
                        f"expected): not every product is where the fit check put it")
    raw = json.loads((out / report_name).read_text())
    pnr = parse_nextpnr_report(raw, target)
    pnr["fmax"] = _design_clock_fmax(raw, pnr["fmax"], float(pll.output_hz) if pll else
                                     board.clock_hz)
    if pnr["critical_path"]:
        for end in ("from", "to"):
            pnr["critical_path"][end]["block"] = block_of(pnr["critical_path"][end]["cell"])
    return cells, pnr, seconds, steps


def build_board(board: Board, config: Config, out: Path, *, baud: int = 115200,
                max_w_beats: int | None = None, seed: int = 1, write=None,
                clock_mhz: float | None = None) -> dict:
    """Elaborate, synthesise, place, route and pack the board top into `out`; the report.

    Everything that can be refused is checked before `out` is touched: the weight memory's
    depth, the fit of the core and of the link's memories (the weight memory first among
    them) on the device, the design clock (`clock_mhz`, default the board's: made by the
    PLL from the oscillator, or the oscillator itself), the baud rate at that clock.
    `write` receives ``{path: text}`` for
    ``board.json`` (the command line passes its atomic writer); without it the file goes
    through :func:`~bbsparse.hdl.generate.write_if_changed`."""
    target = board.target_info
    max_w_beats = board.max_w_beats if max_w_beats is None else max_w_beats
    check_max_w_beats(config, max_w_beats)
    from ..hdl.board import BoardTop

    # The DSP blocks, the core's memories and the link's: a weight memory larger than the
    # block RAM is refused here, not by nextpnr after minutes.
    memories = link_memories(config, max_w_beats)
    try:
        fit = require_fit(target, config, "auto", extra=memories)
    except FitError as exc:
        if fit_check(target, config, "auto").problems():
            raise
        raise FitError(f"{exc}; the weight memory of {max_w_beats} beats (--max-w-beats, "
                       f"default {board.max_w_beats} on the {board.name}) is what does not "
                       f"fit") from None
    clock_hz, pll = board.clock(clock_mhz)
    top = BoardTop(config, divisor=divisor_for(clock_hz, baud),
                   max_w_beats=max_w_beats, clock_hz=clock_hz)
    print(f"board {board.name}: {target.description}; {config.lanes} lanes x {config.pes} "
          f"PE(s), weight memory {max_w_beats} beats, {_clock_text(board, clock_hz, pll)}, "
          f"{baud} baud (divisor {top.divisor}) -> {out}", flush=True)
    cells, pnr, seconds, _ = _build(board, top, out, fit, seed, pll=pll)
    bitstream = out / f"{BOARD_TOP}{target.family.bitstream_suffix}"
    report = {
        "board": board.name,
        "device": target.description,
        "config": config.to_dict(),
        "max_w_beats": max_w_beats,
        "max_rows": max_w_beats // config.cycles_per_row * config.pes,
        "baud": baud,
        "divisor": top.divisor,
        **_clock_report(board, clock_hz, pll),
        "timeout_cycles": top.link.timeout_cycles,
        "fmax": pnr["fmax"],
        "cells": {key: cells[key] for key in ("dsps", "brams", "lutram_units", "luts", "ffs")},
        "placed": {key: pnr[key] for key in ("dsps", "brams", "lutram", "logic", "ffs")},
        "critical_path": pnr["critical_path"],
        "bitstream": bitstream.name,
        "seconds": round(seconds, 1),
    }
    files = {out / "board.json": json.dumps(report, indent=2) + "\n"}
    if write is None:
        for path, text in files.items():
            write_if_changed(path, text)
    else:
        write(files)
    fmax = pnr["fmax"]
    print(f"{bitstream} ({bitstream.stat().st_size} bytes): Fmax {fmax['achieved_mhz']:.1f} "
          f"MHz against the {fmax['constraint_mhz']:g} MHz clock "
          f"({'met' if fmax['met'] else 'NOT MET'}); {cells['dsps']} "
          f"{target.dsp_name}, {cells['brams']} {target.bram.name}, {cells['luts']} LUT4, "
          f"{cells['ffs']} FF; {seconds:.0f} s", flush=True)
    path = pnr["critical_path"]
    if path:
        print(f"critical path: {path['from']['block']} -> {path['to']['block']}, "
              f"{path['delay_ns']:.1f} ns ({path['routing_ns']:.1f} routing)", flush=True)
    print(f"report: {out / 'board.json'}", flush=True)
    return report


def model_board_memories(model: IntegerModel) -> list[MemoryNeed]:
    """The memories of a model board beside the shared core's (for the fit check): the
    model core's weight ROM (every layer's w frames), bias ROM, output queue (a
    ``ResultQueue`` of ``OUTPUT_LATENCY + 2`` credits after the output stage) and y-to-x
    buffer, and the link's x buffer (layer 0's frame) and y buffer (the model's y beats).

    The ROMs are placed as if they were written memories: Yosys may put a small ROM in LUTs
    where the model predicts block RAM (the report's ``memory_check`` compares)."""
    from ..hdl.model import ModelCore

    info = ModelInfo.of_model(model, input_exponent=0, output_exponent=0)
    needs = ModelCore.memories_of(model)
    return needs + [MemoryNeed("x buffer", 1, info.x_beats, info.x_beat_width),
                    MemoryNeed("y buffer", 1, info.y_beats, info.y_beat_width)]


def model_board_clock(board: Board, clock_mhz: float | None,
                      baud: int) -> tuple[float, PLLSetting | None, int]:
    """A model board's design clock (`clock_mhz`, default the board's model clock, else its
    own default), the PLL setting that makes it and the UART divisor for `baud`;
    :class:`BoardError` if the PLL cannot make the clock or the rate is 2 % off."""
    if clock_mhz is None and board.model_clock_hz:
        clock_mhz = board.model_clock_hz / 1e6
    clock_hz, pll = board.clock(clock_mhz)
    return clock_hz, pll, divisor_for(clock_hz, baud)


def build_model_board(model: IntegerModel, board_name: str, out_dir, *, input_exponent: int,
                      output_exponent: int, seed: int = 1, baud: int = 115200,
                      log=None, clock_mhz: float | None = None) -> dict:
    """The model board of `model` (``ModelBoardTop``: UART, host link, the model core with
    its weights in ROM) for the board `board_name` (``icebreaker``, ``ulx3s``), down to a
    bitstream in `out_dir`, with ``report.json``; returns the report.

    `input_exponent` and `output_exponent` are the model's scales, which the board reports
    in INFO (version 2). The fit of the core and of every memory (ROMs, buffers) is checked
    before any tool runs. Progress goes to `log` (a function of one line; default stdout).
    The report holds the board and device, the model's shape and ROM bits, the INFO fields,
    the UART's rate, Fmax against the board clock, the cells Yosys made (LUTs, FFs, DSPs,
    block RAMs), nextpnr's placed figures, the fit check with a comparison of its block
    RAM prediction against Yosys', the critical path, the bitstream file and the times."""
    from ..hdl.board import ModelBoardTop
    from ..hdl.model import model_images

    log = log or (lambda line: print(line, flush=True))
    if board_name not in BOARDS:
        raise BoardError(f"board must be one of {', '.join(BOARDS)}, not {board_name!r}")
    board = BOARDS[board_name]
    target = board.target_info
    out = Path(out_dir)
    c = model.config
    fit = require_fit(target, c, "auto", extra=model_board_memories(model))
    clock_hz, pll, divisor = model_board_clock(board, clock_mhz, baud)
    top = ModelBoardTop(model, divisor=divisor,
                        input_exponent=input_exponent, output_exponent=output_exponent,
                        clock_hz=clock_hz)
    images = model_images(model)
    rom_bits = {"weights": len(images["w_words"]) * c.w_beat_width,
                "biases": len(images["bias_words"]) * c.pes * model.bias_width}
    sizes = [model.inputs] + [layer.rows for layer in model.layers]
    log(f"model board {board.name}: {target.description}; model "
        f"{' -> '.join(map(str, sizes))} on {c.lanes} lanes x {c.pes} PE(s), ROM "
        f"{rom_bits['weights'] + rom_bits['biases']} bits; {_clock_text(board, clock_hz, pll)}"
        f", {baud} baud (divisor {top.divisor}) -> {out}")
    log(f"fit check: {fit.summary()}")
    cells, pnr, seconds, steps = _build(board, top, out, fit, seed, log, pll=pll)
    bitstream = out / f"{BOARD_TOP}{target.family.bitstream_suffix}"
    report = {
        "board": board.name,
        "device": target.description,
        "top": BOARD_TOP,
        "model": {
            "layers": len(model.layers), "sizes": sizes, "inputs": model.inputs,
            "outputs": model.outputs, "out_width": model.out_width,
            "bias_width": model.bias_width,
            "w_rom_words": len(images["w_words"]), "bias_rom_words": len(images["bias_words"]),
            "rom_bits": {**rom_bits, "total": rom_bits["weights"] + rom_bits["biases"]},
        },
        "config": c.to_dict(),
        "info": top.model_info.fields(),
        "baud": baud,
        "divisor": top.divisor,
        **_clock_report(board, clock_hz, pll),
        "timeout_cycles": top.link.timeout_cycles,
        "fmax": pnr["fmax"],
        "luts": cells["luts"],
        "ffs": cells["ffs"],
        "dsps": cells["dsps"],
        "brams": cells["brams"],
        "cells": {key: cells[key] for key in ("dsps", "brams", "lutram_units", "luts", "ffs")},
        "placed": {key: pnr[key] for key in ("dsps", "brams", "lutram", "logic", "ffs")},
        "fit_check": {**fit.to_dict(),
                      "weight_memory_bits": rom_bits["weights"],
                      "weight_memory_note": "every layer's weights in a ROM of the model core"},
        "memory_check": {"predicted_brams": fit.brams, "yosys_brams": cells["brams"],
                         "ok": fit.brams == cells["brams"]},
        "critical_path": pnr["critical_path"],
        "bitstream": bitstream.name,
        "steps": {tool: round(value, 1) for tool, value in steps.items()},
        "seconds": round(seconds, 1),
        "seed": seed,
    }
    write_if_changed(out / "report.json", json.dumps(report, indent=2) + "\n")
    fmax = pnr["fmax"]
    log(f"{bitstream} ({bitstream.stat().st_size} bytes): Fmax {fmax['achieved_mhz']:.1f} MHz "
        f"against the {fmax['constraint_mhz']:g} MHz clock "
        f"({'met' if fmax['met'] else 'NOT MET'}); {cells['dsps']} "
        f"{target.dsp_name}, {cells['brams']} {target.bram.name} (predicted {fit.brams}), "
        f"{cells['luts']} LUT4, {cells['ffs']} FF; {seconds:.0f} s")
    path = pnr["critical_path"]
    if path:
        log(f"critical path: {path['from']['block']} -> {path['to']['block']}, "
            f"{path['delay_ns']:.1f} ns ({path['routing_ns']:.1f} routing)")
    log(f"report: {out / 'report.json'}")
    return report
