"""`bbsparse bench` / `make bench`: the project's figures, measured side by side in one run.

The command line is :func:`bbsparse.cli.add_bench`; ``make bench`` writes into
``build/bench``, and ``make bench-save`` copies a run's results over the committed ones in
``bench/`` (which the README quotes), so a run never changes tracked files by accident.

Every cycle count comes from the RTL under Verilator (tb/harness.py), every result is
checked against the golden model, and every FPGA figure from Yosys and nextpnr's reports
(synth/flow.py). Writes ``results.json``, ``results.md`` and PNG plots into the output
folder, with a progress line per step.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .golden import prune, spmv
from .golden.config import Config
from .hdl.generate import verilog_text

__all__ = ["main", "pattern_runs", "scaling_runs"]

# DESIGN §7 and the published accelerators a per-DSP figure compares with.
PUBLISHED = [
    {"name": "BBS LSTM engine (FPGA'19), Arria 10 GX1150", "gops": 750.9},
    {"name": "ESE (FPGA'17), XCKU060, sparse", "gops": 282.2},
]


def _log(message: str) -> None:
    print(message, flush=True)


def _run(config: Config, W, X, order: str = "banks") -> dict:
    """One SpMV batch on the RTL, checked; the harness's report plus the check."""
    from .tb.harness import run_spmv

    result = run_spmv(config, W, X, order=order, log=lambda m: None)
    report = dict(result.report)
    report["exact"] = bool(np.array_equal(result.y, spmv.spmv(config, W, X)))
    if not report["exact"] or report["error"]:
        raise RuntimeError(f"RTL result differs from golden for {config}")
    return report


