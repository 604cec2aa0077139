"""cocotb testbench of the core `bbs_spmv` (DESIGN §3-5), driven through cocotbext-axi.

Split like cocotb's ``matrix_multiplier`` example:

- stimulus (:func:`make_pairs`): from one seed, random BBS-pruned matrices and vectors, with
  extreme rows and vectors (every weight or activation at ``-2**(w-1)`` or the top of its
  range) so that the accumulator wraps and the output stage saturates where the
  configuration allows it;
- drivers: an :class:`~cocotbext.axi.AxiStreamSource` each for x and w, with random idle
  cycles; all frames are queued at once, so vectors follow each other back to back and the
  core pairs the k-th w frame with the k-th x frame;
- monitors: an :class:`~cocotbext.axi.AxiStreamSink` for y with random and long (50-200
  cycle) back-pressure, and :class:`Watch`, which samples ``error`` and the handshakes
  every cycle;
- model: :func:`bbsparse.golden.spmv.spmv`;
- checker: every y frame against the model, frame by frame (the sink cuts frames at
  ``tlast``, so a frame of the wrong length is a misplaced ``tlast``).

The parameters (configuration, rows, vectors, seed, stalls, expected coverage) arrive as
JSON in the environment variable :data:`bbsparse.tb.cocotb_run.PARAMS_ENV`; every assertion
message starts with the seed so a failure replays.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, RisingEdge, SimTimeoutError, select, with_timeout

from ..golden.arith import signed_range
from ..golden.config import Config
from ..golden.prune import prune_bbs
from ..golden.spmv import accumulate, spmv
from . import axis
from .cocotb_run import PARAMS_ENV

PERIOD_NS = 10
RESET_CYCLES = 5
# A misplaced tlast must show on `error` within this many cycles of the bad frame's end.
ERROR_LATENCY_MAX = 8
# Cycles `error` must stay high after it rose (sticky), while more frames are offered.
STICKY_CYCLES = 200
# Cycles watched after the last expected y beat: nothing more may come out.
TAIL_CYCLES = 100


# -- parameters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    cfg: Config
    seed: int
    rows: int = 16
    vectors: int = 24
    x_idle: float = 0.2  # probability per cycle that an idle run starts on the x source
    w_idle: float = 0.2
    idle_run: int = 3  # idle runs last 1..idle_run cycles
    y_stall: float = 0.3  # probability per cycle that y is not ready
    y_burst: float = 0.003  # probability per cycle that a long not-ready burst starts
    burst_len: tuple[int, int] = (50, 200)
    first_burst: int = 120  # y is not ready for this many cycles at first
    scramble: bool = True  # shuffle slots in a bank and give empty slots random indices
    expect: tuple[str, ...] = ()  # coverage the stimulus must reach: wrap, saturate, relu

    @classmethod
    def from_env(cls) -> Params:
        raw = json.loads(os.environ[PARAMS_ENV])
        cfg = Config(**raw.pop("config"))
        known = {f for f in cls.__dataclass_fields__ if f != "cfg"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown testbench parameters {sorted(unknown)}")
        if "burst_len" in raw:
            raw["burst_len"] = tuple(raw["burst_len"])
        if "expect" in raw:
            raw["expect"] = tuple(raw["expect"])
        return cls(cfg=cfg, **raw)

    def tag(self) -> str:
        return f"[seed {self.seed}]"


# -- stimulus and model --------------------------------------------------------------------


@dataclass
class Pair:
    """One SpMV: a matrix, a vector and the golden result."""

    index: int
    W: np.ndarray
    x: np.ndarray
    y: np.ndarray
    w_kinds: list[str]
    x_kind: str

    @property
    def rows(self) -> int:
        return self.W.shape[0]


ROW_KINDS = ("random", "sparse", "min", "max", "zero")
ROW_WEIGHTS = (0.55, 0.2, 0.1, 0.1, 0.05)
VECTOR_KINDS = ("random", "min", "random", "extreme", "max")


def _matrix(cfg: Config, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    lo, hi = signed_range(cfg.weight_width)
    kinds = [str(kind) for kind in rng.choice(ROW_KINDS, size=rows, p=ROW_WEIGHTS)]
    if rows >= 2:
        # Every matrix has a row of each extreme, so that an extreme vector reaches both the
        # largest positive and the most negative sum the widths allow.
        first, second = rng.choice(rows, size=2, replace=False)
        kinds[first], kinds[second] = "min", "max"
    W = rng.integers(lo, hi + 1, size=(rows, cfg.cols))
    for r, kind in enumerate(kinds):
        if kind == "sparse":  # fewer nonzeros than slots: empty slots in the CSB stream
            W[r] *= rng.random(cfg.cols) < 0.2
        elif kind == "min":
            W[r] = lo
        elif kind == "max":
            W[r] = hi
        elif kind == "zero":
            W[r] = 0
    return prune_bbs(W, cfg.bank_size, cfg.nnz_per_bank), kinds


def _vector(cfg: Config, kind: str, rng: np.random.Generator) -> np.ndarray:
    lo, hi = signed_range(cfg.act_width)
    if kind == "min":
        return np.full(cfg.cols, lo, dtype=np.int64)
    if kind == "max":
        return np.full(cfg.cols, hi, dtype=np.int64)
    if kind == "extreme":
        return rng.choice(np.array([lo, hi], dtype=np.int64), size=cfg.cols)
    return rng.integers(lo, hi + 1, size=cfg.cols)


def make_pairs(p: Params, count: int | None = None, full_rows: bool = False) -> list[Pair]:
    """`count` (default ``p.vectors``) SpMVs from ``p.seed``. Every third has a random number
    of rows (1..rows) unless `full_rows`, so frames of different lengths follow each other."""
    cfg = p.cfg
    rng = np.random.default_rng(p.seed)
    pairs = []
    for k in range(p.vectors if count is None else count):
        rows = p.rows
        if k % 3 == 2 and not full_rows:
            rows = int(rng.integers(1, p.rows + 1))
        W, w_kinds = _matrix(cfg, rows, rng)
        x_kind = VECTOR_KINDS[k % len(VECTOR_KINDS)]
        x = _vector(cfg, x_kind, rng)
        pairs.append(Pair(k, W, x, spmv(cfg, W, x), w_kinds, x_kind))
    return pairs


def coverage(cfg: Config, pairs: list[Pair]) -> dict[str, int]:
    """How many results of `pairs` exercise each corner of DESIGN §5 (from the model)."""
    lo, hi = signed_range(cfg.out_width)
    counts = {"results": 0, "wrap": 0, "saturate": 0, "relu": 0}
    for pair in pairs:
        exact = pair.W.astype(object) @ pair.x.astype(object)
        acc = accumulate(cfg, pair.W, pair.x)
        for a_exact, a in zip(exact, acc, strict=True):
            a = int(a)
            r = (a + (1 << (cfg.out_shift - 1))) >> cfg.out_shift if cfg.out_shift else a
            counts["results"] += 1
            counts["wrap"] += int(a != a_exact)
            counts["relu"] += int(cfg.relu and r < 0)
            r = max(r, 0) if cfg.relu else r
            counts["saturate"] += int(r < lo or r > hi)
    return counts


# -- monitors --------------------------------------------------------------------------------


@dataclass
class Watch:
    """Samples `error` and the three handshakes at every rising edge."""

    dut: object
    cycle: int = 0
    error_cycle: int | None = None  # first cycle `error` was seen high
    error_fell: int | None = None  # a cycle `error` was low again after rising (not sticky)
    y_beats: int = 0
    y_held: int = 0  # cycles y was valid but not ready (back-pressure reached the core)
    w_held: int = 0  # cycles w was offered but the core was not ready
    x_held: int = 0
    error_event: Event = field(default_factory=Event)

    async def run(self):
        dut = self.dut
        edge = RisingEdge(dut.clk)
        while True:
            await edge
            self.cycle += 1
            if dut.error.value:
                if self.error_cycle is None:
                    self.error_cycle = self.cycle
                    self.error_event.set()
            elif self.error_cycle is not None and self.error_fell is None:
                self.error_fell = self.cycle
            if dut.m_axis_y_tvalid.value:
                if dut.m_axis_y_tready.value:
                    self.y_beats += 1
                else:
                    self.y_held += 1
            if dut.s_axis_w_tvalid.value and not dut.s_axis_w_tready.value:
                self.w_held += 1
            if dut.s_axis_x_tvalid.value and not dut.s_axis_x_tready.value:
                self.x_held += 1

    def clear_error(self):
        self.error_cycle = None
        self.error_fell = None
        self.error_event = Event()


# -- the testbench -------------------------------------------------------------------------


class Testbench:
    def __init__(self, dut, p: Params):
        self.dut = dut
        self.p = p
        self.cfg = p.cfg
        self.x_source = axis.source(dut, "s_axis_x", dut.rst)
        self.w_source = axis.source(dut, "s_axis_w", dut.rst)
        self.y_sink = axis.sink(dut, "m_axis_y", dut.rst)
        for bfm in (self.x_source, self.w_source, self.y_sink):
            bfm.log.setLevel(logging.WARNING)  # not every frame at INFO
        self.watch = Watch(dut)
        cocotb.start_soon(self.watch.run())
        # Independent, seeded streams of random stalls: the same seed replays the same run.
        self.rng = random.Random(p.seed)
        self.w_rng = np.random.default_rng(p.seed + 1)

    @classmethod
    async def start(cls, dut, p: Params) -> Testbench:
        Clock(dut.clk, PERIOD_NS, unit="ns").start()
        dut.rst.value = 1
        tb = cls(dut, p)
        await tb.reset()
        return tb

    async def reset(self, cycles: int = RESET_CYCLES):
        """Hold `rst` high for `cycles` cycles; the BFMs drop what they were sending."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def stalls(self, **overrides):
        """Start the pause generators with the run's stall settings, or `overrides` of them
        (any field of :class:`Params`)."""
        p = dataclasses.replace(self.p, **overrides)
        rng = self.rng
        self.x_source.set_pause_generator(
            axis.idle_cycles(random.Random(rng.random()), p.x_idle, p.idle_run))
        self.w_source.set_pause_generator(
            axis.idle_cycles(random.Random(rng.random()), p.w_idle, p.idle_run))
        self.y_sink.set_pause_generator(axis.backpressure(
            random.Random(rng.random()), p.y_stall, p.y_burst, p.burst_len, p.first_burst))

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"{self.p.tag()} {message}")

    # -- frames -------------------------------------------------------------------------

    def x_frame(self, pair: Pair):
        return axis.x_frame(self.cfg, pair.x)

    def w_frame(self, pair: Pair):
        return axis.w_frame(self.cfg, pair.W, self.w_rng if self.p.scramble else None)

    def send(self, pairs: list[Pair]):
        """Queue every x frame and every w frame at once (back to back)."""
        for pair in pairs:
            self.x_source.send_nowait(self.x_frame(pair))
            self.w_source.send_nowait(self.w_frame(pair))

    # -- checking -----------------------------------------------------------------------

    async def collect(self, pairs: list[Pair]):
        """Receive one y frame per pair and check it against the model."""
        cfg = self.cfg
        for pair in pairs:
            frame = await self.y_sink.recv()
            beats = [int(v) for v in frame.tdata]
            groups = cfg.row_groups(pair.rows)
            if len(beats) != groups:
                raise self.fail(
                    f"y frame {pair.index} ({pair.rows} rows) ended by tlast after "
                    f"{len(beats)} beats, expected {groups} (one per row group of {cfg.pes}): "
                    f"tlast misplaced, or beats lost or duplicated")
            got = axis.y_values(cfg, frame, pair.rows)
            bad = np.flatnonzero(got != pair.y)
            if bad.size:
                r = int(bad[0])
                acc = accumulate(cfg, pair.W, pair.x)
                shown = ", ".join(f"row {int(i)}: got {int(got[i])} expected {int(pair.y[i])}"
                                  for i in bad[:6])
                raise self.fail(
                    f"y frame {pair.index}: {bad.size} of {pair.rows} rows differ from the "
                    f"golden model ({shown}); row {r}: weight row kind "
                    f"{pair.w_kinds[r]!r}, vector kind {pair.x_kind!r}, accumulator "
                    f"{int(acc[r])}, beat {r // cfg.pes} = {beats[r // cfg.pes]:#x}")

    def budget_cycles(self, pairs: list[Pair]) -> int:
        """A generous bound on the cycles `pairs` may take with the configured stalls."""
        cfg, p = self.cfg, self.p
        work = sum(cfg.row_groups(q.rows) * (cfg.cycles_per_row + 1) + cfg.x_beats for q in pairs)
        burst_share = p.y_burst * sum(p.burst_len) / 2
        return int(10 * work * (1 + burst_share) / (1 - max(p.x_idle, p.w_idle, p.y_stall))
                   + p.first_burst + 2 * max(p.burst_len) + 2000)

    async def run_pairs(self, pairs: list[Pair]):
        """Send `pairs`, check every y frame, fail at once if `error` rises or time runs out."""
        budget = self.budget_cycles(pairs)
        start = self.watch.cycle
        self.send(pairs)
        try:
            index, _ = await with_timeout(
                select(self.collect(pairs), self.watch.error_event.wait()),
                budget * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise self.fail(
                f"timeout: {budget} cycles passed and y has not delivered all "
                f"{len(pairs)} frames: {self.watch.y_beats} y beats seen, "
                f"{self.y_sink.count()} whole frames waiting, x source idle "
                f"{self.x_source.idle()}, w source idle {self.w_source.idle()}, "
                f"w held {self.watch.w_held} cycles, x held {self.watch.x_held}") from None
        if index == 1:
            raise self.fail(f"`error` rose at cycle {self.watch.error_cycle} (run started at "
                            f"cycle {start}) although every tlast was in place")
        return self.watch.cycle - start

    async def expect_no_more_y(self, expected_beats: int):
        await ClockCycles(self.dut.clk, TAIL_CYCLES)
        if self.watch.y_beats != expected_beats or not self.y_sink.empty():
            raise self.fail(f"{self.watch.y_beats} y beats came out, expected {expected_beats}"
                            " (something was duplicated)")

    def summary(self, name: str, **figures):
        path = Path.cwd() / f"summary-{name}.json"
        data = {"cycles": self.watch.cycle, "y_held": self.watch.y_held,
                "w_held": self.watch.w_held, "x_held": self.watch.x_held, **figures}
        path.write_text(json.dumps(data, indent=1) + "\n")
        self.dut._log.info("summary %s: %s", name, data)


# -- tests ---------------------------------------------------------------------------------


# Phases of the stream test, each on its own share of the vectors (sent back to back inside
# a phase): the core at full rate, random stalls everywhere (the case's settings, with a long
# first y stall), and y starved of ready while x and w never pause.
PHASES = (
    ("full_rate", dict(x_idle=0.0, w_idle=0.0, y_stall=0.0, y_burst=0.0, first_burst=0)),
    ("random_stalls", {}),
    ("y_starved", dict(x_idle=0.0, w_idle=0.0, y_stall=0.7, first_burst=0)),
)


@cocotb.test()
async def stream_matches_golden(dut):
    """Back-to-back SpMVs at full rate, under random stalls and under long back-pressure
    match the model beat for beat, with tlast on the last y beat of each frame only."""
    p = Params.from_env()
    pairs = make_pairs(p)
    reached = coverage(p.cfg, pairs)
    for corner in p.expect:
        assert reached.get(corner, 0) > 0, (
            f"{p.tag()} the stimulus reaches no {corner!r} case for this configuration "
            f"({reached}); the test would not check it")
    tb = await Testbench.start(dut, p)
    cfg, watch = p.cfg, tb.watch
    phases = {}
    expected_beats = 0
    shares = np.array_split(np.arange(len(pairs)), len(PHASES))
    for (name, overrides), share in zip(PHASES, shares, strict=True):
        chunk = [pairs[i] for i in share]
        if not chunk:
            continue
        tb.stalls(**overrides)
        before = (watch.y_held, watch.w_held, watch.x_held)
        cycles = await tb.run_pairs(chunk)
        expected_beats += sum(cfg.row_groups(q.rows) for q in chunk)
        phases[name] = {
            "vectors": len(chunk), "cycles": cycles,
            "w_beats": sum(cfg.row_groups(q.rows) * cfg.cycles_per_row for q in chunk),
            "y_held": watch.y_held - before[0], "w_held": watch.w_held - before[1],
            "x_held": watch.x_held - before[2]}
    await tb.expect_no_more_y(expected_beats)
    assert tb.x_source.idle() and tb.w_source.idle(), (
        f"{p.tag()} all y arrived but x or w frames were not all taken")
    assert watch.error_cycle is None, f"{p.tag()} `error` rose at cycle {watch.error_cycle}"
    # Otherwise the test would not have tried the core's back-pressure path.
    starved = phases.get("y_starved", {"y_held": 1})
    assert starved["y_held"] > 0, f"{p.tag()} y was never held while valid: {phases}"
    tb.summary("stream_matches_golden", phases=phases, coverage=reached)


async def _misplaced_tlast(dut, name: str, bad_frames):
    """A good SpMV, then `bad_frames(tb, pair)` -> [(source, frame)]: `error` must rise
    within ERROR_LATENCY_MAX cycles of their end, stay high, and be cleared by reset, after
    which a good SpMV works again. y is not awaited after the error."""
    p = Params.from_env()
    good_first, bad, offered, good_after = make_pairs(p, count=4, full_rows=True)
    tb = await Testbench.start(dut, p)
    tb.stalls(y_burst=0.0, first_burst=0)
    await tb.run_pairs([good_first])

    frames = bad_frames(tb, bad)
    for source, frame in frames:
        source.send_nowait(frame)
    sources = {id(s): s for s, _ in frames}.values()
    budget = tb.budget_cycles([bad])
    try:
        for source in sources:
            await with_timeout(source.wait(), budget * PERIOD_NS, "ns")
    except SimTimeoutError:
        raise tb.fail(f"{name}: the core did not take the bad frames in {budget} cycles") from None
    sent = tb.watch.cycle
    try:
        await with_timeout(tb.watch.error_event.wait(), ERROR_LATENCY_MAX * PERIOD_NS, "ns")
    except SimTimeoutError:
        raise tb.fail(f"{name}: `error` did not rise within {ERROR_LATENCY_MAX} cycles of the "
                      f"bad frame's end (cycle {sent})") from None

    # Sticky: more frames are offered (and y left ready or not), `error` stays high.
    tb.send([offered])
    await ClockCycles(dut.clk, STICKY_CYCLES)
    if tb.watch.error_fell is not None:
        raise tb.fail(f"{name}: `error` rose at cycle {tb.watch.error_cycle} but was low again "
                      f"at cycle {tb.watch.error_fell}: not sticky")

    # Reset clears it, and the core works again.
    tb.x_source.clear()
    tb.w_source.clear()
    await tb.reset()
    tb.y_sink.clear()
    if dut.error.value:
        raise tb.fail(f"{name}: `error` still high after reset")
    latency = tb.watch.error_cycle - sent
    tb.watch.clear_error()
    beats_before = tb.watch.y_beats
    await tb.run_pairs([good_after])
    await tb.expect_no_more_y(beats_before + p.cfg.row_groups(good_after.rows))
    tb.summary(name, error_cycles_after_bad_frame=latency)


@cocotb.test()
async def early_x_tlast_raises_error(dut):
    """x tlast one beat before beat x_beats."""
    def bad(tb, pair):
        frame = tb.x_frame(pair)
        frame.tdata = frame.tdata[:-1]
        return [(tb.x_source, frame)]
    await _misplaced_tlast(dut, "early_x_tlast_raises_error", bad)


@cocotb.test()
async def late_x_tlast_raises_error(dut):
    """x tlast one beat after beat x_beats (no tlast on beat x_beats)."""
    def bad(tb, pair):
        frame = tb.x_frame(pair)
        frame.tdata = frame.tdata + frame.tdata[-1:]
        return [(tb.x_source, frame)]
    await _misplaced_tlast(dut, "late_x_tlast_raises_error", bad)


@cocotb.test()
async def w_tlast_inside_row_group_raises_error(dut):
    """w tlast in the middle of a row group (after one whole group if there are two)."""
    def bad(tb, pair):
        cfg = tb.cfg
        assert cfg.cycles_per_row >= 2, "a row group of one beat has no middle"
        frame = tb.w_frame(pair)
        beats = cfg.cycles_per_row // 2
        if cfg.row_groups(pair.rows) >= 2:
            beats += cfg.cycles_per_row
        frame.tdata = frame.tdata[:beats]
        return [(tb.x_source, tb.x_frame(pair)), (tb.w_source, frame)]
    await _misplaced_tlast(dut, "w_tlast_inside_row_group_raises_error", bad)


@cocotb.test()
async def reset_mid_run_loses_everything_before_it(dut):
    """A reset of one cycle (the host link's, DESIGN §10.1) while beats are in flight in every
    stage (x loading, w streaming, products in the PEs, a y beat waiting): nothing from
    before it comes out after it, and the next SpMV is exact. The registers copied per PE
    (register duplication) have no reset of their own in front: this is what holds them
    to the reset's contract."""
    p = Params.from_env()
    first, second, good = make_pairs(p, count=3, full_rows=True)
    tb = await Testbench.start(dut, p)
    full_rate = dict(x_idle=0.0, w_idle=0.0, y_stall=0.0, y_burst=0.0, first_burst=0)
    tb.stalls(**full_rate)
    tb.send([first, second])
    budget = tb.budget_cycles([first])
    for _ in range(budget):
        await RisingEdge(dut.clk)
        if tb.watch.y_beats:
            break
    else:
        raise tb.fail(f"no y beat within {budget} cycles of the first SpMV")
    # A few cycles more (the seed's), y held on the last, so a beat also waits in the FIFO.
    await ClockCycles(dut.clk, tb.rng.randrange(4))
    tb.y_sink.set_pause_generator(itertools.repeat(True))
    await ClockCycles(dut.clk, 2)
    tb.x_source.clear()
    tb.w_source.clear()
    await tb.reset(cycles=1)
    tb.y_sink.clear()
    tb.stalls(**full_rate)
    beats_before = tb.watch.y_beats
    await tb.run_pairs([good])
    await tb.expect_no_more_y(beats_before + p.cfg.row_groups(good.rows))
    tb.summary("reset_mid_run_loses_everything_before_it")
