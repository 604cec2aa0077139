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

from . import csb, cycles, unstructured
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


#: Every engine's wire format, by the value of the ``pattern`` key.
FORMATS: dict[str, WireFormat] = {f.name: f for f in (BBSFormat(), UnstructuredFormat())}


def format_of(cfg) -> WireFormat:
    """The wire format of the engine `cfg` selects."""
    return FORMATS[cfg.pattern]