def pattern_runs(rows: int, cols: int, lanes: int, pes: int, vectors: int, seed: int) -> list:
    """BBS at several densities, 2:4, unstructured at the same nonzero counts, and dense,
    all on one array (lanes x pes multipliers) and one weight matrix."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(-128, 128, size=(rows, cols))
    X = rng.integers(-128, 128, size=(vectors, cols))
    cases = [("dense", 8, 8)]
    cases += [(f"BBS {n}/8", 8, n) for n in (4, 2, 1)]
    cases += [(f"BBS {n}/16", 16, n) for n in (8, 4, 2, 1)]
    cases += [("2:4", 4, 2)]
    runs = []
    for name, bank, nnz in cases:
        config = Config(lanes=lanes, pes=pes, cols=cols, bank_size=bank, nnz_per_bank=nnz)
        W = prune.PRUNERS["bbs"](dense, bank_size=bank, nnz_per_bank=nnz)
        _log(f"bench: patterns: {name} ({rows}x{cols}, {lanes} lanes x {pes} PEs) ...")
        runs.append({"pattern": name, "kind": "dense" if nnz == bank else "bbs",
                     "density": nnz / bank, "nonzeros": int(np.count_nonzero(W)),
                     **_run(config, W, X)})
    for density in (1 / 2, 1 / 4, 1 / 8, 1 / 16):
        nonzeros = int(rows * cols * density)
        W = prune.PRUNERS["unstructured"](dense, nnz=nonzeros)
        config = Config(lanes=lanes, pes=pes, cols=cols, bank_size=16, pattern="unstructured")
        for order in ("banks", "columns"):
            name = f"unstructured {density:g} ({order})"
            _log(f"bench: patterns: {name} ...")
            runs.append({"pattern": name, "kind": f"unstructured-{order}", "density": density,
                         "nonzeros": nonzeros, **_run(config, W, X, order)})
    dense_cycles = runs[0]["cycles"]
    dense_steady = runs[0]["steady_cycles"]
    for run in runs:
        run["speedup_over_dense"] = dense_cycles / run["cycles"]
        run["steady_speedup_over_dense"] = dense_steady / run["steady_cycles"]
        run["ideal_speedup"] = 1 / run["density"]
    return runs


def scaling_runs(seed: int) -> list:
    """Cycles and utilization as lanes, cols and rows grow (BBS 1/8, bank 8)."""
    rng = np.random.default_rng(seed)
    runs = []
    grid = [("lanes", dict(lanes=lanes, pes=2, cols=1024), 256) for lanes in (1, 2, 4, 8, 16, 32)]
    grid += [("cols", dict(lanes=16, pes=2, cols=cols), 256) for cols in (64, 256, 1024, 4096)]
    grid += [("rows", dict(lanes=16, pes=2, cols=1024), rows) for rows in (64, 256, 1024)]
    for axis, params, rows in grid:
        config = Config(bank_size=8, nnz_per_bank=1, **params)
        W = prune.PRUNERS["bbs"](rng.integers(-128, 128, size=(rows, config.cols)),
                                 bank_size=8, nnz_per_bank=1)
        X = rng.integers(-128, 128, size=(2, config.cols))
        _log(f"bench: scaling {axis}: lanes {config.lanes}, cols {config.cols}, rows {rows} ...")
        report = _run(config, W, X)
        # The work is the nonzeros; the array does `multipliers` of them a cycle.
        bound = 2 * np.count_nonzero(W) / config.multipliers
        runs.append({"axis": axis, "lanes": config.lanes, "pes": config.pes,
                     "cols": config.cols, "rows": rows, "nonzeros_per_multiplier": bound,
                     **report})
    return runs


def generation_seconds(config: Config) -> float:
    start = time.monotonic()
    verilog_text(config)
    return time.monotonic() - start


def fpga_runs(targets, out: Path, reuse: bool, seed: int) -> list:
    """The largest fitting configuration per target (``bbsparse synth --fit``): resources
    and Fmax from Yosys and nextpnr, the configuration's utilization from the RTL, and the
    GOPS they give (2 ops a MAC)."""
    from .synth.flow import fit_search, run_flow
    from .synth.targets import TARGETS

    results = []
    for name in targets:
        target = TARGETS[name]
        config = fit_search(target, Config())[0]["_config"]
        folder = out / "synth" / name
        previous = folder / "report.json"
        if reuse and previous.exists() and \
                json.loads(previous.read_text())["parameters"] == config.to_dict():
            _log(f"bench: FPGA {name}: reusing {previous}")
            report = json.loads(previous.read_text())
        else:
            _log(f"bench: FPGA {name}: {config.lanes} lanes x {config.pes} PEs through Yosys "
                 f"and nextpnr ...")
            report = run_flow(target, config, folder).report
        rng = np.random.default_rng(seed)
        rows = 32 * config.pes
        W = prune.PRUNERS["bbs"](rng.integers(-128, 128, size=(rows, config.cols)),
                                 bank_size=config.bank_size, nnz_per_bank=config.nnz_per_bank)
        X = rng.integers(-128, 128, size=(2, config.cols))
        _log(f"bench: FPGA {name}: utilization of that configuration on the RTL ...")
        sim = _run(config, W, X)
        used = report["resources"]
        fmax = report["fmax"]["achieved_mhz"]
        per_cycle = 2 * config.multipliers * sim["utilization_steady"]
        results.append({
            "target": name, "lanes": config.lanes, "pes": config.pes,
            "lut": used["luts"]["used"], "ff": used["ffs"]["used"],
            "dsp": f"{used['dsps']['used']}/{used['dsps']['available']}",
            "bram": f"{used['brams']['used']}/{used['brams']['available']}",
            "fmax_mhz": fmax, "constraint_mhz": report["fmax"]["constraint_mhz"],
            "dsp_check_ok": report["dsp_check"]["ok"],
            "utilization_steady": sim["utilization_steady"],
            "utilization_whole_run": sim["utilization"],
            "gops_sparse": per_cycle * fmax / 1000,
            "gops_dense_equivalent": per_cycle * fmax / 1000 / config.density,
            "ops_per_dsp_per_cycle": per_cycle / config.multipliers,
            "step_seconds": {step: info["seconds"] for step, info in report["steps"].items()},
            "critical_path": report.get("critical_path"),
        })
    return results


def plot(patterns: list, scaling: list, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, label, marker in (("bbs", "BBS (bank 8 and 16, 2:4)", "o"),
                                ("unstructured-banks", "unstructured, bank-ordered", "s"),
                                ("unstructured-columns", "unstructured, column order", "^"),
                                ("dense", "dense", "*")):
        points = sorted((r["density"], 100 * r["utilization_steady"]) for r in patterns
                        if r["kind"] == kind)
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("density (nonzeros / weights)")
    ax.set_ylabel("steady-state utilization (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Utilization vs density, same 32-multiplier array, same matrix")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "utilization_vs_density.png", dpi=110)
    files.append("utilization_vs_density.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, label in (("bbs", "BBS"), ("unstructured-banks", "unstructured, bank-ordered"),
                        ("unstructured-columns", "unstructured, column order")):
        points = sorted((r["density"], r["steady_speedup_over_dense"]) for r in patterns
                        if r["kind"] == kind)
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    densities = sorted({r["density"] for r in patterns})
    ax.plot(densities, [1 / d for d in densities], "k--", label="ideal (1 / density)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("density")
    ax.set_ylabel("speedup over dense (steady state)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "speedup_vs_density.png", dpi=110)
    files.append("speedup_vs_density.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lanes = [r for r in scaling if r["axis"] == "lanes"]
    ax.plot([r["lanes"] for r in lanes], [r["cycles"] for r in lanes], "o-", label="cycles (RTL)")
    ax.plot([r["lanes"] for r in lanes], [r["nonzeros_per_multiplier"] for r in lanes], "k--",
            label="nonzeros / multipliers")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("lanes per PE (2 PEs)")
    ax.set_ylabel("cycles for 2 vectors, 256 x 1024, BBS 1/8")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scaling_lanes.png", dpi=110)
    files.append("scaling_lanes.png")
    plt.close(fig)
    return files


def markdown(results: dict) -> str:
    lines = [f"# bbsparse bench — {results['date']}", "",
             f"Machine: {results['machine']}. Command: `make bench` "
             f"({results['seconds']:.0f} s).", "",
             "## Patterns on one array "
             f"({results['array']['lanes']} lanes x {results['array']['pes']} PEs, "
             f"{results['array']['rows']} x {results['array']['cols']} int8, "
             f"{results['array']['vectors']} vectors)", "",
             "| pattern | density | cycles | ideal | crossbar stalls | utilization | steady "
             "| speedup vs dense | ideal speedup |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["patterns"]:
        lines.append(
            f"| {r['pattern']} | {r['density']:g} | {r['cycles']} | {r['ideal_cycles']} | "
            f"{r.get('crossbar_stall_cycles', 0)} | {100 * r['utilization']:.1f} % | "
            f"{100 * r['utilization_steady']:.1f} % | {r['speedup_over_dense']:.2f}x | "
            f"{r['ideal_speedup']:g}x |")
    lines += ["", "## Scaling (BBS 1/8, bank 8, 2 PEs, 2 vectors)", "",
              "| axis | lanes | cols | rows | cycles | nonzeros / multipliers | utilization "
              "| steady |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["scaling"]:
        lines.append(f"| {r['axis']} | {r['lanes']} | {r['cols']} | {r['rows']} | {r['cycles']} "
                     f"| {r['nonzeros_per_multiplier']:.0f} | {100 * r['utilization']:.1f} % | "
                     f"{100 * r['utilization_steady']:.1f} % |")
    if results.get("fpga"):
        lines += ["", "## FPGA targets (largest fitting configuration)", "",
                  "| target | lanes x pes | LUT | FF | DSP | BRAM | Fmax (MHz) | GOPS sparse "
                  "| GOPS dense-equivalent | ops / DSP / cycle |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in results["fpga"]:
            lines.append(
                f"| {r['target']} | {r['lanes']} x {r['pes']} | {r['lut']} | {r['ff']} | "
                f"{r['dsp']} | {r['bram']} | {r['fmax_mhz']:.1f} | {r['gops_sparse']:.1f} | "
                f"{r['gops_dense_equivalent']:.1f} | {r['ops_per_dsp_per_cycle']:.2f} |")
        lines += ["", "Published, for scale: " + "; ".join(
            f"{p['name']}: {p['gops']} GOPS" for p in PUBLISHED) + "."]
    speed = results["tool_speed"]
    lines += ["", "## Tool speed", "",
              f"- Verilog generation (default core): {speed['generate_seconds']:.2f} s",
              f"- Verilator build per configuration: {speed['verilator_build_seconds_min']:.1f}"
              f"–{speed['verilator_build_seconds_max']:.1f} s",
              f"- simulated cycles per second (16 lanes, 1024 x 1024 dense): "
              f"{speed['sim_cycles_per_second'] / 1e6:.2f} M"]
    for r in results.get("fpga", []):
        lines.append(f"- {r['target']}: " + ", ".join(
            f"{step} {seconds:.1f} s" for step, seconds in r["step_seconds"].items()))
    return "\n".join(lines) + "\n"


def main(out: Path, *, rows: int = 1024, cols: int = 1024, lanes: int = 16, pes: int = 2,
         vectors: int = 2, seed: int = 7, targets=(), reuse_synth: bool = False) -> int:
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    patterns = pattern_runs(rows, cols, lanes, pes, vectors, seed)
    scaling = scaling_runs(seed)
    fpga = fpga_runs(targets, out, reuse_synth, seed) if targets else []
    builds = [r["verilator_build_seconds"] for r in patterns + scaling]
    dense = patterns[0]
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "array": {"rows": rows, "cols": cols, "lanes": lanes, "pes": pes, "vectors": vectors,
                  "seed": seed},
        "patterns": patterns,
        "scaling": scaling,
        "fpga": fpga,
        "tool_speed": {
            "generate_seconds": generation_seconds(Config()),
            "verilator_build_seconds_min": min(builds),
            "verilator_build_seconds_max": max(builds),
            "sim_cycles_per_second": dense["sim_cycles_per_second"],
        },
    }
    results["plots"] = plot(patterns, scaling, out)
    results["seconds"] = time.monotonic() - start
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    _log(markdown(results))
    _log(f"bench: wrote {out / 'results.json'}, {out / 'results.md'} and "
         f"{', '.join(results['plots'])} in {results['seconds']:.0f} s")
    return 0
