"""Print the README's FPGA table from `bbsparse synth` reports.

    python -m bbsparse.synth.table build/synth/*/report.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["row", "table", "main"]

HEADER = ("| target | lanes x PEs | LUT | FF | DSP | BRAM | LUT-RAM | Fmax / constraint (MHz) "
          "| critical path | Yosys / nextpnr / total (s) |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def _use(figure) -> str:
    return f"{figure['used']}/{figure['available']}" if figure else "-"


def row(report: dict) -> str:
    """One table row from one report.json."""
    p, r, f = report["parameters"], report["resources"], report["fmax"]
    path = report["critical_path"]
    ends = (f"{path['from']['block']} -> {path['to']['block']}, {path['delay_ns']:.1f} ns "
            f"({path['routing_ns']:.1f} routing)" if path else "-")
    steps = report["steps"]
    times = (f"{steps['yosys']['seconds']:.0f} / {steps['nextpnr']['seconds']:.0f} / "
             f"{report['total_seconds']:.0f}")
    fit = " (--fit)" if "fit_search" in report else ""
    check = "" if report["dsp_check"]["ok"] else " (DSP check failed)"
    return (f"| {report['target']['name']} | {p['lanes']} x {p['pes']}{fit} | {_use(r['luts'])} "
            f"| {_use(r['ffs'])} | {_use(r['dsps'])}{check} | {_use(r['brams'])} "
            f"| {_use(r.get('lutram_units'))} | {f['achieved_mhz']:.1f} / "
            f"{f['constraint_mhz']:g} | {ends} | {times} |")


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
