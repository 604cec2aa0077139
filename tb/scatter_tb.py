"""cocotb testbench of the scatter unit (:class:`bbsparse.hdl.scatter.Scatter`, DESIGN §6).

Split like cocotb's ``matrix_multiplier`` example:

- stimulus (:func:`make_rows`): adversarial rows first (every lane on one address, twice
  back to back; every lane on one bank at different addresses; a permutation; the
  diagonal; conflict-free rows that all hit one hot address, one row a cycle), then random
  rows with random masks, hot rows in between and hot rows at the end;
- drivers: a :class:`~bbsparse.tb.stream.StreamSource` on ``req`` (random idle cycles) and
  one on ``rd_req``, which offers random probe reads while updates are still coming, and
  at the end reads every address;
- monitor: a :class:`~bbsparse.tb.stream.StreamSink` on ``rd_resp`` with random and long
  back-pressure (a read-out held at the read ports holds the updates back too);
- model: :mod:`bbsparse.golden.scatter` (``scatter_crossbar`` / ``scatter_banked``), run on
  the rows taken before each read was taken (a read is served once no update is in flight,
  so it must see exactly those);
- checker: every read-out beat (mod ``2**width``), the whole memory at the end with a
  diagnosis of a lost accumulation or a misordered write, no extra beat afterwards,
  ``stall_cycles`` equal to the golden schedule's stall count, and in the full-rate phase
  the exact cycle each row is taken (row ``r+1`` ``k_r`` cycles after row ``r``).

The parameters arrive as JSON in :data:`bbsparse.tb.cocotb_run.PARAMS_ENV`; every
assertion message starts with the seed.
"""

from __future__ import annotations

import bisect
import functools
import random
from dataclasses import dataclass, field

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from ..golden.gather import crossbar_schedule
from ..golden.scatter import scatter_banked, scatter_crossbar
from .stream import Clocked, StreamSink, StreamSource, pack, params_from_env, pause_pattern, unpack

PERIOD_NS = 10
RESET_CYCLES = 4
TAIL_CYCLES = 40


@dataclass(frozen=True)
class Params:
    lanes: int
    width: int
    depth: int
    mode: str
    accumulate: bool
    fields: dict  # port -> payload_fields(...) of the unit's signature
    seed: int
    full_rate_random: int = 8
    random_rows: int = 250
    probe_reads: int = 120  # random reads offered while the stalled phase's updates come
    mask_density: float = 0.85
    req_idle: float = 0.3
    idle_run: int = 6  # long enough for reads to slip in between updates
    rd_idle: float = 0.1
    rd_stall: float = 0.4
    rd_burst: float = 0.02
    burst_len: tuple[int, int] = (10, 40)

    @classmethod
    def from_env(cls) -> Params:
        return params_from_env(cls)

    @property
    def span(self) -> int:
        return self.lanes * self.depth if self.mode == "crossbar" else self.depth

    @property
    def modulus(self) -> int:
        return 1 << self.width

    def tag(self) -> str:
        return f"[seed {self.seed}]"


# -- stimulus ------------------------------------------------------------------------------


@dataclass
class Rows:
    indices: np.ndarray  # (rows, lanes)
    values: np.ndarray  # (rows, lanes)
    masks: np.ndarray  # (rows, lanes) bool
    kinds: list[str] = field(default_factory=list)

    def __len__(self):
        return len(self.indices)

    def __add__(self, other: Rows) -> Rows:
        return Rows(np.concatenate([self.indices, other.indices]),
                    np.concatenate([self.values, other.values]),
                    np.concatenate([self.masks, other.masks]), self.kinds + other.kinds)

    def __getitem__(self, part: slice) -> Rows:
        return Rows(self.indices[part], self.values[part], self.masks[part], self.kinds[part])


def hot_row(p: Params, hot: int, row: int, rng: np.random.Generator) -> list[int]:
    """A row with no bank conflict in which one lane (a different one each row) updates
    `hot`: rows like it follow each other one a cycle, each a read-modify-write of `hot`."""
    lanes = p.lanes
    if p.mode == "banked":
        addresses = list(rng.integers(0, p.depth, lanes))
        addresses[row % lanes] = hot
        return addresses
    banks = [int(b) for b in rng.permutation(lanes)]
    indices = [b + lanes * int(rng.integers(p.depth)) for b in banks]
    indices[banks.index(hot % lanes)] = hot
    return indices


