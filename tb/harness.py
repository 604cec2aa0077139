"""Run whole SpMVs on the generated RTL under Verilator, with no Python in the clock loop.

`run_spmv` packs W and x with the golden packers (:mod:`bbsparse.golden.csb`), builds (once)
the :mod:`~bbsparse.tb.sim_top` wrapper around the core, runs it, unpacks y and returns the
cycle figures the wrapper measured. The returned y comes from the RTL only; comparing it with
the golden model is the caller's business.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..golden import csb, cycles
from ..golden.config import Config
from ..hdl.generate import TOP_NAME, describe, verilog_text
from .sim_top import SIM_MAIN_CPP, SIM_TOP, sim_top_verilog
from .verilator import verilator_build

__all__ = ["HANG_CYCLES", "RawRun", "SimResult", "SimulationError", "Stalls",
           "build_simulator", "build_telling_cache", "read_hex", "run_spmv", "run_wrapper",
           "simulate"]


@dataclass(frozen=True)
class Stalls:
    """Random stalls, as probabilities in [0, 1): an idle beat on the x / w source, a
    not-ready cycle on the y sink, and the start of a 1..256-cycle back-pressure burst."""

    x_idle: float = 0.0
    w_idle: float = 0.0
    y_stall: float = 0.0
    y_burst: float = 0.0

    def plusargs(self) -> list[str]:
        args = []
        for name, p in (("X_IDLE", self.x_idle), ("W_IDLE", self.w_idle),
                        ("Y_STALL", self.y_stall), ("Y_BURST", self.y_burst)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"stall probability {name.lower()} must be in [0, 1), not {p!r}")
            args.append(f"+{name}={int(round(p * 65536))}")
        return args


@dataclass
class SimResult:
    y: np.ndarray
    report: dict = field(default_factory=dict)


def _bucket(n: int, minimum: int = 4096) -> int:
    """Memory depths come in powers of two so that one build serves many sizes."""
    depth = minimum
    while depth < n:
        depth *= 2
    return depth


@functools.lru_cache(maxsize=64)
def core_verilog(config: Config) -> str:
    """The core's Verilog for `config`, made once per configuration in this process: it
    depends on the configuration only, and making it (0.4-4 s of Amaranth) costs far more
    than most simulations."""
    return verilog_text(config)


def build_simulator(config: Config, x_beats: int, w_beats: int, y_beats: int, *,
                    waves: bool = False, log=None) -> Path:
    """Build (or reuse) the wrapper binary for these sizes; return its folder."""
    depths = (_bucket(x_beats), _bucket(w_beats), _bucket(y_beats))
    sources = {
        f"{TOP_NAME}.v": core_verilog(config),
        f"{SIM_TOP}.v": sim_top_verilog(config, *depths),
    }
    return verilator_build("sim", sources, SIM_TOP, cpp_main=SIM_MAIN_CPP, waves=waves,
                           flags=["--x-assign", "0", "--x-initial", "0"], log=log)


def _write_hex(path: Path, words, width: int) -> None:
    digits = max(1, -(-width // 4))
    path.write_text("".join(f"{w:0{digits}x}\n" for w in words))


class SimulationError(RuntimeError):
    """The simulation did not deliver every y beat: the simulator failed, or the core made no
    transfer for :data:`HANG_CYCLES` cycles in which it was offered everything (a hang), or a
    caller's `max_cycles` ran out. The message is one line."""


#: Cycles without any transfer, counted only while the wrapper offers the core everything
#: (y ready, every source with beats left valid), after which the core is taken to hang. A
#: healthy core transfers within its pipeline latency or a crossbar conflict (at most a few
#: hundred cycles), and the stalls the wrapper itself makes do not count, so this catches a
#: hang at any stall setting without cutting a slow run short.
HANG_CYCLES = 100_000


@dataclass
class RawRun:
    """What the simulation wrapper measured: its figures (``tb/sim_top.py``), the y beats
    (``tlast`` above the ``y_beat_width`` data bits), wall time and the build's time."""
    figures: dict
    y_words: list[int]
    wall_seconds: float
    build_seconds: float  # 0.0 when the simulator came from the cache
    cached: bool = False


