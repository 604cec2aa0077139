"""`bbsparse bench` / `make bench`: the project's figures, measured side by side in one run.

The command line is :func:`bbsparse.cli.add_bench`; ``make bench`` writes into
``build/bench``, and ``make bench-save`` copies a run's results over the committed ones in
``bench/`` (which the README quotes), so a run never changes tracked files by accident.

Every cycle count comes from the RTL under Verilator (tb/harness.py), every result is
checked against the golden model, and every FPGA figure from Yosys and nextpnr's reports
(synth/flow.py). The last section, "compiled model" (:func:`compiled_model_runs`), is the
comparison a user makes: a scikit-learn MLP through ``bbsparse compile`` for the UP5K and
the ECP5-25k (when they are among the targets), its batch-1 latency on chip (cycles / Fmax)
against onnxruntime and NumPy on this CPU. Writes ``results.json``, ``results.md`` and PNG
plots into the output folder, with a progress line per step: which step of how many, the
time so far and an estimate of the time left (:class:`Steps`).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from . import bench_cbs
from .golden import prune, spmv
from .golden.config import Config
from .hdl.generate import verilog_text
from .synth.tools import duration_text

__all__ = ["Steps", "compiled_figures", "compiled_markdown", "compiled_model_runs",
           "main", "pattern_runs", "scaling_runs"]

# DESIGN §7 and the published accelerators a per-DSP figure compares with.
PUBLISHED = [
    {"name": "BBS LSTM engine (FPGA'19), Arria 10 GX1150", "gops": 750.9},
    {"name": "ESE (FPGA'17), XCKU060, sparse", "gops": 282.2},
]


def _log(message: str) -> None:
    print(message, flush=True)


class Steps:
    """Progress lines for a run of planned steps, one as each starts: ``bench [3/31] BBS 1/8
    (...) ... elapsed 1 min 40 s, about 8 min left``.

    `plan` gives each step's kind in order, `priors` a kind's expected seconds (a kind
    without one is estimated once a step of it has finished). The time left is, for the
    step starting and every later one, the mean of the finished steps of its kind, else its
    kind's prior; a line without an estimate says so."""

    def __init__(self, name: str, plan: list[str], priors: dict | None = None, log=_log,
                 clock=time.monotonic):
        self.name, self.plan, self.priors = name, list(plan), dict(priors or {})
        self.log, self.clock = log, clock
        self.start = clock()
        self.done: dict[str, list[float]] = {}
        self.index = 0
        self._began = None

    def _estimate(self, kind: str):
        times = self.done.get(kind)
        return sum(times) / len(times) if times else self.priors.get(kind)

    def left(self):
        """Seconds left from the start of step `index` on, or None if a kind is unknown."""
        guesses = [self._estimate(kind) for kind in self.plan[self.index:]]
        return None if any(g is None for g in guesses) else sum(guesses)

    def begin(self, label: str) -> None:
        """Close the step before (its time goes to its kind) and announce the next one."""
        now = self.clock()
        if self._began is not None:
            self.done.setdefault(self.plan[self.index], []).append(now - self._began)
            self.index += 1
        if self.index >= len(self.plan):
            raise ValueError(f"{self.name}: more steps than the {len(self.plan)} planned")
        self._began = now
        left = self.left()
        estimate = (f", about {duration_text(left)} left" if left is not None
                    else ", time left estimated after the first step")
        self.log(f"{self.name} [{self.index + 1}/{len(self.plan)}] {label} ... elapsed "
                 f"{duration_text(now - self.start)}{estimate}")


def pattern_cases() -> list[tuple[str, int, int]]:
    """(name, bank_size, nnz_per_bank) of the BBS patterns, dense first."""
    cases = [("dense", 8, 8)]
    cases += [(f"BBS {n}/8", 8, n) for n in (4, 2, 1)]
    cases += [(f"BBS {n}/16", 16, n) for n in (8, 4, 2, 1)]
    cases += [("2:4", 4, 2)]
    return cases


#: The unstructured densities, each run in both stream orders.
UNSTRUCTURED_DENSITIES = (1 / 2, 1 / 4, 1 / 8, 1 / 16)
UNSTRUCTURED_ORDERS = ("banks", "columns")


def scaling_grid() -> list[tuple[str, dict, int]]:
    """(axis, configuration parameters, rows) of the scaling runs."""
    grid = [("lanes", dict(lanes=lanes, pes=2, cols=1024), 256) for lanes in (1, 2, 4, 8, 16, 32)]
    grid += [("cols", dict(lanes=16, pes=2, cols=cols), 256) for cols in (64, 256, 1024, 4096)]
    grid += [("rows", dict(lanes=16, pes=2, cols=1024), rows) for rows in (64, 256, 1024)]
    return grid


def _steps_or_lines(steps):
    """`steps` or, for a caller that gave none, plain ``bench: ...`` lines."""
    if steps is not None:
        return steps.begin
    return lambda label: _log(f"bench: {label} ...")


def _run(config: Config, W, X, order: str = "banks") -> dict:
    """One SpMV batch on the RTL, checked; the harness's report plus the check."""
    from .tb.harness import run_spmv

    result = run_spmv(config, W, X, order=order, log=lambda m: None)
    report = dict(result.report)
    report["exact"] = bool(np.array_equal(result.y, spmv.spmv(config, W, X)))
    if not report["exact"] or report["error"]:
        raise RuntimeError(f"RTL result differs from golden for {config}")
    return report


