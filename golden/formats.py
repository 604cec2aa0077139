"""The wire formats of the engines, one object each: the golden half of the engine registry.

The configuration key ``pattern`` names the engine (DESIGN §9), and with it the format its
streams carry. Everything that differs between engines on the golden side is a method of
that engine's :class:`WireFormat`: the configuration rules it adds, the derived beat sizes,
the packers that turn a matrix and vectors into ``tdata`` words, the check that a matrix
follows the pattern, and the golden cycle model of one w frame. :class:`~bbsparse.golden.
config.Config` and every caller ask :func:`format_of` instead of testing the name; the
hardware half (core class, latency, memories) is :mod:`bbsparse.hdl.engines`.

Adding an engine: write its format here (and its packer module), register it in
:data:`FORMATS`, and its core in :mod:`bbsparse.hdl.engines`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import cbs, csb, cycles, unstructured
from .arith import clog2
from .prune import check_bbs

__all__ = ["FORMATS", "PackedRun", "WireFormat", "format_of"]


@dataclass
class PackedRun:
    """A matrix and a batch of vectors as the streams carry them, with the golden model's
    figures for that stream."""
    x_words: list[int]
    w_words: list[int]
    #: Multiply-accumulates that belong to the matrix, over the whole batch.
    useful_macs: int
    #: Cycles the golden model gives one w frame (its beats, plus any crossbar stall).
    stream_cycles: int
    #: Cycles the last w beat of a frame takes beyond the one in which it is accepted.
    last_beat_extra: int = 0
    #: Engine-specific report entries (the stream order, for instance).
    report: dict = field(default_factory=dict)
    #: Beats of each vector's w frame when the frames differ from vector to vector
    #: (`w_words` then holds them in turn); None: one frame, sent once per vector.
    w_frame_beats: list[int] | None = None


class WireFormat:
    """What an engine's streams carry. Subclasses override every method."""

    #: The value of the ``pattern`` key.
    name: str = ""
    #: One line for help texts and ``bbsparse generate``.
    summary: str = ""
    #: Every row of a matrix takes the same number of w beats (``cycles_per_row``): the
    #: board's weight memory and the layer chain rely on it.
    fixed_row_length: bool = False
    #: The core keeps a cycle counter of its own stalls (reported as crossbar stall cycles).
    counts_stalls: bool = False
    #: The per-lane choices of DESIGN §2.1 the engine's core honours (``lut_multipliers``:
    #: its products go through the shared MAC array; ``lutram_banks``: its vector banks are
    #: the banked memories of §3.1; ``product_registers``, ``mixed_product_registers``,
    #: ``operand_registers``, ``result_registers``: its multipliers and results are the
    #: shared MAC array's; ``broadcast_registers``: its vector banks are written and
    #: addressed by broadcasts from one control). Any other must stay 0.
    lane_choices: tuple = ()

    def check(self, cfg):
        """Rules this engine adds to DESIGN §2: ``(parameter, ok, rule)`` triples."""
        return ()

    def accumulator_terms(self, cfg) -> int:
        """Products one row can add up: sets the default ``acc_width``."""
        raise NotImplementedError

    def x_beats(self, cfg) -> int:
        raise NotImplementedError

    def index_width(self, cfg) -> int:
        raise NotImplementedError

    def w_flag_bits(self, cfg) -> int:
        """Bits of a w beat above its ``pes * lanes`` entries."""
        return 0

    def weights_violation(self, cfg, W) -> str | None:
        """Why matrix `W` cannot run on this engine (naming the first row and bank), or None."""
        return None

    def pack(self, cfg, W, X, **options) -> PackedRun:
        """W ``(rows, cols)`` and X ``(batch, cols)`` as ``tdata`` words, a batch's x frames
        in turn; the w frame is sent once per vector."""
        raise NotImplementedError

    def describe(self, cfg, derived: dict) -> None:
        """Adjust the ``derived`` figures of ``bbsparse generate``'s JSON in place."""

    def outline(self, cfg) -> str:
        """The pattern's parameters in a few words, for one-line summaries."""
        raise NotImplementedError