def build_telling_cache(build, log=None) -> tuple[Path, bool]:
    """``build(note)`` (a builder taking the log callable, as :func:`build_simulator`), and
    whether its folder came from the cache: the builders (``verilator_build``) speak only
    when they really build. Their lines go on to `log` (default: stderr)."""
    said = []
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))

    def note(message):
        said.append(message)
        say(message)

    folder = build(note)
    return folder, not said


def run_wrapper(folder: Path, plusargs: list[str], *, max_cycles: int | None = None,
                waves: str | Path | None = None) -> tuple[dict, float]:
    """Run the simulation wrapper built in `folder` with `plusargs` (and the ``+MAX_CYCLES``
    / ``+TRACE`` of `max_cycles` / `waves`); its ``BBSPARSE_RESULT`` figures and the wall
    time. SimulationError, with the last lines of its output, if it fails or says
    nothing; whether it finished (``done``) is the caller's to judge."""
    args = [str(folder / "sim"), *plusargs]
    if max_cycles is not None:
        args.append(f"+MAX_CYCLES={max_cycles}")
    if waves is not None:
        args.append(f"+TRACE={Path(waves).resolve()}")
    start = time.monotonic()
    run = subprocess.run(args, capture_output=True, text=True)
    wall = time.monotonic() - start
    match = re.search(r"BBSPARSE_RESULT (.*)", run.stdout)
    if run.returncode != 0 or match is None:
        output = " | ".join((run.stdout + run.stderr).strip().splitlines()[-5:])
        raise SimulationError(f"the simulator failed (exit {run.returncode}): {output}")
    figures = {k: int(v) for k, v in (item.split("=") for item in match.group(1).split())}
    return figures, wall


def read_hex(path: Path) -> list[int]:
    """The words a wrapper wrote with $writememh (comment lines skipped)."""
    return [int(line, 16) for line in path.read_text().split() if not line.startswith("//")]


def simulate(config: Config, x_words: list[int], w_words: list[int], *, vectors: int,
             y_beats: int, seed: int = 1, stalls: Stalls = Stalls(),
             waves: str | Path | None = None, max_cycles: int | None = None,
             workdir: str | Path | None = None, log=None, build=None,
             plusargs: tuple[str, ...] = (), w_frames: list[int] | None = None) -> RawRun:
    """Stream `vectors` x frames (`x_words`, ``x_beats`` each) and the w frame `w_words` once
    per vector into the core under Verilator, until `y_beats` y beats have arrived.

    The words are sent as given, so a test can hand-make a stream the packers would never
    produce. SimulationError if the run does not finish (see :data:`HANG_CYCLES`;
    `max_cycles`, if given, is an absolute limit). `build` makes the wrapper binary from the
    stream sizes, as :func:`build_simulator` (the default, around the core's RTL) does;
    `plusargs` go to the simulator after the wrapper's own. `w_frames`, when given, are
    the beats of each vector's own w frame (`w_words` holds them in turn: an engine whose
    frame depends on the vector, DESIGN §9.4) instead of one frame replayed."""
    build = build or functools.partial(build_simulator, config)
    folder, cached = build_telling_cache(
        lambda note: build(len(x_words), len(w_words), y_beats, waves=waves is not None,
                           log=note), log)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        _write_hex(tmp / "x.hex", x_words, config.x_beat_width)
        _write_hex(tmp / "w.hex", w_words, config.w_beat_width)
        frames = []
        if w_frames is not None:  # one frame per vector, each of its own length
            _write_hex(tmp / "wlens.hex", w_frames, 32)
            frames = [f"+WLENS={tmp / 'wlens.hex'}"]
        figures, wall = run_wrapper(
            folder, [f"+XFILE={tmp / 'x.hex'}", f"+WFILE={tmp / 'w.hex'}",
                     f"+YFILE={tmp / 'y.hex'}", f"+VECTORS={vectors}",
                     f"+WBEATS={len(w_words)}", f"+YBEATS={y_beats}",
                     f"+SEED={seed & 0xFFFFFFFF}", *stalls.plusargs(),
                     f"+HANG_CYCLES={HANG_CYCLES}", *frames, *plusargs],
            max_cycles=max_cycles, waves=waves)
        if not figures["done"]:
            where = (f"after {figures['sim_cycles']} cycles: {figures['y_received']} of "
                     f"{y_beats} y beats received, {figures['x_sent']} x beats sent, "
                     f"{figures['w_frames']} whole w frames and {figures['w_beat']} beats "
                     f"of the next, error={figures['error']}")
            if figures["hang"]:
                raise SimulationError(
                    f"the core hangs: no transfer in {HANG_CYCLES} cycles in which y was "
                    f"ready and x and w offered beats, {where}")
            raise SimulationError(f"the simulation stopped at its limit of {max_cycles} "
                                  f"cycles, {where}")
        y_words = read_hex(tmp / "y.hex")
    build_seconds = 0.0 if cached else float((folder / "build_seconds").read_text())
    return RawRun(figures, y_words, wall, build_seconds, cached)