def pattern_runs(rows: int, cols: int, lanes: int, pes: int, vectors: int, seed: int,
                 steps: Steps | None = None) -> list:
    """BBS at several densities, 2:4, unstructured at the same nonzero counts, and dense,
    all on one array (lanes x pes multipliers) and one weight matrix."""
    begin = _steps_or_lines(steps)
    rng = np.random.default_rng(seed)
    dense = rng.integers(-128, 128, size=(rows, cols))
    X = rng.integers(-128, 128, size=(vectors, cols))
    runs = []
    for name, bank, nnz in pattern_cases():
        config = Config(lanes=lanes, pes=pes, cols=cols, bank_size=bank, nnz_per_bank=nnz)
        W = prune.PRUNERS["bbs"](dense, bank_size=bank, nnz_per_bank=nnz)
        begin(f"patterns: {name} ({rows}x{cols}, {lanes} lanes x {pes} PEs)")
        runs.append({"pattern": name, "kind": "dense" if nnz == bank else "bbs",
                     "density": nnz / bank, "nonzeros": int(np.count_nonzero(W)),
                     **_run(config, W, X)})
    for density in UNSTRUCTURED_DENSITIES:
        nonzeros = int(rows * cols * density)
        W = prune.PRUNERS["unstructured"](dense, nnz=nonzeros)
        config = Config(lanes=lanes, pes=pes, cols=cols, bank_size=16, pattern="unstructured")
        for order in UNSTRUCTURED_ORDERS:
            name = f"unstructured {density:g} ({order})"
            begin(f"patterns: {name}")
            runs.append({"pattern": name, "kind": f"unstructured-{order}", "density": density,
                         "nonzeros": nonzeros, **_run(config, W, X, order)})
    dense_cycles = runs[0]["cycles"]
    dense_steady = runs[0]["steady_cycles"]
    for run in runs:
        run["speedup_over_dense"] = dense_cycles / run["cycles"]
        run["steady_speedup_over_dense"] = dense_steady / run["steady_cycles"]
        run["ideal_speedup"] = 1 / run["density"]
    return runs


def scaling_runs(seed: int, steps: Steps | None = None) -> list:
    """Cycles and utilization as lanes, cols and rows grow (BBS 1/8, bank 8)."""
    begin = _steps_or_lines(steps)
    rng = np.random.default_rng(seed)
    runs = []
    for axis, params, rows in scaling_grid():
        config = Config(bank_size=8, nnz_per_bank=1, **params)
        W = prune.PRUNERS["bbs"](rng.integers(-128, 128, size=(rows, config.cols)),
                                 bank_size=8, nnz_per_bank=1)
        X = rng.integers(-128, 128, size=(2, config.cols))
        begin(f"scaling {axis}: lanes {config.lanes}, cols {config.cols}, rows {rows}")
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


#: Targets whose default core the bench also runs (besides their largest fit): the default
#: core's clock goal is the 25k's (DESIGN §12.7); the UP5K's default core is its fit.
FPGA_DEFAULT_CORES = ("ecp5-25k",)
#: Targets whose largest fit with LUT multipliers beside the DSP blocks the bench also runs
#: (``bbsparse synth --fit --fit-multipliers mix``, DESIGN §12.8): the "mix" core.
FPGA_MIX_CORES = ("ecp5-85k",)


def fpga_cores(targets) -> list[tuple[str, str]]:
    """The bench's FPGA runs, in order: (target, "fit") for each target, then (target,
    "default") for those of :data:`FPGA_DEFAULT_CORES`, then (target, "mix") for those of
    :data:`FPGA_MIX_CORES`."""
    return [(name, "fit") for name in targets] + \
        [(name, "default") for name in FPGA_DEFAULT_CORES if name in targets] + \
        [(name, "mix") for name in FPGA_MIX_CORES if name in targets]


def _core_config(name: str, core: str = "fit") -> Config:
    """Target `name`'s largest fit (``bbsparse synth --fit``, `core` "fit"), its largest
    fit with LUT multipliers ("mix": ``--fit --fit-multipliers mix``) or its default core."""
    from .synth.flow import fit_search
    from .synth.targets import TARGETS

    target = TARGETS[name]
    if core == "default":
        return target.default_config()
    multipliers = "mix" if core == "mix" else "dsp"
    return fit_search(target, target.fit_base(Config(), multipliers=multipliers),
                      multipliers=multipliers)[0]["_config"]


def _core_label(name: str, core: str) -> str:
    """Target `name`, and `core` when it is not the fit: how the bench names a run."""
    return name if core == "fit" else f"{name} ({core} core)"


def _placer(core: str) -> str:
    """nextpnr's placer for a `core`: the static placer for the mix (the 85k's seed 1: 152.4
    MHz, placed and routed in about 20 minutes, where HeAP took 40-85 for 135-148; its
    seeds 2 and 3 congested the router: DESIGN §12.8), nextpnr's default for the others,
    whose figures it made."""
    from .synth.flow import DEFAULT_PLACER

    return "static" if core == "mix" else DEFAULT_PLACER


def _floorplan(name: str, core: str) -> bool:
    """Whether the bench places `core`'s hard multipliers by target `name`'s DSP floorplan
    (``bbsparse synth --dsp-floorplan``): the mix, on a target with a DSP site list (the
    85k: each PE's DSP blocks in a band of their own, DESIGN §12.8)."""
    from .synth.targets import TARGETS

    return core == "mix" and bool(TARGETS[name].dsp_sites)


def _folder(out: Path, name: str, core: str) -> Path:
    return out / "synth" / (name if core == "fit" else f"{name}-{core}")