class BBSFormat(WireFormat):
    """Bank-balanced sparse weights in CSB form and the lane-transposed x (DESIGN §3-4)."""

    name = "bbs"
    summary = "bank-balanced sparse core (CSB w stream, lane-transposed x, DESIGN §3-4)"
    fixed_row_length = True
    lane_choices = ("lut_multipliers", "lutram_banks", "product_registers",
                    "mixed_product_registers", "operand_registers", "broadcast_registers",
                    "result_registers")

    def accumulator_terms(self, cfg) -> int:
        return cfg.nnz_per_row

    def x_beats(self, cfg) -> int:
        return cfg.rounds * cfg.bank_size

    def index_width(self, cfg) -> int:
        return max(1, clog2(cfg.bank_size))

    def outline(self, cfg) -> str:
        return (f"bank {cfg.bank_size} nnz {cfg.nnz_per_bank}, cols {cfg.cols}; "
                f"{cfg.cycles_per_row} cycles per row")

    def weights_violation(self, cfg, W) -> str | None:
        cols = np.shape(W)[1]
        if cols % cfg.bank_size:
            return f"{cols} columns are not a multiple of bank_size ({cfg.bank_size})"
        violation = check_bbs(W, cfg.bank_size, cfg.nnz_per_bank)
        return None if violation is None else violation.message

    def pack(self, cfg, W, X, **options) -> PackedRun:
        values, indices = csb.pack_w(cfg, W)
        w_words = csb.w_beat_ints(cfg, values, indices)
        x_words = csb.x_beat_ints(cfg, csb.pack_x(cfg, X))
        return PackedRun(x_words, w_words, cycles.useful_macs(cfg, W.shape[0], X.shape[0]),
                         stream_cycles=len(w_words))


