"""cocotb testbench of the board top `bbs_board` (:class:`bbsparse.hdl.board.BoardTop`): the
whole serial path, host driver included.

- driver and monitor: cocotbext-uart's ``UartSource`` on ``rx`` and ``UartSink`` on ``tx``
  (8N1 at the top's bit time), wrapped as an async byte transport (:class:`UartTransport`,
  with random pauses between request bytes) for :class:`bbsparse.host.AsyncHost`: the
  same driver code (framing, CSB packing with the golden packers, reply parsing, error
  statuses) that talks to a real board over pyserial;
- model: :func:`bbsparse.golden.spmv.spmv`;
- checker: every y read back over the link equals the model; the cycle count the board
  reports is exactly ``x_beats + w_beats + latency`` (the core's stall-free figure: the
  link feeds it a beat every cycle); every error request is answered with its status, and
  the link then still works.

The parameters (configuration, divisor, memory size, timeout, latency, seed) arrive as JSON
in :data:`bbsparse.tb.cocotb_run.PARAMS_ENV`; assertion messages start with the seed.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, Timer, with_timeout
from cocotbext.uart import UartSink, UartSource

from ..golden.arith import signed_range
from ..golden.config import Config
from ..golden.prune import prune_bbs
from ..golden.spmv import spmv
from ..host import AsyncHost, BoardError, Command, Flags, Status, beat_bytes, frame
from .cocotb_run import PARAMS_ENV

PERIOD_NS = 10
RESET_CYCLES = 5


@dataclass(frozen=True)
class Params:
    cfg: Config
    divisor: int
    max_w_beats: int
    timeout_cycles: int
    latency: int
    seed: int

    @classmethod
    def from_env(cls) -> Params:
        raw = json.loads(os.environ[PARAMS_ENV])
        return cls(cfg=Config(**raw.pop("config")), **raw)

    def tag(self) -> str:
        return f"[seed {self.seed}]"


class UartTransport:
    """An async byte transport over cocotbext-uart: ``write`` sends bytes on the source,
    now and then pausing between two bytes (probability `gap` after a byte, for up to
    `gap_ns`, at any fraction of a bit: the receiver must find each start bit wherever it
    falls); ``read(n)`` returns up to `n` bytes, fewer if none arrives for `timeout_ns`."""

    def __init__(self, source: UartSource, sink: UartSink, timeout_ns: int,
                 rng: random.Random, gap: float = 0.0, gap_ns: int = 0):
        self.source = source
        self.sink = sink
        self.timeout_ns = timeout_ns
        self.rng = rng
        self.gap = gap
        self.gap_ns = gap_ns
        self._buffer = bytearray()

    async def write(self, data: bytes) -> None:
        # Like a blocking serial write: back when the bytes are out, so that the read
        # timeout that follows counts from the end of the request.
        chunk = bytearray()
        for byte in data:
            chunk.append(byte)
            if self.gap and self.rng.random() < self.gap:
                await self.source.write(chunk)
                await self.source.wait()
                await Timer(self.rng.randint(1, self.gap_ns), "ns")
                chunk.clear()
        await self.source.write(chunk)
        await self.source.wait()

    async def read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            try:
                self._buffer += await with_timeout(self.sink.read(), self.timeout_ns, "ns")
            except SimTimeoutError:
                break
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def pending(self) -> int:
        return len(self._buffer) + self.sink.count()


async def open_uart(dut, *, divisor: int, bound_cycles: int, seed: int,
                    gap: float = 0.0) -> UartTransport:
    """Start the clock, reset the board top `dut` (``bbs_board``) and return a byte
    transport over its pins: 8N1 at `divisor` clock cycles a bit, a read giving up after
    `bound_cycles` cycles of silence, pauses of up to 3 bit times between request bytes
    with probability `gap` (far below the link's timeout)."""
    for name in ("cocotb.bbs_board.rx", "cocotb.bbs_board.tx"):
        logging.getLogger(name).setLevel(logging.WARNING)  # one line per byte otherwise
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    baud = 1e9 / (divisor * PERIOD_NS)
    source = UartSource(dut.rx, baud=baud, bits=8, stop_bits=1)
    sink = UartSink(dut.tx, baud=baud, bits=8, stop_bits=1)
    dut.rst.value = 1
    await ClockCycles(dut.clk, RESET_CYCLES)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    return UartTransport(source, sink, timeout_ns=bound_cycles * PERIOD_NS,
                         rng=random.Random(seed), gap=gap, gap_ns=3 * divisor * PERIOD_NS)


async def start(dut, p: Params, gap: float = 0.0) -> tuple[AsyncHost, UartTransport]:
    # The longest silence of a correct reply: a run of the whole weight memory, or the
    # link's own timeout; then some.
    bound = 4 * (p.timeout_cycles + p.max_w_beats + p.cfg.x_beats)
    transport = await open_uart(dut, divisor=p.divisor, bound_cycles=bound, seed=p.seed,
                                gap=gap)
    return AsyncHost(transport, p.cfg), transport


def random_matrix(p: Params, rng: np.random.Generator, rows: int, cols: int | None = None):
    lo, hi = signed_range(p.cfg.weight_width)
    W = rng.integers(lo, hi + 1, size=(rows, cols or p.cfg.cols))
    if cols is None or cols % p.cfg.bank_size == 0:
        return prune_bbs(W, p.cfg.bank_size, p.cfg.nnz_per_bank)
    padded = np.zeros((rows, -(-cols // p.cfg.bank_size) * p.cfg.bank_size), dtype=W.dtype)
    padded[:, :cols] = W
    return prune_bbs(padded, p.cfg.bank_size, p.cfg.nnz_per_bank)[:, :cols]


def random_vector(p: Params, rng: np.random.Generator, kind: str = "random"):
    lo, hi = signed_range(p.cfg.act_width)
    if kind == "min":
        return np.full(p.cfg.cols, lo, dtype=np.int64)
    if kind == "max":
        return np.full(p.cfg.cols, hi, dtype=np.int64)
    return rng.integers(lo, hi + 1, size=p.cfg.cols)


async def expect_error(host: AsyncHost, operation, status: Status, tag: str) -> None:
    try:
        await operation
    except BoardError as error:
        assert error.status == status, f"{tag} expected {status.name}, got: {error}"
    else:
        raise AssertionError(f"{tag} expected {status.name}, the board answered OK")


def w_beats_of(cfg: Config, rows: int) -> int:
    return cfg.row_groups(rows) * cfg.cycles_per_row


@cocotb.test()
async def board_spmv(dut):
    """Load W once, then several vectors: y and the cycle count of every run exact."""
    p = Params.from_env()
    tag = p.tag()
    rng = np.random.default_rng(p.seed)
    host, _ = await start(dut, p, gap=0.1)
    cfg = p.cfg

    info = await host.check()
    assert info.max_w_beats == p.max_w_beats, f"{tag} INFO max_w_beats {info.max_w_beats}"
    flags, w_beats = await host.status()
    assert flags == Flags(0) and w_beats == 0, f"{tag} fresh board: {flags!r}, {w_beats}"
    await expect_error(host, host.run(), Status.BAD_STATE, f"{tag} RUN with nothing loaded:")
    await expect_error(host, host.read_y(4), Status.BAD_STATE, f"{tag} READ_Y before a run:")

    # Rows not a multiple of pes: the last row group is padded, its padding row ignored.
    rows = 2 * cfg.pes * 3 - 1
    W = random_matrix(p, rng, rows)
    w_beats = await host.load_weights(W)
    assert w_beats == w_beats_of(cfg, rows), f"{tag} {w_beats} w beats for {rows} rows"
    await expect_error(host, host.run(), Status.BAD_STATE, f"{tag} RUN without x:")
    for k, kind in enumerate(("random", "random", "min", "max")):
        x = random_vector(p, rng, kind)
        y, cycles = await host.spmv(x)
        expected = spmv(cfg, W, x)
        assert np.array_equal(y, expected), (
            f"{tag} vector {k} ({kind}) with the stored weights: board y {y.tolist()}, "
            f"golden {expected.tolist()}")
        ideal = cfg.x_beats + w_beats + p.latency
        assert cycles == ideal, (f"{tag} vector {k}: {cycles} cycles, expected x_beats "
                                 f"{cfg.x_beats} + w beats {w_beats} + latency {p.latency}")
        dut._log.info("vector %d (%s): %d rows exact, %d cycles", k, kind, rows, cycles)
    flags, stored = await host.status()
    assert flags == Flags.W_LOADED | Flags.X_LOADED | Flags.Y_VALID and stored == w_beats, \
        f"{tag} after the runs: {flags!r}, {stored} w beats"
    assert int(dut.failed.value) == 0 and int(dut.busy.value) == 0, f"{tag} LEDs"

    # The whole weight memory, and a matrix narrower than cols (zero-padded by the packer).
    rows = p.max_w_beats // cfg.cycles_per_row * cfg.pes
    W = random_matrix(p, rng, rows, cols=cfg.cols - cfg.bank_size + 1)
    assert await host.load_weights(W) == p.max_w_beats
    x = random_vector(p, rng)[: W.shape[1]]
    y, cycles = await host.spmv(x)
    expected = spmv(cfg, W, x)
    assert np.array_equal(y, expected), (f"{tag} full weight memory ({rows} rows): board y "
                                         f"{y.tolist()}, golden {expected.tolist()}")
    assert cycles == cfg.x_beats + p.max_w_beats + p.latency, f"{tag} {cycles} cycles"
    dut._log.info("full weight memory: %d rows exact, %d cycles", rows, cycles)


@cocotb.test()
async def board_errors(dut):
    """Every malformed request is answered with its error status, and the link goes on."""
    p = Params.from_env()
    tag = p.tag()
    rng = np.random.default_rng(p.seed + 1)
    host, transport = await start(dut, p)
    cfg = p.cfg
    w_bytes = beat_bytes(cfg.w_beat_width)
    x_bytes = beat_bytes(cfg.x_beat_width)

    async def raw(data: bytes, status: Status, what: str) -> None:
        got = await host.raw(data)
        assert got == status, f"{tag} {what}: expected {status.name}, got status {got}"
        assert int(dut.failed.value) == (status != Status.OK), f"{tag} {what}: failed LED"

    # A command the board does not know, with a payload it must skip.
    await raw(frame(0x7E, 5, bytes(range(5))), Status.BAD_COMMAND, "unknown command")
    # Lengths a command does not allow; the payload is read (and dropped) all the same.
    too_many = p.max_w_beats + cfg.cycles_per_row
    await raw(frame(Command.LOAD_W, too_many, bytes(too_many * w_bytes)), Status.BAD_LENGTH,
              "LOAD_W beyond the weight memory")
    await raw(frame(Command.LOAD_W, 0), Status.BAD_LENGTH, "LOAD_W of no beat")
    if cfg.cycles_per_row > 1:
        await raw(frame(Command.LOAD_W, 1, bytes(w_bytes)), Status.BAD_LENGTH,
                  "LOAD_W of a partial row group")
    await raw(frame(Command.LOAD_X, cfg.x_beats - 1, bytes((cfg.x_beats - 1) * x_bytes)),
              Status.BAD_LENGTH, "LOAD_X of a short vector")
    await raw(frame(Command.RUN, 2, b"\x00\x00"), Status.BAD_LENGTH, "RUN with a payload")
    await raw(frame(Command.INFO, 1, b"\x00"), Status.BAD_LENGTH, "INFO with a payload")
    flags, _ = await host.status()
    assert not flags & (Flags.W_LOADED | Flags.X_LOADED), f"{tag} failed loads: {flags!r}"
    await expect_error(host, host.run(), Status.BAD_STATE, f"{tag} RUN after failed loads:")

    # A frame cut short: the board gives up after timeout_cycles and answers TIMEOUT.
    W = random_matrix(p, rng, cfg.pes)
    await transport.write(frame(Command.LOAD_W, cfg.cycles_per_row, bytes(3)))
    status = await transport.read(1)
    assert status == bytes([Status.TIMEOUT]), f"{tag} truncated frame: got {status!r}"
    await raw(frame(Command.STATUS, 0), Status.OK, "STATUS after a timeout")
    assert await transport.read(3) == bytes([0, 0, 0]), f"{tag} STATUS data after timeout"

    # A byte with a low stop bit is dropped and flagged.
    bit_ns = p.divisor * PERIOD_NS
    for level in [0] + [1, 0] * 4 + [0]:  # start, 0x55, a low stop bit
        dut.rx.value = level
        await Timer(bit_ns, "ns")
    dut.rx.value = 1
    await Timer(2 * bit_ns, "ns")
    flags, _ = await host.status()
    assert flags & Flags.RX_FRAMING, f"{tag} framing error not flagged: {flags!r}"

    # After all that, a full SpMV still works.
    await host.load_weights(W)
    x = random_vector(p, rng)
    y, _ = await host.spmv(x)
    expected = spmv(cfg, W, x)
    assert np.array_equal(y, expected), f"{tag} after the errors: {y.tolist()} != " \
                                        f"{expected.tolist()}"
    assert transport.pending() == 0, f"{tag} {transport.pending()} stray reply bytes"