def _reusable(out: Path, name: str, config: Config, reuse: bool,
              core: str = "fit") -> Path | None:
    """The report of an earlier run `--reuse-synth` may take: same configuration, the same
    Verilog of the synthesis top, the same Yosys script and the same placer (a change of
    the RTL, of the top or of the flow's synthesis commands is a new run)."""
    from .synth.flow import DEFAULT_PLACER, SYNTH_SCRIPT, TOP_NAME, synth_script
    from .synth.targets import TARGETS

    folder = _folder(out, name, core)
    previous = folder / "report.json"
    if not (reuse and previous.exists()):
        return None
    report = json.loads(previous.read_text())
    if report["parameters"] != config.to_dict() \
            or report.get("placer", DEFAULT_PLACER) != _placer(core) \
            or report.get("dsp_floorplan", False) != _floorplan(name, core):
        return None
    verilog = folder / f"{TOP_NAME}.v"
    if not verilog.exists() \
            or verilog.read_text() != _top_verilog(name, config, _floorplan(name, core)):
        return None
    script = folder / SYNTH_SCRIPT
    if not script.exists() or script.read_text() != synth_script(TARGETS[name]):
        return None
    return previous


@functools.cache
def _top_verilog(name: str, config: Config, dsp_floorplan: bool = False) -> str:
    """The synthesis top's Verilog of `config` on target `name`, made once a run: the plan
    (fpga_seconds) and the runs (fpga_runs) both ask (the 85k fit's takes seconds)."""
    from .synth.flow import synth_top_verilog
    from .synth.targets import TARGETS

    return synth_top_verilog(TARGETS[name], config, dsp_floorplan=dsp_floorplan)[1]


def fpga_seconds(out: Path, name: str, reuse: bool, core: str = "fit") -> float:
    """What `bbsparse synth --fit` on target `name` is expected to take: nothing if its
    report is reused, else the wall time of the last run in `out` if there is one, else a
    rough figure from the DSP blocks it will fill: ``dsps ** 1.2`` seconds for one seed,
    fitted on the saved bench's four targets (10 s for 8 SB_MAC16 ... 430 s for 156
    MULT18X18D, each within a factor 1.6), times :data:`FPGA_SEED_FACTOR` for the other
    seeds."""
    config = _core_config(name, core)
    if _reusable(out, name, config, reuse, core):
        return 0.0
    previous = _folder(out, name, core) / "report.json"
    if previous.exists():
        return float(json.loads(previous.read_text())["total_seconds"])
    return float(config.multipliers) ** 1.2 * FPGA_SEED_FACTOR


# -- the FPGA targets ----------------------------------------------------------------------

#: nextpnr placement seeds per target (Fmax min / median over them), run 2 at a time after
#: the first; the bitstream and every other figure are the first seed's.
FPGA_SEEDS = 3
FPGA_WORKERS = 2
#: A flow with FPGA_SEEDS seeds against one: the two extra nextpnr runs share the 2 cores.
FPGA_SEED_FACTOR = 2.0


def _more_seeds(target, folder: Path, report: dict, placer: str,
                time_limit: float | None = None) -> dict:
    """Fmax over FPGA_SEEDS seeds for a reused report written without them: nextpnr again
    on its netlist with the seeds after its own (one past `time_limit` is stopped and ranks
    below the others: :func:`~.synth.flow.seed_figures`)."""
    from .synth.flow import fmax_over_seeds, seed_figures

    first = report.get("seed", 1)
    stopped: dict = {}
    found = fmax_over_seeds(folder, target, range(first + 1, first + FPGA_SEEDS),
                            report["fmax"]["constraint_mhz"], workers=FPGA_WORKERS,
                            placer=placer, time_limit=time_limit, stopped=stopped)
    return seed_figures({first: report["fmax"]["achieved_mhz"], **found}, stopped)


