"""cocotb testbench of the gather unit (:class:`bbsparse.hdl.gather.Gather`, DESIGN §6).

Split like cocotb's ``matrix_multiplier`` example:

- stimulus (:func:`make_rows`): adversarial rows first (every lane on one address, every
  lane on one bank at different addresses, a permutation of the banks, the diagonal; with
  two copies, each copy on a different pattern too), then random rows with random masks,
  empty rows and single-lane rows; every row carries its number in `side`;
- drivers: the load port (``w_*``) fills every bank, then a
  :class:`~bbsparse.tb.stream.StreamSource` sends the rows on ``req``, with random idle
  cycles;
- monitor: a :class:`~bbsparse.tb.stream.StreamSink` on ``resp`` with random and long
  back-pressure, recording every beat with its cycle;
- model: :mod:`bbsparse.golden.gather` (``gather_crossbar`` / ``gather_banked`` for the
  data, ``crossbar_schedule`` for the cycles a row takes);
- checker: every response in order (data and `side`: nothing lost, duplicated or
  reordered), no extra beat afterwards, ``stall_cycles`` equal to the golden schedule's
  stall count, and in the full-rate phase the exact cycle of every handshake: row ``r+1`` is
  taken ``k_r`` cycles after row ``r`` (``k_r`` = the golden cycles of row ``r``) and comes
  back ``k_r - 1 + latency`` cycles after it was taken.

The parameters (the unit's, the payload layouts, the seed, the stalls) arrive as JSON in
:data:`bbsparse.tb.cocotb_run.PARAMS_ENV`; every assertion message starts with the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout

from ..golden.gather import crossbar_schedule, gather_banked, gather_crossbar, schedule_cycles
from .stream import Clocked, StreamSink, StreamSource, pack, params_from_env, pause_pattern, unpack

PERIOD_NS = 10
RESET_CYCLES = 4
TAIL_CYCLES = 40  # cycles watched after the last expected response: nothing more may come


@dataclass(frozen=True)
class Params:
    lanes: int
    width: int
    depth: int
    mode: str
    copies: int
    side_width: int
    latency: int
    fields: dict  # port -> payload_fields(...) of the unit's signature
    seed: int
    full_rate_random: int = 12  # random rows after the adversarial ones, at full rate
    random_rows: int = 300  # rows of the stalled phase
    mask_density: float = 0.8
    req_idle: float = 0.3
    idle_run: int = 3
    resp_stall: float = 0.4
    resp_burst: float = 0.01
    burst_len: tuple[int, int] = (20, 60)

    @classmethod
    def from_env(cls) -> Params:
        return params_from_env(cls)

    @property
    def count(self) -> int:
        return self.lanes * self.copies

    @property
    def span(self) -> int:
        """Indices a lane may give: global (crossbar) or an address of its bank (banked)."""
        return self.lanes * self.depth if self.mode == "crossbar" else self.depth

    def tag(self) -> str:
        return f"[seed {self.seed}]"


# -- stimulus ------------------------------------------------------------------------------


def adversarial_patterns(p: Params, rng: np.random.Generator) -> list[tuple[str, list[int]]]:
    """(name, one copy's indices) for the patterns that stress the arbiter."""
    lanes, span = p.lanes, p.span
    if p.mode == "crossbar":
        return [
            ("one address", [(5 * lanes + 2) % span] * lanes),
            ("one bank", [(lane * lanes + 1) % span for lane in range(lanes)]),
            ("permutation", [int(b) + 3 * lanes for b in rng.permutation(lanes)]),
            ("diagonal", [(lane * lanes + lane) % span for lane in range(lanes)]),
        ]
    # Banked: lane l always reads bank l, so "one bank" cannot happen; one address, the
    # diagonal and a permutation of addresses still exercise the address paths.
    return [
        ("one address", [(5 % span)] * lanes),
        ("diagonal", [lane % span for lane in range(lanes)]),
        ("permutation", [int(a) % span for a in rng.permutation(max(lanes, span))[:lanes]]),
        ("top address", [span - 1] * lanes),
    ]


@dataclass
class Rows:
    indices: np.ndarray  # (rows, lanes * copies)
    masks: np.ndarray  # (rows, lanes * copies) bool
    kinds: list[str] = field(default_factory=list)

    def __len__(self):
        return len(self.indices)


def make_rows(p: Params, rng: np.random.Generator) -> tuple[Rows, Rows]:
    """The full-rate rows (adversarial, then a few random) and the stalled-phase rows."""
    patterns = adversarial_patterns(p, rng)
    full, kinds = [], []
    n = len(patterns)
    # Every copy on the same pattern, then (with copies) each copy on a different one, so
    # that copies finish a row at different times.
    shifts = [0] + ([1, 2] if p.copies > 1 else [])
    for shift in shifts:
        for k in range(n):
            chosen = [patterns[(k + shift * c) % n] for c in range(p.copies)]
            full.append(sum((list(idx) for _, idx in chosen), []))
            kinds.append(" + ".join(name for name, _ in chosen))
    # Back to back on one address.
    full.append(full[0])
    kinds.append(kinds[0] + " (again)")
    for _ in range(p.full_rate_random):
        full.append(list(rng.integers(0, p.span, p.count)))
        kinds.append("random")
    full_rows = Rows(np.array(full), np.ones((len(full), p.count), bool), kinds)

    indices = rng.integers(0, p.span, size=(p.random_rows, p.count))
    masks = rng.random(indices.shape) < p.mask_density
    kinds = ["random"] * p.random_rows
    for r in range(p.random_rows):
        choice = rng.random()
        if choice < 0.06:
            masks[r] = False
            kinds[r] = "empty"
        elif choice < 0.12:
            masks[r] = False
            masks[r, rng.integers(p.count)] = True
            kinds[r] = "one lane"
        elif choice < 0.25:
            name, idx = patterns[rng.integers(len(patterns))]
            indices[r] = np.tile(idx, p.copies)
            kinds[r] = f"{name} (masked)"
    return full_rows, Rows(indices, masks, kinds)


# -- model ---------------------------------------------------------------------------------


def golden(p: Params, contents: np.ndarray, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """(expected data (rows, count), cycles each row takes (rows,))."""
    lanes = p.lanes
    data, row_cycles = [], []
    for copy in range(p.copies):
        part = slice(copy * lanes, (copy + 1) * lanes)
        idx, mask = rows.indices[:, part], rows.masks[:, part]
        if p.mode == "crossbar":
            words, _, _ = gather_crossbar(contents.reshape(-1), idx, lanes)
            schedule = crossbar_schedule(idx, lanes, mask)
            # Rows run one after the other: a row's cycles are the gap between row ends.
            ends = schedule.max(axis=1) + 1
            row_cycles.append(np.diff(np.concatenate([[0], ends])))
        else:
            words = gather_banked(contents.T, idx)
            row_cycles.append(np.ones(len(rows), np.int64))
        # A lane outside the mask requested nothing and returns 0.
        data.append(np.where(mask, words, 0))
    # Copies run in lockstep: a row takes as long as its slowest copy.
    return np.concatenate(data, axis=1), np.max(row_cycles, axis=0)


def golden_stalls(p: Params, rows: Rows, row_cycles: np.ndarray) -> int:
    stalls = int(np.sum(row_cycles - 1))
    if p.mode == "crossbar" and p.copies == 1:
        # With one copy this is the golden schedule's own count.
        _, own = schedule_cycles(crossbar_schedule(rows.indices, p.lanes, rows.masks))
        assert own == stalls, f"{p.tag()} row cycles give {stalls} stalls, the schedule {own}"
    return stalls


# -- the testbench -------------------------------------------------------------------------


class Testbench:
    def __init__(self, dut, p: Params):
        self.dut = dut
        self.p = p
        self.clock = Clocked(dut.clk)
        self.accepted: list[int] = []  # cycle each request row was taken
        self.source = StreamSource(dut, "req", self.clock,
                                   on_accept=lambda _beat, cycle: self.accepted.append(cycle))
        self.sink = StreamSink(dut, "resp", self.clock)
        self.rng = random.Random(p.seed)
        for port, fields in p.fields.items():
            width = sum(w * n for _, _, w, n in fields)
            signal = getattr(dut, port if port.startswith("w_") else f"{port}__payload")
            assert len(signal) == width, (
                f"{p.tag()} port {port} is {len(signal)} bits, the layout says {width}")

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"{self.p.tag()} {message}")

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        dut.w_en.value = 0
        await ClockCycles(dut.clk, RESET_CYCLES)
        dut.rst.value = 0

    async def load(self, contents: np.ndarray):
        """Write ``contents[a, l]`` at address `a` of bank `l` (of every copy)."""
        dut = self.dut
        for address, words in enumerate(contents):
            await RisingEdge(dut.clk)
            dut.w_addr.value = address
            dut.w_data.value = pack(self.p.fields["w_data"], {"": list(words)})
            dut.w_en.value = 1
        await RisingEdge(dut.clk)
        dut.w_en.value = 0

    def stalls(self, on: bool):
        p, rng = self.p, self.rng
        if on:
            self.source.set_pauses(pause_pattern(random.Random(rng.random()), p.req_idle,
                                                 p.idle_run))
            self.sink.set_pauses(pause_pattern(random.Random(rng.random()), p.resp_stall, 1,
                                               p.resp_burst, p.burst_len))
        else:
            self.source.set_pauses(pause_pattern(rng, 0.0))
            self.sink.set_pauses(pause_pattern(rng, 0.0))

    def send(self, rows: Rows, first: int):
        fields = self.p.fields["req"]
        side_mask = (1 << self.p.side_width) - 1
        self.source.send([
            pack(fields, {"index": [int(i) for i in idx],
                          "mask": sum(int(b) << i for i, b in enumerate(mask)),
                          "side": (first + r) & side_mask})
            for r, (idx, mask) in enumerate(zip(rows.indices, rows.masks, strict=True))])

    async def phase(self, rows: Rows, first: int, row_cycles: np.ndarray):
        """Send `rows` (numbered from `first`) and wait for all their responses."""
        budget = 50 * int(np.sum(row_cycles) + len(rows)) + 500
        self.send(rows, first)
        try:
            await with_timeout(self.sink.wait_for(first + len(rows)), budget * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise self.fail(
                f"timeout: {budget} cycles passed; {len(self.sink.beats)} of "
                f"{first + len(rows)} responses came back, {self.source.accepted} rows were "
                f"taken, {len(self.source.queue)} still queued: rows lost or the unit hangs"
            ) from None

    def check_responses(self, rows: Rows, expected: np.ndarray, first: int):
        p = self.p
        side_mask = (1 << p.side_width) - 1
        got = [unpack(p.fields["resp"], beat) for _, beat in self.sink.beats[first:]]
        for r, beat in enumerate(got):
            row = first + r
            if beat["side"] != row & side_mask:
                raise self.fail(
                    f"response {row} carries side {beat['side']}, expected {row & side_mask}: "
                    "a row was lost, duplicated or reordered")
            data = beat["data"] if p.count > 1 else [beat["data"]]
            if data != expected[r].tolist():
                lanes = [i for i in range(p.count) if data[i] != expected[r, i]]
                raise self.fail(
                    f"response {row} ({rows.kinds[r]}): data {data}, expected "
                    f"{expected[r].tolist()} (lanes {lanes} differ); indices "
                    f"{rows.indices[r].tolist()}, mask {rows.masks[r].astype(int).tolist()}")

    def check_full_rate_timing(self, rows: Rows, row_cycles: np.ndarray):
        """With no idle and no back-pressure the handshakes follow the golden schedule."""
        taken = np.array(self.accepted[:len(rows)])
        back = np.array([cycle for cycle, _ in self.sink.beats[:len(rows)]])
        gaps = np.diff(taken)
        bad = np.flatnonzero(gaps != row_cycles[:-1])
        if bad.size:
            r = int(bad[0])
            raise self.fail(
                f"full rate: row {r + 1} was taken {gaps[r]} cycles after row {r} "
                f"({rows.kinds[r]}, indices {rows.indices[r].tolist()}); the golden schedule "
                f"gives row {r} {row_cycles[r]} cycles")
        latency = back - taken - (row_cycles - 1)
        bad = np.flatnonzero(latency != self.p.latency)
        if bad.size:
            r = int(bad[0])
            raise self.fail(
                f"full rate: row {r} ({rows.kinds[r]}) came back {back[r] - taken[r]} cycles "
                f"after it was taken; {row_cycles[r]} cycles of arbitration and latency "
                f"{self.p.latency} give {row_cycles[r] - 1 + self.p.latency}")


@cocotb.test()
async def gather_matches_golden(dut):
    """Adversarial rows at full rate, then random rows under random stalls: every response
    in order and equal to the golden gather; `stall_cycles` as the golden schedule says."""
    p = Params.from_env()
    rng = np.random.default_rng(p.seed)
    contents = rng.integers(0, 1 << p.width, size=(p.depth, p.lanes))
    full, stalled = make_rows(p, rng)
    expected_full, cycles_full = golden(p, contents, full)
    expected_stalled, cycles_stalled = golden(p, contents, stalled)

    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    tb = Testbench(dut, p)
    await tb.reset()
    await tb.load(contents)

    tb.stalls(on=False)
    await tb.phase(full, 0, cycles_full)
    tb.check_responses(full, expected_full, 0)
    tb.check_full_rate_timing(full, cycles_full)

    tb.stalls(on=True)
    await tb.phase(stalled, len(full), cycles_stalled)
    tb.check_responses(stalled, expected_stalled, len(full))
    assert tb.sink.held > 0 and tb.source.held > 0, (
        f"{p.tag()} back-pressure never reached the unit (resp held {tb.sink.held} cycles, "
        f"req held {tb.source.held}): the stalled phase tested nothing")

    tb.stalls(on=False)
    total = len(full) + len(stalled)
    await ClockCycles(dut.clk, TAIL_CYCLES)
    if len(tb.sink.beats) != total:
        raise tb.fail(f"{len(tb.sink.beats)} responses came out for {total} rows: "
                      "something was duplicated")
    stalls = golden_stalls(p, Rows(np.concatenate([full.indices, stalled.indices]),
                                   np.concatenate([full.masks, stalled.masks])),
                           np.concatenate([cycles_full, cycles_stalled]))
    counted = int(dut.stall_cycles.value)
    assert counted == stalls, (
        f"{p.tag()} stall_cycles = {counted}, the golden schedule gives {stalls} "
        f"({int(np.sum(cycles_full - 1))} in the full-rate phase)")
    dut._log.info("gather: %d rows, %d stall cycles, %d cycles, resp held %d, req held %d",
                  total, counted, tb.clock.cycle, tb.sink.held, tb.source.held)
