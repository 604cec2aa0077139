"""Print the README's FPGA table from `bbsparse synth` reports.

    python -m bbsparse.synth.table build/synth/*/report.json

One unit per column (DESIGN §7.2): LUT4 cells as Yosys counts them in the netlist, logic
cells as nextpnr places them (TRELLIS_COMB on the ECP5, ICESTORM_LC on the iCE40), flip-flops
as Yosys counts them. Reports written before they carried ``lut4`` and ``logic_cells`` are
read through their Yosys cell counts and nextpnr utilisation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .flow import seeds_text

__all__ = ["row", "table", "main", "logic_figures", "HEADER"]

HEADER = ("| target | lanes x PEs | LUT4 (Yosys) | logic cells (nextpnr) | FF | DSP | BRAM "
          "| LUT-RAM | Fmax / constraint (MHz) | critical path | Yosys / nextpnr / total (s) |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def _use(figure) -> str:
    return f"{figure['used']}/{figure['available']}" if figure else "-"


def logic_figures(report: dict) -> dict:
    """``lut4``, ``logic_cells`` and ``ffs`` of a report (DESIGN §7.2), each ``{used,
    available}`` or None: as the report has them, or, for a report written before it had
    them, from its Yosys cell counts and nextpnr utilisation (through its target's family)."""
    r = report["resources"]
    if "lut4" in r:
        return {key: r[key] for key in ("lut4", "logic_cells", "ffs")}
    from .targets import TARGETS

    target = TARGETS.get(report["target"]["name"])
    if target is None:
        return {"lut4": None, "logic_cells": None, "ffs": r.get("ffs")}
    cells = target.family.cell_counts(report.get("yosys_cells", {}))
    placed = report.get("nextpnr_utilization", {}).get(target.family.pnr_logic)
    return {"lut4": {"used": cells["luts"], "available": target.luts},
            "logic_cells": placed and {"used": placed["used"], "available": placed["available"]},
            "ffs": {"used": cells["ffs"], "available": target.ffs}}


def row(report: dict) -> str:
    """One table row from one report.json."""
    p, r, f = report["parameters"], report["resources"], report["fmax"]
    logic = logic_figures(report)
    path = report["critical_path"]
    ends = (f"{path['from']['block']} -> {path['to']['block']}, {path['delay_ns']:.1f} ns "
            f"({path['routing_ns']:.1f} routing)" if path else "-")
    steps = report["steps"]
    times = (f"{steps['yosys']['seconds']:.0f} / {steps['nextpnr']['seconds']:.0f} / "
             f"{report['total_seconds']:.0f}")
    fit = " (--fit)" if "fit_search" in report else ""
    check = "" if report["dsp_check"]["ok"] else " (DSP check failed)"
    # A report with the timing flag says when the constraint is not met (DESIGN §12.7), and
    # with seeds, the min / median Fmax over them.
    timing = report.get("timing")
    unmet = " NOT MET" if timing is not None and not timing["met"] else ""
    seeds = report.get("fmax_seeds")
    spread = f" (seeds: {seeds_text(seeds)})" if seeds else ""
    return (f"| {report['target']['name']} | {p['lanes']} x {p['pes']}{fit} "
            f"| {_use(logic['lut4'])} | {_use(logic['logic_cells'])} | {_use(logic['ffs'])} "
            f"| {_use(r['dsps'])}{check} | {_use(r['brams'])} "
            f"| {_use(r.get('lutram_units'))} | {f['achieved_mhz']:.1f} / "
            f"{f['constraint_mhz']:g}{unmet}{spread} | {ends} | {times} |")


def table(paths) -> str:
    reports = [json.loads(Path(path).read_text()) for path in paths]
    order = ["ice40-up5k", "ecp5-25k", "ecp5-45k", "ecp5-85k"]

    def key(report):
        name, p = report["target"]["name"], report["parameters"]
        return (order.index(name) if name in order else len(order), "fit_search" in report,
                p["lanes"] * p["pes"])

    reports.sort(key=key)
    return "\n".join([HEADER, *(row(r) for r in reports)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bbsparse.synth.table",
        description="Print the README's FPGA table (Markdown) from `bbsparse synth` reports.")
    parser.add_argument("reports", nargs="+", metavar="REPORT.json",
                        help="report.json files written by bbsparse synth")
    args = parser.parse_args(argv)
    try:
        print(table(args.reports))
    except OSError as exc:
        parser.error(f"cannot read {exc.filename}: {exc.strerror}")
    except (ValueError, KeyError) as exc:  # JSONDecodeError is a ValueError
        parser.error(f"not a bbsparse synth report: {exc!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