def fpga_runs(targets, out: Path, reuse: bool, seed: int, steps: Steps | None = None,
              pnr_time_limit: float | None = None) -> list:
    """The largest fitting configuration per target (``bbsparse synth --fit``), then the
    default cores of :func:`fpga_cores`: resources and Fmax from Yosys and nextpnr, the
    configuration's utilization from the RTL, and the GOPS they give (2 ops a MAC).

    `pnr_time_limit` (seconds, ``bbsparse bench --pnr-time-limit``): a nextpnr run still
    going then is stopped. A further seed stopped ranks below the seeds that finished
    (:func:`~.synth.flow.seed_figures`); the first seed stopped leaves the row without
    resources or Fmax (``stopped``: why) and the bench goes on to the next core."""
    from .synth.flow import run_flow, seed_figures
    from .synth.table import logic_figures
    from .synth.targets import TARGETS
    from .synth.tools import TimeLimitError

    begin = _steps_or_lines(steps)
    results = []
    for name, core in fpga_cores(targets):
        target = TARGETS[name]
        config = _core_config(name, core)
        folder = _folder(out, name, core)
        previous = _reusable(out, name, config, reuse, core)
        label = _core_label(name, core)
        report, stopped = None, None
        reused = None
        if previous is not None:
            begin(f"FPGA {label}: reusing {previous}")
            report = json.loads(previous.read_text())
            reused = str(previous)
            if "fmax_seeds" not in report and (folder / "synth.json").exists():
                report["fmax_seeds"] = _more_seeds(target, folder, report, _placer(core),
                                                   pnr_time_limit)
        else:
            begin(f"FPGA {label}: {config.lanes} lanes x {config.pes} PEs through Yosys and "
                  f"nextpnr, {FPGA_SEEDS} placement seeds")
            try:
                report = run_flow(target, config, folder, seeds=FPGA_SEEDS,
                                  workers=FPGA_WORKERS, placer=_placer(core),
                                  dsp_floorplan=_floorplan(name, core),
                                  pnr_time_limit=pnr_time_limit).report
            except TimeLimitError as exc:
                stopped = str(exc)
                _log(f"bench: FPGA {label}: {stopped}; no figures for it")
        rng = np.random.default_rng(seed)
        rows = 32 * config.pes
        W = prune.PRUNERS["bbs"](rng.integers(-128, 128, size=(rows, config.cols)),
                                 bank_size=config.bank_size, nnz_per_bank=config.nnz_per_bank)
        X = rng.integers(-128, 128, size=(2, config.cols))
        begin(f"FPGA {label}: utilization of that configuration on the RTL")
        sim = _run(config, W, X)
        row = {
            "target": name, "core": core, "lanes": config.lanes, "pes": config.pes,
            "product_registers": config.product_registers,
            "mixed_product_registers": config.mixed_product_registers,
            "operand_registers": config.operand_registers,
            "broadcast_registers": config.broadcast_registers,
            "result_registers": config.result_registers,
            "utilization_steady": sim["utilization_steady"],
            "utilization_whole_run": sim["utilization"],
        }
        if report is None:
            results.append({**row, "stopped": stopped})
            continue
        used = report["resources"]
        logic = logic_figures(report)
        seeds = report.get("fmax_seeds") or seed_figures({report.get("seed", 1):
                                                          report["fmax"]["achieved_mhz"]})
        fmax = seeds["median_mhz"]  # the GOPS at the median over the seeds (None: stopped)
        per_cycle = 2 * config.multipliers * sim["utilization_steady"]
        gops = None if fmax is None else per_cycle * fmax / 1000
        dsps_used = used["dsps"]["used"]
        w_bits = report.get("w_stream", {}).get("bits_per_beat", config.w_beat_width)
        board = (report.get("w_stream") or {}).get("board_memory")
        timing = report.get("timing") or {"met": report["fmax"]["met"]}
        results.append({
            **row,
            # The report of an earlier run (--reuse-synth), whose tool times these are.
            **({"reused": reused} if reused else {}),
            # lut: the report's luts (LUT4s in use, DESIGN §7.2), kept for older readers;
            # lut4 (Yosys) and logic_cells (nextpnr) are one unit each.
            "lut": used["luts"]["used"],
            "lut4": f"{logic['lut4']['used']}/{logic['lut4']['available']}",
            "logic_cells": (f"{logic['logic_cells']['used']}/"
                            f"{logic['logic_cells']['available']}"
                            if logic["logic_cells"] else None),
            "ff": logic["ffs"]["used"],
            "dsp": f"{used['dsps']['used']}/{used['dsps']['available']}",
            "bram": f"{used['brams']['used']}/{used['brams']['available']}",
            # fmax_mhz: the built bitstream's (first seed); the GOPS use the median.
            "fmax_mhz": report["fmax"]["achieved_mhz"],
            "fmax_min_mhz": seeds["min_mhz"], "fmax_median_mhz": seeds["median_mhz"],
            "fmax_seeds": {key: seeds[key] for key in ("seeds", "fmax_mhz", "stopped")
                           if key in seeds},
            "constraint_mhz": report["fmax"]["constraint_mhz"],
            "timing_met": timing["met"], "timing_reasons": timing.get("reasons", []),
            "dsp_registers_ok": (report.get("dsp_registers") or {}).get("all_registered"),
            "dsp_check_ok": report["dsp_check"]["ok"],
            "gops_sparse": gops,
            "gops_dense_equivalent": None if gops is None else gops / config.density,
            "ops_per_dsp_per_cycle": per_cycle / config.multipliers,
            "gops_per_dsp": gops / dsps_used if dsps_used and gops is not None else None,
            "gops_per_1000_luts": (None if gops is None
                                   else gops / (used["luts"]["used"] / 1000)),
            # The w stream the GOPS assume (one beat a cycle at the median Fmax), and what
            # the chip and the board can give (DESIGN §11.3 w_stream).
            "w_bits_per_beat": w_bits,
            "w_gbit_per_s_needed": None if fmax is None else w_bits * fmax / 1000,
            "on_chip_weights": (report.get("w_stream") or {}).get(
                "on_chip_weight_capacity", {}).get("weights"),
            "board_memory": board,
            "step_seconds": {step: info["seconds"] for step, info in report["steps"].items()},
            "critical_path": report.get("critical_path"),
        })
    return results


# -- the compiled model: the comparison a user makes ---------------------------------------

#: A scikit-learn MLP on the digits, compiled with BBS 2/8 for each chip that takes it: the
#: chip's lanes x PEs (the UP5K's 8 DSP blocks take 8 x 1). A chip of these runs the
#: section when it is among the bench's targets.
COMPILED_TARGETS = {"ice40-up5k": (8, 1), "ecp5-25k": (8, 2)}
COMPILED_BANK = (8, 2)
COMPILED_HIDDEN = (32, 16)
COMPILED_EPOCHS = 10  # fine-tuning under the BBS masks, on the training split
COMPILED_MODEL_SEED = 0  # the split and the MLP's initial weights (tests' sklearn_mlp too)
COMPILED_TEST_FRACTION = 0.25
#: Batch-1 CPU latency: the median of this many single-sample calls, after the warm-up.
LATENCY_REPEATS = 1000
LATENCY_WARMUP = 100
#: The batch-1 figure the model core should reach: within this of ideal + fill.
OVERHEAD_LIMIT = 0.05
#: Expected seconds of a compile with its bitstream, before a run in `out` tells better
#: (about 32 and 30 s on the 2-core development machine).
COMPILED_SECONDS = {"ice40-up5k": 45.0, "ecp5-25k": 45.0}
COMPILED_FOLDER = "compiled"


def compiled_targets(targets) -> list[str]:
    """The targets of the compiled-model section, in its order."""
    return [name for name in COMPILED_TARGETS if name in targets]


def compiled_seconds(out: Path, name: str) -> float:
    """What compiling for `name` is expected to take: the last compile in `out`, else a
    guess."""
    manifest = out / COMPILED_FOLDER / name / "manifest.json"
    if manifest.exists():
        seconds = json.loads(manifest.read_text()).get("compile_seconds")
        if seconds:
            return float(seconds)
    return COMPILED_SECONDS.get(name, 120.0)