def run_spmv(config: Config, W, X, *, seed: int = 1, stalls: Stalls = Stalls(),
             waves: str | Path | None = None, max_cycles: int | None = None,
             workdir: str | Path | None = None, order: str = "banks", log=None) -> SimResult:
    """Multiply W (rows, cols) by X ((cols,) or (batch, cols)) on the RTL.

    Returns y with the shape of the golden `spmv` and a report: cycles (first x beat accepted
    to last y beat, inclusive), ideal cycles, utilization (whole run and steady state),
    useful MACs, multipliers, stall counts, the `error` output, simulated cycles per second.
    `order` is how the unstructured engine's stream orders a row's nonzeros
    (``golden.unstructured.pack_w``). SimulationError (:func:`simulate`) if the run does not
    finish.
    """
    W = np.asarray(W)
    X = np.asarray(X)
    single = X.ndim == 1
    batch = X[None, :] if single else X
    rows = W.shape[0]
    vectors = batch.shape[0]
    packed = config.format.pack(config, W, batch, order=order)
    x_words, w_words = packed.x_words, packed.w_words
    useful = packed.useful_macs
    groups = config.row_groups(rows)
    y_total = vectors * groups

    raw = simulate(config, x_words, w_words, vectors=vectors, y_beats=y_total, seed=seed,
                   stalls=stalls, waves=waves, max_cycles=max_cycles, workdir=workdir, log=log,
                   w_frames=packed.w_frame_beats)
    figures, y_words, wall = raw.figures, raw.y_words, raw.wall_seconds

    mask = (1 << config.y_beat_width) - 1
    tlasts = [word >> config.y_beat_width for word in y_words]
    Y = csb.unpack_y(config, [word & mask for word in y_words], rows, batch=vectors)
    expected_tlast = [int((i + 1) % groups == 0) for i in range(y_total)]

    steady = figures["last_w"] - figures["first_w"] + 1
    report = {
        "rows": rows,
        "cols": int(W.shape[1]),
        "vectors": vectors,
        "cycles": figures["cycles"],
        "ideal_cycles": cycles.overlapped_cycles(config.x_beats, len(w_words), vectors),
        "pipeline_latency": describe(config)["derived"]["latency"],
        "utilization": useful / (config.multipliers * figures["cycles"]),
        "utilization_steady": useful / (config.multipliers * steady),
        "steady_cycles": steady,
        "ideal_steady_cycles": vectors * len(w_words),
        "useful_macs": useful,
        "multipliers": config.multipliers,
        "w_beats": figures["w_beats"],
        "x_wait_cycles": figures["x_wait"],
        "w_wait_cycles": figures["w_wait"],
        "y_wait_cycles": figures["y_wait"],
        "error": bool(figures["error"]),
        "y_tlast_ok": tlasts == expected_tlast,
        "simulated_cycles": figures["sim_cycles"],
        "sim_seconds": wall,
        "sim_cycles_per_second": figures["sim_cycles"] / wall if wall > 0 else float("inf"),
        "seed": seed,
        "verilator_build_seconds": raw.build_seconds,
        "cached": raw.cached,
    }
    if config.format.counts_stalls:
        # The golden cycle model of the crossbar: conflicts included, stalls excluded.
        report["predicted_cycles"] = cycles.overlapped_cycles(
            config.x_beats, packed.stream_cycles, vectors)
        report["predicted_steady_cycles"] = vectors * packed.stream_cycles \
            - packed.last_beat_extra
        report["crossbar_stall_cycles"] = figures["crossbar_stalls"]
    report.update(packed.report)
    return SimResult(y=Y[0] if single else Y, report=report)
