"""AXI4-Stream glue between cocotbext-axi and the wire formats of DESIGN §4.

The core's beats are not made of bytes: ``lanes * act_width`` bits need not be a multiple
of 8. cocotbext-axi cuts a bus without ``tkeep`` into ``byte_lanes`` equal "bytes"
(``byte_size = width // byte_lanes``); with ``byte_lanes=1`` one "byte" is a whole beat, of
any width, and a frame's ``tdata`` is simply the list of beat integers. Packing those
integers is the golden packers' job (:mod:`bbsparse.golden.csb`); this module only wraps
them into frames and sets up the bus functional models and their stall patterns.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from ..golden import csb

__all__ = [
    "backpressure",
    "idle_cycles",
    "scramble_slots",
    "sink",
    "source",
    "w_frame",
    "x_frame",
    "y_values",
]


def source(dut, prefix: str, reset=None) -> AxiStreamSource:
    """An AXI4-Stream source driving ``<prefix>_tdata/tvalid/tready/tlast``, one beat a word."""
    bus = AxiStreamBus.from_prefix(dut, prefix)
    return AxiStreamSource(bus, dut.clk, reset, reset_active_level=True, byte_lanes=1)


def sink(dut, prefix: str, reset=None) -> AxiStreamSink:
    """An AXI4-Stream sink on ``<prefix>_…``; each received frame's tdata is a beat list."""
    bus = AxiStreamBus.from_prefix(dut, prefix)
    return AxiStreamSink(bus, dut.clk, reset, reset_active_level=True, byte_lanes=1)


def x_frame(cfg, x) -> AxiStreamFrame:
    """The x frame of one vector (``x_beats`` beats, lane-transposed)."""
    return AxiStreamFrame([int(v) for v in csb.x_beat_ints(cfg, csb.pack_x(cfg, x))])


def w_frame(cfg, W, rng: np.random.Generator | None = None) -> AxiStreamFrame:
    """The w frame (CSB) of one matrix: ``row_groups(rows) * cycles_per_row`` beats.

    With `rng`, the frame uses the freedom DESIGN §4 leaves the sender: the slots of each
    bank come in a random order and every zero-valued slot carries a random index (any
    ``index_width``-bit value, also past ``bank_size``). The core must give the same y.
    """
    values, indices = csb.pack_w(cfg, W)
    if rng is not None:
        values, indices = scramble_slots(cfg, values, indices, rng)
        # The scrambled frame must still describe W exactly (checks the scrambler).
        same = csb.unpack_w(cfg, values, indices, W.shape[0], W.shape[1])
        assert np.array_equal(same, W), "scramble_slots changed the matrix"
    return AxiStreamFrame([int(v) for v in csb.w_beat_ints(cfg, values, indices)])


def scramble_slots(cfg, values, indices, rng: np.random.Generator):
    """Shuffle the slots inside every bank of a CSB frame and randomise empty slots' indices."""
    beats, entries = values.shape
    # Beat g*cycles_per_row + round*nnz + slot: the slot axis is the third one here.
    shape = (beats // cfg.cycles_per_row, cfg.rounds, cfg.nnz_per_bank, entries)
    order = np.argsort(rng.random(shape), axis=2)
    values = np.take_along_axis(values.reshape(shape), order, axis=2).reshape(beats, entries)
    indices = np.take_along_axis(indices.reshape(shape), order, axis=2).reshape(beats, entries)
    noise = rng.integers(0, 1 << cfg.index_width, size=indices.shape)
    return values, np.where(values == 0, noise, indices)


def y_values(cfg, frame: AxiStreamFrame, rows: int) -> np.ndarray:
    """The results ``(rows,)`` carried by one received y frame (padding rows dropped)."""
    return csb.unpack_y(cfg, [int(v) for v in frame.tdata], rows)


# -- stall patterns (for set_pause_generator: True = pause this cycle) ---------------------


def idle_cycles(rng: random.Random, probability: float, max_run: int = 1) -> Iterator[bool]:
    """Random idle cycles: with `probability` a run of 1..`max_run` paused cycles starts."""
    while True:
        if probability > 0 and rng.random() < probability:
            yield from [True] * rng.randint(1, max_run)
        yield False


def backpressure(rng: random.Random, stall: float, burst: float,
                 burst_len: tuple[int, int] = (50, 200), first_burst: int = 0) -> Iterator[bool]:
    """Back-pressure for a sink: not ready with probability `stall` each cycle, and with
    probability `burst` a long burst of ``burst_len`` (inclusive range) not-ready cycles.
    `first_burst` cycles of not-ready come first, so the core's output buffer is sure to
    fill and the input streams to be held back at least once."""
    yield from [True] * first_burst
    while True:
        if burst > 0 and rng.random() < burst:
            yield from [True] * rng.randint(*burst_len)
        yield stall > 0 and rng.random() < stall