def sklearn_digits_model(path: Path) -> dict:
    """Train Pipeline(StandardScaler, MLPClassifier(COMPILED_HIDDEN)) on the digits (raw
    pixels 0..16) and export it with skl2onnx, without ZipMap, to `path`; the split
    (float32 inputs, int labels) and the float test accuracy. ImportError without
    skl2onnx."""
    import warnings

    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X.astype(np.float32), y, test_size=COMPILED_TEST_FRACTION,
        random_state=COMPILED_MODEL_SEED, stratify=y)
    clf = MLPClassifier(hidden_layer_sizes=COMPILED_HIDDEN, max_iter=200,
                        random_state=COMPILED_MODEL_SEED)
    pipeline = Pipeline([("scale", StandardScaler()), ("mlp", clf)])
    # One BLAS thread: the same weights on every machine.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(X_train, y_train)
    model = convert_sklearn(
        pipeline, initial_types=[("input", FloatTensorType([None, X.shape[1]]))],
        options={id(clf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    onnx.save(model, str(path))
    return {"path": path, "X_train": X_train, "y_train": y_train, "X_test": X_test,
            "y_test": y_test, "sklearn_accuracy": float(pipeline.score(X_test, y_test))}


def median_microseconds(call, *, repeats: int = LATENCY_REPEATS, warmup: int = LATENCY_WARMUP,
                        clock=time.perf_counter) -> float:
    """The median wall time of `call()` in µs over `repeats` calls, after `warmup` calls."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats!r}")
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = clock()
        call()
        times.append(clock() - start)
    return float(np.median(times)) * 1e6


def cpu_latencies(model_path: Path, integer_model, x_float, x_int, *,
                  repeats: int = LATENCY_REPEATS, warmup: int = LATENCY_WARMUP) -> dict:
    """Batch-1 latency on this CPU: the whole float model in onnxruntime (default session
    options, as a user opens it: the scaler and the classifier's tail included) on one test
    sample, and the golden integer model (:meth:`IntegerModel.forward`, NumPy int64) on the
    same sample's quantized vector."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_path),
                                           providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.asarray(x_float[:1], dtype=np.float32)}
    vector = np.asarray(x_int[0])
    return {
        "onnxruntime_us": median_microseconds(lambda: session.run(None, feed),
                                              repeats=repeats, warmup=warmup),
        "numpy_int8_us": median_microseconds(lambda: integer_model.forward(vector),
                                             repeats=repeats, warmup=warmup),
        "repeats": repeats,
        "warmup": warmup,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def compiled_figures(target: str, lanes: int, pes: int, run: dict, description: dict,
                     cpu: dict) -> dict:
    """One target's figures from `run` (:func:`run_compiled`'s report), `description`
    (``bbs_model.json``) and `cpu` (:func:`cpu_latencies`).

    The batch-1 expectation is ideal + fill: the ideal is every layer's ``x_beats +
    w_beats``, the fill per layer the core's latency plus the output stage's
    (``derived.core_latency + derived.output_latency``); the overhead is what the measured
    batch-1 cycles take beyond that, as a fraction of it (negative: fewer)."""
    derived = description["derived"]
    layers = description["model"]["layers"]
    ideal = sum(layer["x_beats"] + layer["w_beats"] for layer in layers)
    fill = len(layers) * (derived["core_latency"] + derived["output_latency"])
    cycles = run["cycles_per_inference"]
    overhead = (cycles - (ideal + fill)) / (ideal + fill)
    fmax = run.get("fmax_mhz")
    on_chip = cycles / fmax if fmax else None

    def ratio(cpu_us):
        return cpu_us / on_chip if on_chip else None

    return {
        "target": target, "lanes": lanes, "pes": pes,
        "layers": [{"name": layer["name"], "rows": layer["rows"], "cols": layer["cols"],
                    "x_beats": layer["x_beats"], "w_beats": layer["w_beats"]}
                   for layer in layers],
        "cycles_per_inference": cycles,
        "ideal_cycles": ideal,
        "fill_cycles": fill,
        "core_latency": derived["core_latency"],
        "output_latency": derived["output_latency"],
        "overhead_beyond_ideal_plus_fill": overhead,
        "within_limit_of_ideal_plus_fill": abs(overhead) <= OVERHEAD_LIMIT,
        "overhead_limit": OVERHEAD_LIMIT,
        "fmax_mhz": fmax,
        "on_chip_latency_us": on_chip,
        "onnxruntime_us": cpu["onnxruntime_us"],
        "numpy_int8_us": cpu["numpy_int8_us"],
        "onnxruntime_over_on_chip": ratio(cpu["onnxruntime_us"]),
        "numpy_over_on_chip": ratio(cpu["numpy_int8_us"]),
        "accuracy": {"float": run.get("accuracy_float"), "int8_golden": run.get("accuracy_golden"),
                     "rtl": run.get("accuracy")},
        "golden_mismatches": run["golden_mismatches"],
        "error": run.get("error"),
    }


def compiled_model_runs(targets, out: Path, steps: Steps | None = None, log=_log) -> dict:
    """The compiled-model section: the scikit-learn MLP through ``bbsparse compile`` (BBS
    2/8, fine-tuned on the training split) for each chip of :data:`COMPILED_TARGETS` among
    `targets`, each with its bitstream and Fmax, run on the test split under Verilator
    (``bbsparse run``), checked against the golden model, and timed against onnxruntime and
    NumPy on this CPU. Without skl2onnx (a dev dependency) the section is skipped, saying
    so. Writes ``out/compiled/`` (the model, one compiled folder per target) and
    ``out/compiled_model.json``."""
    import importlib.util

    names = compiled_targets(targets)
    if not names:
        return {"skipped": "no target of this section among --targets (it runs on "
                           + ", ".join(COMPILED_TARGETS) + ")"}
    if importlib.util.find_spec("skl2onnx") is None:
        reason = ("skl2onnx is not installed (a dev dependency: pip install -e '.[dev]'); "
                  "the compiled-model section is skipped")
        log(f"bench: {reason}")
        return {"skipped": reason}
    from .compiler.build import CompileOptions, compile_model, load_compiled
    from .compiler.quantize import CoreShape
    from .compiler.run import run_compiled

    begin = _steps_or_lines(steps)
    folder = out / COMPILED_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    sizes = "64-" + "-".join(str(n) for n in COMPILED_HIDDEN) + "-10"
    begin(f"compiled model: train the scikit-learn MLP {sizes} and export it (skl2onnx)")
    data = sklearn_digits_model(folder / "model.onnx")
    section = {
        "model": f"scikit-learn Pipeline(StandardScaler, MLPClassifier{COMPILED_HIDDEN}) on "
                 f"the digits, skl2onnx (no ZipMap)",
        "pattern": f"BBS {COMPILED_BANK[1]}/{COMPILED_BANK[0]}",
        "finetune_epochs": COMPILED_EPOCHS,
        "train_images": len(data["X_train"]),
        "test_images": len(data["X_test"]),
        "sklearn_accuracy": data["sklearn_accuracy"],
        "cpu": _cpu_name(),
        "targets": [],
    }
    runs = []
    for name in names:
        lanes, pes = COMPILED_TARGETS[name]
        begin(f"compiled model {name}: compile ({lanes} lanes x {pes} PEs, "
              f"{section['pattern']}, fine-tune {COMPILED_EPOCHS} epochs), Yosys and nextpnr")
        options = CompileOptions(
            model=str(data["path"]), calibration=data["X_train"],
            shape=CoreShape(bank_size=COMPILED_BANK[0], nnz_per_bank=COMPILED_BANK[1],
                            lanes=lanes, pes=pes),
            target=name, finetune_x=data["X_train"], labels=data["y_train"],
            epochs=COMPILED_EPOCHS)
        manifest = compile_model(options, folder / name, log=lambda m: log(f"  {m}"))
        compiled = load_compiled(folder / name)
        begin(f"compiled model {name}: {len(data['X_test'])} test images on the RTL")
        _, run = run_compiled(compiled, data["X_test"], labels=data["y_test"],
                              log=lambda m: log(f"  {m}"))
        if run["golden_mismatches"] or run.get("error"):
            raise RuntimeError(f"compiled model on {name}: {run['golden_mismatches']} inputs "
                               f"differ from the golden model (error {run.get('error')})")
        runs.append((name, lanes, pes, compiled, manifest, run))
    # The CPU figures do not depend on the target (the targets' integer models differ only
    # in the core that runs them): one measurement, after the simulations, for every row.
    compiled = runs[0][3]
    q = compiled.quantized
    x_int = q.quantize_input(compiled.float_model.preprocess(data["X_test"][:1]))
    cpu = cpu_latencies(data["path"], q.model, data["X_test"], x_int)
    log(f"  this CPU, batch 1 (median of {cpu['repeats']}): onnxruntime "
        f"{cpu['onnxruntime_us']:.1f} µs, NumPy int8 (golden forward) "
        f"{cpu['numpy_int8_us']:.1f} µs")
    section["cpu_timing"] = {k: cpu[k] for k in ("repeats", "warmup", "onnxruntime", "numpy")}
    for name, lanes, pes, _, manifest, run in runs:
        description = json.loads((folder / name / "bbs_model.json").read_text())
        figures = compiled_figures(name, lanes, pes, run, description, cpu)
        figures["resources"] = _compiled_resources(folder / name / manifest["bitstream"]
                                                   ["report"])
        figures["constraint_met"] = manifest["bitstream"].get("constraint_met")
        figures["compile_seconds"] = manifest["compile_seconds"]
        figures["accuracy"]["finetuned_train"] = manifest["accuracy"].get("finetuned")
        section["targets"].append(figures)
        log("  " + compiled_summary(figures))
    (out / "compiled_model.json").write_text(json.dumps(section, indent=2) + "\n")
    return section


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiled_resources(report_path: Path) -> dict:
    """DSP, BRAM and LUT use of a compiled bitstream (its report.json), as ``used/avail``."""
    used = json.loads(report_path.read_text())["resources"]
    return {key: f"{used[key]['used']}/{used[key]['available']}"
            for key in ("dsps", "brams", "luts") if key in used}


def _number(value, form: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, form)


def compiled_summary(r: dict) -> str:
    """One line of a target's figures, as the bench prints it while it runs."""
    return (f"{r['target']}: {r['cycles_per_inference']} cycles at "
            f"{_number(r['fmax_mhz'], '.1f')} MHz = {_number(r['on_chip_latency_us'], '.2f')} "
            f"µs on chip; onnxruntime {r['onnxruntime_us']:.1f} µs "
            f"({_number(r['onnxruntime_over_on_chip'], '.1f')}x), NumPy int8 "
            f"{r['numpy_int8_us']:.1f} µs ({_number(r['numpy_over_on_chip'], '.1f')}x); "
            f"ideal {r['ideal_cycles']} + fill {r['fill_cycles']}: overhead "
            f"{100 * r['overhead_beyond_ideal_plus_fill']:+.1f} %")


def compiled_markdown(section: dict | None) -> list[str]:
    """The compiled-model section of results.md (nothing for an older results.json)."""
    if not section:
        return []
    lines = ["", "## Compiled model: batch-1 latency on chip and on this CPU", ""]
    if "skipped" in section:
        return lines + [f"Skipped: {section['skipped']}."]
    limit = 100 * OVERHEAD_LIMIT
    lines += [f"{section['model']}, compiled with {section['pattern']} (fine-tuned "
              f"{section['finetune_epochs']} epochs on {section['train_images']} training "
              f"images), run on {section['test_images']} test images (RTL under Verilator, "
              f"checked against the golden model). On chip: batch-1 cycles / Fmax of the "
              f"compiled bitstream. CPU ({section['cpu']}): median of single-sample calls; "
              f"onnxruntime runs the whole float model (scaler and class look-up included), "
              f"NumPy the golden integer model's forward pass.", "",
              "| target | lanes x PEs | cycles | ideal + fill | overhead | Fmax (MHz) "
              "| on chip (µs) | onnxruntime (µs) | NumPy int8 (µs) | onnxruntime / on chip "
              "| NumPy / on chip | accuracy float / int8 / RTL | RTL != golden |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| --- | ---: |"]
    for r in section["targets"]:
        accuracy = " / ".join(_number(None if v is None else 100 * v, ".2f")
                              for v in (r["accuracy"]["float"], r["accuracy"]["int8_golden"],
                                        r["accuracy"]["rtl"])) + " %"
        lines.append(
            f"| {r['target']} | {r['lanes']} x {r['pes']} | {r['cycles_per_inference']} | "
            f"{r['ideal_cycles']} + {r['fill_cycles']} | "
            f"{100 * r['overhead_beyond_ideal_plus_fill']:+.1f} % | "
            f"{_number(r['fmax_mhz'], '.1f')} | {_number(r['on_chip_latency_us'], '.2f')} | "
            f"{r['onnxruntime_us']:.1f} | {r['numpy_int8_us']:.1f} | "
            f"{_number(r['onnxruntime_over_on_chip'], '.1f')}x | "
            f"{_number(r['numpy_over_on_chip'], '.1f')}x | {accuracy} | "
            f"{r['golden_mismatches']} |")
    lines += ["", f"Ideal: every layer's x beats + w beats; fill: per layer the core's "
              f"latency plus the output stage's (bbs_model.json). Batch-1 cycles within "
              f"{limit:g} % of ideal + fill: " + "; ".join(
                  f"{r['target']} {'yes' if r['within_limit_of_ideal_plus_fill'] else 'NO'} "
                  f"({100 * r['overhead_beyond_ideal_plus_fill']:+.1f} %)"
                  for r in section["targets"]) + "."]
    return lines


def plan(targets, out: Path, reuse: bool) -> Steps:
    """The bench's steps, in the order :func:`main` runs them, with their priors."""
    kinds = ["sim"] * (len(pattern_cases())
                       + len(UNSTRUCTURED_DENSITIES) * len(UNSTRUCTURED_ORDERS)
                       + len(scaling_grid()))
    priors = {}
    for name, core in fpga_cores(targets):
        kind = f"fpga {name}" if core == "fit" else f"fpga {name} {core}"
        kinds += [kind, "sim"]
        priors[kind] = fpga_seconds(out, name, reuse, core)
    compiled = compiled_targets(targets)
    if compiled:
        kinds.append("model export")
        priors["model export"] = 5.0
        for name in compiled:
            kinds += [f"compile {name}", "model run"]
            priors[f"compile {name}"] = compiled_seconds(out, name)
        priors["model run"] = 15.0
    return Steps("bench", kinds, priors)


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


def _fig(value, form: str) -> str:
    return "-" if value is None else format(value, form)


def _label(r: dict) -> str:
    """A row's target, and its core when it is not the fit."""
    return _core_label(r["target"], r.get("core", "fit"))


def _pipeline_registers(r: dict) -> str:
    """The fabric registers a row's core adds on its broadcasts, around its multipliers and
    on its results (DESIGN §2.1)."""
    return "".join(f", {r[key]} {what} register{'s' if r[key] != 1 else ''}" for key, what in
                   (("broadcast_registers", "broadcast"), ("operand_registers", "operand"),
                    ("product_registers", "product"),
                    ("mixed_product_registers", "mixed-PE product"),
                    ("result_registers", "result"))
                   if r.get(key))


def fpga_markdown(fpga: list) -> list[str]:
    """The FPGA section of results.md: one row per target, then what the figures mean and
    where the weights would come from (results.json written before the seeds, the timing
    flag or the w stream give "-" for those columns)."""
    from .synth.flow import fmax_text

    lines = ["", "## FPGA targets (largest fitting configuration, and default cores)", "",
             "| target | core: lanes x pes | LUT4 (Yosys) | logic cells (nextpnr) | FF | DSP "
             "| BRAM | Fmax min | Fmax median | constraint | GOPS sparse | GOPS dense-equivalent "
             "| ops / DSP / cycle | GOPS / DSP | GOPS / 1000 LUTs | w Gbit/s needed |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | ---: | ---: | ---: |"]
    for r in fpga:
        core = (f"| {r['target']} | {r.get('core', 'fit')}: {r['lanes']} x {r['pes']}"
                f"{_pipeline_registers(r)} |")
        if r.get("stopped"):
            lines.append(core + " - |" * 5 + " stopped | stopped |" + " - |" * 7)
            continue
        met = r.get("timing_met")
        constraint = f"{r['constraint_mhz']:g}" if "constraint_mhz" in r else "-"
        if met is not None:
            constraint += " met" if met else " NOT MET"
        lines.append(
            f"{core} {r.get('lut4') or '-'} | "
            f"{r.get('logic_cells') or '-'} | {r['ff']} | {r['dsp']} | {r['bram']} | "
            f"{fmax_text(r.get('fmax_min_mhz', r['fmax_mhz']))} | "
            f"{fmax_text(r.get('fmax_median_mhz', r['fmax_mhz']))} | {constraint} | "
            f"{_fig(r['gops_sparse'], '.1f')} | {_fig(r['gops_dense_equivalent'], '.1f')} | "
            f"{r['ops_per_dsp_per_cycle']:.2f} | {_fig(r.get('gops_per_dsp'), '.3f')} | "
            f"{_fig(r.get('gops_per_1000_luts'), '.2f')} | "
            f"{_fig(r.get('w_gbit_per_s_needed'), '.2f')} |")
    seeds = sorted({len(r["fmax_seeds"]["seeds"]) for r in fpga if r.get("fmax_seeds")})
    lines += ["", "LUT4: the LUT4 cells of Yosys' netlist; logic cells: those nextpnr "
              "placed (TRELLIS_COMB on the ECP5, one LUT4 each; ICESTORM_LC on the "
              "iCE40, a LUT4 and a flip-flop, either or both used); FF: Yosys' "
              "flip-flops (DESIGN §7.2)."]
    if seeds:
        lines += ["", f"Fmax: nextpnr's, min and median over {seeds[-1]} placement seeds "
                  f"(the bitstream and resources are the first seed's); the GOPS are at the "
                  f"median. Constraint: the target's own clock goal; NOT MET also when a DSP "
                  f"block nextpnr cannot time is unregistered (DESIGN §12.7)."]
    notes = []
    for r in fpga:
        if r.get("timing_reasons"):
            notes.append(f"{_label(r)}: " + "; ".join(r["timing_reasons"]))
    if notes:
        lines += ["", "Timing not met: " + ". ".join(notes) + "."]
    reused = [_label(r) for r in fpga if r.get("reused")]
    if reused:
        lines += ["", "Reused (`--reuse-synth`: the same configuration, synthesis top and "
                  "Yosys script as an earlier run's, whose report, seeds and tool times "
                  "these are): " + ", ".join(reused) + "."]
    stops = [f"{_label(r)}: {r['stopped']}" for r in fpga if r.get("stopped")]
    stops += [f"{_label(r)}, seed {s['seed']}: {s['reason']}" for r in fpga
              for s in (r.get("fmax_seeds") or {}).get("stopped", [])]
    if stops:
        lines += ["", "Stopped at the time limit (`bbsparse bench --pnr-time-limit`; a seed "
                  "stopped ranks below every seed that finished, so its min reads stopped, "
                  "and its median too when the median falls on it): " + ". ".join(stops)
                  + "."]
    stream = [r for r in fpga if r.get("w_gbit_per_s_needed") is not None]
    if stream:
        lines += ["", "Where the weights come from: the GOPS assume one w beat (lanes x pes "
                  "weights with their indices) every cycle, the w Gbit/s above. That is a "
                  "peak, sustained only while the weights arrive that fast:"]
        for r in stream:
            text = (f"- {_label(r)}: {r['w_bits_per_beat']} bits a cycle = "
                    f"{r['w_gbit_per_s_needed']:.2f} Gbit/s; on chip (the compiled-model "
                    f"path's weight ROM in the block RAM the core leaves) "
                    f"{_fig(r.get('on_chip_weights'), ',')} weights")
            board = r.get("board_memory")
            if board:
                share = board["peak_gbit_per_s"] / r["w_gbit_per_s_needed"]
                text += (f"; from the {board['board']}'s {board['memory']}: "
                         f"{board['bus_bits']} bits x {board['clock_mhz']:g} MHz = "
                         f"{board['peak_gbit_per_s']:.2f} Gbit/s peak, {100 * share:.0f} % of "
                         f"the stream ({board['source']})")
            lines.append(text + ".")
    lines += ["", "Published, for scale: " + "; ".join(
        f"{p['name']}: {p['gops']} GOPS" for p in PUBLISHED) + "."]
    return lines


def markdown(results: dict) -> str:
    lines = [f"# bbsparse bench — {results['date']}", "",
             f"Machine: {results['machine']}. Command: "
             f"`{results.get('command', 'make bench')}` ({results['seconds']:.0f} s).", "",
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
        lines += fpga_markdown(results["fpga"])
    speed = results["tool_speed"]
    lines += ["", "## Tool speed", "",
              f"- Verilog generation (default core): {speed['generate_seconds']:.2f} s",
              f"- Verilator build per configuration: {speed['verilator_build_seconds_min']:.1f}"
              f"–{speed['verilator_build_seconds_max']:.1f} s",
              f"- simulated cycles per second (16 lanes, 1024 x 1024 dense): "
              f"{speed['sim_cycles_per_second'] / 1e6:.2f} M"]
    for r in results.get("fpga", []):
        if r.get("step_seconds"):
            lines.append(f"- {_label(r)}: " + ", ".join(
                f"{step} {seconds:.1f} s" for step, seconds in r["step_seconds"].items()))
    lines += compiled_markdown(results.get("compiled_model"))
    return "\n".join(lines) + "\n"


def main(out: Path, *, rows: int = 1024, cols: int = 1024, lanes: int = 16, pes: int = 2,
         vectors: int = 2, seed: int = 7, targets=(), reuse_synth: bool = False,
         pnr_time_limit: float | None = None, command: str = "make bench") -> int:
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    steps = plan(targets, out, reuse_synth)
    patterns = pattern_runs(rows, cols, lanes, pes, vectors, seed, steps)
    scaling = scaling_runs(seed, steps)
    fpga = fpga_runs(targets, out, reuse_synth, seed, steps, pnr_time_limit) if targets else []
    compiled = compiled_model_runs(targets, out, steps)
    bench_cbs.main(out, seed=seed)  # cbs.json, cbs.md
    # A configuration built by an earlier run reports 0 s (cached): not a build time.
    builds = [r["verilator_build_seconds"] for r in patterns + scaling
              if not r.get("cached")] or [0.0]
    dense = patterns[0]
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "command": command,
        "array": {"rows": rows, "cols": cols, "lanes": lanes, "pes": pes, "vectors": vectors,
                  "seed": seed},
        "patterns": patterns,
        "scaling": scaling,
        "fpga": fpga,
        "compiled_model": compiled,
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
         f"{', '.join(results['plots'])} in {duration_text(results['seconds'])}")
    return 0