def make_rows(p: Params, rng: np.random.Generator) -> tuple[Rows, Rows]:
    """The full-rate rows (adversarial, then a few random) and the stalled-phase rows."""
    lanes, span = p.lanes, p.span
    if p.mode == "crossbar":
        one_address = (3 * lanes + 1) % span
        patterns = [
            ("one address", [one_address] * lanes),
            ("one address (again)", [one_address] * lanes),
            ("one bank", [(lane * lanes) % span for lane in range(lanes)]),
            ("permutation", [int(b) + 2 * lanes for b in rng.permutation(lanes)]),
            ("diagonal", [(lane * lanes + lane) % span for lane in range(lanes)]),
        ]
    else:
        one_address = 2 % span
        patterns = [
            ("one address", [one_address] * lanes),
            ("one address (again)", [one_address] * lanes),
            ("diagonal", [lane % span for lane in range(lanes)]),
            ("permutation", [int(a) % span for a in rng.permutation(max(lanes, span))[:lanes]]),
        ]
    hot = int(rng.integers(span))
    rows = [idx for _, idx in patterns]
    kinds = [name for name, _ in patterns]
    for r in range(2 * lanes):
        rows.append(hot_row(p, hot, r, rng))
        kinds.append(f"hot {hot}")
    for _ in range(p.full_rate_random):
        rows.append(list(rng.integers(0, span, lanes)))
        kinds.append("random")
    indices = np.array(rows)
    values = rng.integers(0, p.modulus, size=indices.shape)
    values[0] = p.modulus - 1  # the first one-address row wraps at once when accumulating
    full = Rows(indices, values, np.ones(indices.shape, bool), kinds)

    indices = rng.integers(0, span, size=(p.random_rows, lanes))
    masks = rng.random(indices.shape) < p.mask_density
    kinds = ["random"] * p.random_rows
    r = 0
    while r < p.random_rows:
        choice = rng.random()
        if choice < 0.05:
            masks[r] = False
            kinds[r] = "empty"
        elif choice < 0.15:
            # A few rows on the hot address back to back.
            for k in range(min(3, p.random_rows - r)):
                indices[r + k] = hot_row(p, hot, k, rng)
                kinds[r + k] = f"hot {hot}"
            r += 2
        elif choice < 0.22:
            indices[r] = patterns[0][1]
            kinds[r] = "one address (masked)"
        r += 1
    for k in range(3):
        indices[-1 - k] = [hot] * lanes if p.mode == "crossbar" else hot_row(p, hot, k, rng)
        masks[-1 - k] = True
        kinds[-1 - k] = f"hot {hot} at the end"
    values = rng.integers(0, p.modulus, size=indices.shape)
    if p.mode == "banked" and not p.accumulate:
        # scatter_banked has no mask; in plain-write mode nothing else stands for "no update".
        masks[:] = True
    return full, Rows(indices, values, masks, kinds)


# -- model ---------------------------------------------------------------------------------


class Model:
    """The golden memory after the first `n` rows, as read-out beats (depth, lanes)."""

    def __init__(self, p: Params, rows: Rows):
        self.p = p
        self.rows = rows

    @functools.cache  # noqa: B019 (one model per test run)
    def memory(self, n: int) -> np.ndarray:
        p, rows = self.p, self.rows[:n]
        if p.mode == "crossbar":
            flat, _, _ = scatter_crossbar(np.zeros(p.lanes * p.depth, np.int64), rows.indices,
                                          rows.values, p.lanes, p.accumulate, rows.masks)
            # Beat a holds address a of every bank: flat index a * lanes + bank.
            return flat.reshape(p.depth, p.lanes) % p.modulus
        values = np.where(rows.masks, rows.values, 0) if p.accumulate else rows.values
        banks = scatter_banked(np.zeros((p.lanes, p.depth), np.int64), rows.indices, values,
                               p.accumulate)
        return banks.T % p.modulus

    def stalls(self) -> tuple[int, np.ndarray]:
        """(stall cycles of every row, cycles each row takes)."""
        p, rows = self.p, self.rows
        if p.mode == "banked":
            return 0, np.ones(len(rows), np.int64)
        _, _, stalls = scatter_crossbar(np.zeros(p.lanes * p.depth, np.int64), rows.indices,
                                        rows.values, p.lanes, p.accumulate, rows.masks)
        ends = crossbar_schedule(rows.indices, p.lanes, rows.masks).max(axis=1) + 1
        return stalls, np.diff(np.concatenate([[0], ends]))

    def flat_position(self, row: int, lane: int) -> tuple[int, int]:
        """(address, bank) that update (row, lane) lands on."""
        index = int(self.rows.indices[row, lane])
        if self.p.mode == "crossbar":
            return divmod(index, self.p.lanes)
        return index, lane

    def explain(self, n: int, address: int, bank: int, got: int) -> str:
        """Which update a wrong word looks like it lost or misordered."""
        p, expected = self.p, int(self.memory(n)[address, bank])
        updates = [(r, lane, int(self.rows.values[r, lane]))
                   for r in range(n) for lane in range(p.lanes)
                   if self.rows.masks[r, lane] and self.flat_position(r, lane) == (address, bank)]
        text = f"{len(updates)} updates hit it"
        if p.accumulate:
            missing = (expected - got) % p.modulus
            lost = [f"row {r} lane {lane} ({self.rows.kinds[r]})"
                    for r, lane, value in updates if value % p.modulus == missing]
            if lost:
                text += f"; the difference {missing} is the value of {', '.join(lost[:3])}: lost"
        else:
            earlier = [f"row {r} lane {lane}" for r, lane, value in updates[:-1]
                       if value % p.modulus == got]
            if earlier:
                text += f"; got the value of {', '.join(earlier[:3])}: a write landed late"
        return text