class UnstructuredFormat(WireFormat):
    """Row-wise compressed weights with column indices, x in column order (DESIGN §9)."""

    name = "unstructured"
    summary = ("unstructured engine: the same PEs behind a crossbar gather (row-wise "
               "compressed w stream, DESIGN §9)")
    counts_stalls = True
    lane_choices = ("lut_multipliers", "product_registers", "mixed_product_registers",
                    "operand_registers", "result_registers")

    def check(self, cfg):
        return (("lanes", cfg.lanes & (cfg.lanes - 1) == 0,
                 "must be a power of two for pattern 'unstructured' (the crossbar routes "
                 "column j to bank j mod lanes)"),)

    def accumulator_terms(self, cfg) -> int:
        return cfg.cols

    def x_beats(self, cfg) -> int:
        return -(-cfg.cols // cfg.lanes)

    def outline(self, cfg) -> str:
        return f"unstructured, cols {cfg.cols}; a row takes as many beats as its nonzeros need"

    def index_width(self, cfg) -> int:
        return max(1, clog2(cfg.cols))

    def w_flag_bits(self, cfg) -> int:
        return 1  # the group-end bit

    def pack(self, cfg, W, X, order: str = "banks", **options) -> PackedRun:
        values, columns, group_end = unstructured.pack_w(cfg, W, order)
        lengths = unstructured.beat_cycles(cfg, values, columns)
        return PackedRun(
            x_words=unstructured.x_beat_ints(cfg, unstructured.pack_x(cfg, X)),
            w_words=unstructured.w_beat_ints(cfg, values, columns, group_end),
            useful_macs=X.shape[0] * int(np.count_nonzero(W)),
            stream_cycles=int(lengths.sum()),
            # Steady state is measured between beat acceptances: the crossbar's extra
            # cycles on the very last beat come after its acceptance.
            last_beat_extra=int(lengths[-1]) - 1,
            report={"unstructured_order": order})

    def describe(self, cfg, derived: dict) -> None:
        for key in ("banks_per_row", "nnz_per_row", "rounds", "cycles_per_row", "density",
                    "ideal_speedup"):
            del derived[key]  # BBS figures; an unstructured row has no fixed length
        derived["x_order"] = "beat t, lane l holds x[t*lanes + l]"
        derived["w_group_end_bit"] = cfg.w_beat_width - 1


class CBSFormat(WireFormat):
    """Column-bank-balanced weights, one column per nonzero activation (DESIGN §9.4)."""

    name = "cbs"
    summary = ("column engine: column-bank-balanced weights, zero activations skipped "
               "(header + nonzero columns on w, DESIGN §9.4)")

    def check(self, cfg):
        rg_bits, round_bits = cbs.header_bits(cfg)
        entries = cfg.pes * cfg.lanes * cfg.w_entry_width
        return (
            ("bank_size", cfg.bank_size % cfg.pes == 0,
             f"must be a multiple of pes ({cfg.pes}) for pattern 'cbs' (a row group's rows "
             f"share one bank and one address of the accumulators)"),
            ("lanes", rg_bits + round_bits <= entries,
             f"must leave room for the cbs header ({rg_bits + round_bits} bits) in the "
             f"{entries} entry bits of a w beat"),
        )

    def accumulator_terms(self, cfg) -> int:
        return cfg.cols  # a row may meet every column

    def x_beats(self, cfg) -> int:
        return -(-cfg.cols // cfg.lanes)

    def index_width(self, cfg) -> int:
        return max(1, clog2(cfg.bank_size))

    def outline(self, cfg) -> str:
        return (f"cbs: column banks of {cfg.bank_size} rows, {cfg.nnz_per_bank} kept; "
                f"{cbs.column_rounds(cfg, cfg.cols) * cfg.nnz_per_bank} beats per nonzero "
                f"activation at {cfg.cols} rows")

    def weights_violation(self, cfg, W) -> str | None:
        rows = np.shape(W)[0]
        if rows > cfg.cols:
            return (f"{rows} rows; the cbs accumulators hold at most cols = {cfg.cols} rows")
        violation = cbs.check_cbs(W, cfg.bank_size, cfg.nnz_per_bank)
        return None if violation is None else violation.message

    def pack(self, cfg, W, X, **options) -> PackedRun:
        frames = cbs.pack_w_frames(cfg, W, X)
        nonzeros = [int(np.count_nonzero(x)) for x in np.atleast_2d(X)]
        timing = cbs.run_cycles(cfg, W.shape[0], nonzeros)
        beats = [len(frame) for frame in frames]
        x_beats = cfg.x_beats
        # Ideal: x loads hide behind the previous matrix; the last matrix's y leaves one
        # row group a cycle after its last column.
        ideal = x_beats + sum(beats) + sum(max(0, x_beats - f) for f in beats[:-1]) \
            + cfg.row_groups(W.shape[0])
        return PackedRun(
            x_words=cbs.x_beat_ints(cfg, cbs.pack_x(cfg, X)),
            w_words=[word for frame in frames for word in frame],
            useful_macs=cbs.useful_macs(cfg, W.shape[0], X),
            stream_cycles=sum(beats),
            w_frame_beats=beats,
            # As for every engine, the model's cycles without the latency of §14 (here the
            # drain and the read-out, DESIGN §9.4): a run takes this plus the latency.
            report={"predicted_cycles": timing.cycles - cbs.DRAIN - cbs.READOUT_LATENCY,
                    "predicted_steady_cycles": timing.steady_cycles,
                    "ideal_cycles": ideal,
                    "ideal_steady_cycles": sum(beats),
                    "nonzero_activations": nonzeros,
                    "w_frame_beats": beats})

    def describe(self, cfg, derived: dict) -> None:
        for key in ("banks_per_row", "nnz_per_row", "rounds", "cycles_per_row"):
            del derived[key]  # BBS row figures; the column engine streams columns
        rg_bits, round_bits = cbs.header_bits(cfg)
        derived["x_order"] = "beat t, lane l holds x[t*lanes + l]"
        derived["column_lanes"] = cbs.column_lanes(cfg)
        derived["max_rows"] = cfg.cols
        derived["max_column_rounds"] = cbs.max_column_rounds(cfg)
        derived["header"] = {"row_groups_minus_1": [0, rg_bits],
                             "column_rounds_minus_1": [rg_bits, round_bits]}
        derived["latency_note"] = ("cycles from accepting the last w beat of a matrix to "
                                   "its first y beat being valid, with the y FIFO empty")


#: Every engine's wire format, by the value of the ``pattern`` key.
FORMATS: dict[str, WireFormat] = {f.name: f for f in (BBSFormat(), UnstructuredFormat(),
                                                      CBSFormat())}


def format_of(cfg) -> WireFormat:
    """The wire format of the engine `cfg` selects."""
    return FORMATS[cfg.pattern]