# -- the testbench -------------------------------------------------------------------------


class Testbench:
    def __init__(self, dut, p: Params):
        self.dut = dut
        self.p = p
        self.clock = Clocked(dut.clk)
        self.taken: list[int] = []  # cycle each update row was taken
        self.reads: list[tuple[int, int]] = []  # (address, cycle) of each read taken
        self.source = StreamSource(dut, "req", self.clock,
                                   on_accept=lambda _beat, cycle: self.taken.append(cycle))
        self.rd_source = StreamSource(
            dut, "rd_req", self.clock,
            on_accept=lambda beat, cycle: self.reads.append((beat, cycle)))
        self.sink = StreamSink(dut, "rd_resp", self.clock)
        self.rng = random.Random(p.seed)
        for port, fields in p.fields.items():
            width = sum(w * n for _, _, w, n in fields)
            signal = getattr(dut, f"{port}__payload")
            assert len(signal) == width, (
                f"{p.tag()} port {port} is {len(signal)} bits, the layout says {width}")
        # Cycles in which an update was offered while rd_resp was held and a second read-out
        # was in flight (its words waiting at the read ports): the hazard the unit guards by
        # holding updates back. Counted from the ports only.
        self.update_vs_readout = 0
        cocotb.start_soon(self._cover())

    async def _cover(self):
        dut, edge, settled = self.dut, RisingEdge(self.dut.clk), ReadOnly()
        while True:
            await edge
            await settled
            now = self.clock.cycle
            # Handshakes of earlier cycles only: this cycle's may or may not be counted yet.
            reads = bisect.bisect_left([cycle for _, cycle in self.reads], now)
            beats = bisect.bisect_left([cycle for cycle, _ in self.sink.beats], now)
            if (reads - beats >= 2 and dut.req__valid.value and dut.rd_resp__valid.value
                    and not dut.rd_resp__ready.value):
                self.update_vs_readout += 1

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"{self.p.tag()} {message}")

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, RESET_CYCLES)
        self.dut.rst.value = 0

    def stalls(self, on: bool):
        p, rng = self.p, self.rng
        if on:
            self.source.set_pauses(pause_pattern(random.Random(rng.random()), p.req_idle,
                                                 p.idle_run))
            self.rd_source.set_pauses(pause_pattern(random.Random(rng.random()), p.rd_idle,
                                                    p.idle_run))
            self.sink.set_pauses(pause_pattern(random.Random(rng.random()), p.rd_stall, 1,
                                               p.rd_burst, p.burst_len))
        else:
            for stream in (self.source, self.rd_source, self.sink):
                stream.set_pauses(pause_pattern(rng, 0.0))

    def send(self, rows: Rows):
        fields = self.p.fields["req"]
        self.source.send([
            pack(fields, {"index": [int(i) for i in idx], "value": [int(v) for v in vals],
                          "mask": sum(int(b) << i for i, b in enumerate(mask))})
            for idx, vals, mask in zip(rows.indices, rows.values, rows.masks, strict=True)])

    def read(self, addresses):
        fields = self.p.fields["rd_req"]
        self.rd_source.send([pack(fields, {"": int(a)}) for a in addresses])

    async def within(self, trigger, cycles: int, what: str):
        try:
            await with_timeout(trigger, cycles * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise self.fail(
                f"timeout after {cycles} cycles waiting for {what}: {self.source.accepted} "
                f"update rows taken ({len(self.source.queue)} queued), "
                f"{self.rd_source.accepted} reads taken ({len(self.rd_source.queue)} queued), "
                f"{len(self.sink.beats)} read-out beats back") from None

    def rows_before(self, cycle: int) -> int:
        """Update rows taken in cycles before `cycle`."""
        return bisect.bisect_left(self.taken, cycle)

    def check_reads(self, model: Model, final_from: int):
        """Every read-out beat against the golden memory after the rows taken before it."""
        p = self.p
        for k, ((address, cycle), (_, beat)) in enumerate(
                zip(self.reads, self.sink.beats, strict=True)):
            n = self.rows_before(cycle)
            words = unpack(p.fields["rd_resp"], beat)[""]
            words = words if p.lanes > 1 else [words]
            expected = model.memory(n)[address]
            if words == expected.tolist():
                continue
            bank = next(b for b in range(p.lanes) if words[b] != expected[b])
            what = "final read-out" if k >= final_from else "probe read"
            raise self.fail(
                f"{what} {k} of address {address} after {n} update rows: got {words}, "
                f"expected {expected.tolist()} (mod 2**{p.width}); bank {bank}: "
                f"{model.explain(n, address, bank, words[bank])}")

    def check_full_rate_timing(self, rows: Rows, row_cycles: np.ndarray):
        gaps = np.diff(np.array(self.taken[:len(rows)]))
        bad = np.flatnonzero(gaps != row_cycles[:len(rows) - 1])
        if bad.size:
            r = int(bad[0])
            raise self.fail(
                f"full rate: row {r + 1} was taken {gaps[r]} cycles after row {r} "
                f"({rows.kinds[r]}, indices {rows.indices[r].tolist()}); the golden schedule "
                f"gives row {r} {row_cycles[r]} cycles")


@cocotb.test()
async def scatter_matches_golden(dut):
    """Adversarial rows at full rate, then random rows under random stalls with probe reads,
    then the whole memory read out under back-pressure: every beat equal to the golden
    memory; `stall_cycles` as the golden schedule says."""
    p = Params.from_env()
    rng = np.random.default_rng(p.seed)
    full, stalled = make_rows(p, rng)
    rows = full + stalled
    model = Model(p, rows)
    stalls, row_cycles = model.stalls()

    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    tb = Testbench(dut, p)
    await tb.reset()

    tb.stalls(on=False)
    tb.send(full)
    await tb.within(tb.source.wait(), 4 * int(np.sum(row_cycles[:len(full)])) + 100,
                    "the full-rate rows to be taken")
    tb.check_full_rate_timing(full, row_cycles)

    tb.stalls(on=True)
    tb.send(stalled)
    tb.read(rng.integers(0, p.depth, p.probe_reads))
    budget = 50 * (int(np.sum(row_cycles)) + p.probe_reads) + 1000
    await tb.within(tb.source.wait(), budget, "the stalled rows to be taken")
    # Everything read after this point must see every update.
    final_from = tb.rd_source.sent
    tb.read(range(p.depth))
    reads = final_from + p.depth
    await tb.within(tb.sink.wait_for(reads), 50 * reads + 1000, f"{reads} read-out beats")
    assert tb.sink.held > 0, f"{p.tag()} rd_resp was never held while valid"
    assert tb.update_vs_readout > 0, (
        f"{p.tag()} no update was offered while a read-out waited at the read ports: the "
        "stimulus does not reach that hazard")
    assert tb.rows_before(tb.reads[-1][1]) == len(rows), f"{p.tag()} read before all updates"

    tb.stalls(on=False)
    await ClockCycles(dut.clk, TAIL_CYCLES)
    if len(tb.sink.beats) != reads or len(tb.reads) != reads:
        raise tb.fail(f"{len(tb.sink.beats)} read-out beats came out, {len(tb.reads)} reads "
                      f"were taken, {reads} sent: something was lost or duplicated")
    tb.check_reads(model, final_from)
    counted = int(dut.stall_cycles.value)
    assert counted == stalls, (
        f"{p.tag()} stall_cycles = {counted}, the golden schedule gives {stalls} "
        f"({int(np.sum(row_cycles[:len(full)] - 1))} in the full-rate phase)")
    dut._log.info("scatter: %d rows, %d reads (%d probes), %d stall cycles, %d cycles, "
                  "rd_resp held %d, req held %d, update offered against a held read-out %d",
                  len(rows), reads, final_from, counted, tb.clock.cycle, tb.sink.held,
                  tb.source.held, tb.update_vs_readout)
