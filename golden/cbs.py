"""The column engine (``pattern = "cbs"``): column-bank-balanced weights, zero activations
skipped. Pattern check, packers, the bit-exact column dataflow and the exact cycle model.

Column-bank-balanced sparsity is BBS applied to the columns (DESIGN §9.4): every column of
W is cut into banks of ``bank_size`` consecutive rows and each bank keeps at most
``nnz_per_bank`` nonzeros, so ``cbs(W) = bbs(W.T).T``. The engine works column by column
(outer product): for every *nonzero* activation ``x[j]`` it streams column ``j``'s slots,
and lane ``m`` of the ``M = pes * lanes`` lanes adds ``w * x[j]`` into its own accumulator
memory, which holds the row banks ``m, m + M, m + 2M, ...``. Wire formats (DESIGN §9.4):

- **x**: as the unstructured engine's, ``x_beats = ceil(cols / lanes)`` beats in column
  order (beat ``t``, lane ``l`` is ``x[t*lanes + l]``). The core drops the zeros as the
  beats arrive and keeps the nonzeros, in column order, in a list.
- **w**: one frame per vector. Beat 0 is the **header**: ``row_groups - 1`` in bits
  ``[0, rg_bits)`` and ``column_rounds - 1`` in bits ``[rg_bits, rg_bits + round_bits)``.
  Then, for each nonzero ``x[j]`` in increasing ``j``, the ``column_rounds * nnz_per_bank``
  beats of column ``j``: beat ``s`` carries, at entry ``m`` (``m = p*lanes + l``), slot
  ``s % nnz_per_bank`` of row bank ``(s // nnz_per_bank) * M + m`` as ``value | index <<
  weight_width`` (``index`` the row inside the bank). The columns of zero activations are
  not sent: the host (or the DMA that fetches W) skips them. ``tlast`` on the last beat
  (the header itself when x holds no nonzero).
- **y**: as every engine's: one beat of ``pes`` results per row group, ``tlast`` on the last.

Everything here is plain NumPy; the numbers the RTL's timing rests on are the constants
below, which :mod:`bbsparse.hdl.cbs` is built to and checked against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arith import as_integers, check_signed, clog2, output_stage, wrap
from .csb import PatternError, w_beat_ints
from .prune import check_bbs
from .unstructured import column_order_x, x_beat_ints

__all__ = [
    "DRAIN",
    "READOUT_LATENCY",
    "ColumnViolation",
    "RunCycles",
    "check_cbs",
    "column_lanes",
    "column_rounds",
    "column_slots",
    "column_spmv",
    "frame_beats",
    "header_bits",
    "header_word",
    "max_column_rounds",
    "pack_w_frames",
    "pack_x",
    "run_cycles",
    "useful_macs",
    "x_beat_ints",
]

#: Cycles from accepting a matrix's last w beat to the first read-out read of its
#: accumulators: the list read (1), the multiplier (2) and the read of the read-modify-write
#: (1); the last sum is written in the cycle the read-out may first read (the read port is
#: transparent).
DRAIN = 4
#: Cycles from a row group's read-out read to its y beat on ``m_axis_y``: memory read (1),
#: lane select register (1), output stage (2), y FIFO (2).
READOUT_LATENCY = 6


# -- shape of the column stream ------------------------------------------------------------


def column_lanes(cfg) -> int:
    """M: the lanes over which a column's row banks are spread, ``pes * lanes``."""
    return cfg.pes * cfg.lanes


def column_rounds(cfg, rows: int) -> int:
    """Passes of the M lanes over the row banks of a column of `rows` rows."""
    banks = -(-rows // cfg.bank_size)
    return max(1, -(-banks // column_lanes(cfg)))


def max_column_rounds(cfg) -> int:
    """Column rounds of the tallest matrix the accumulators hold (``cols`` rows)."""
    return column_rounds(cfg, cfg.cols)


def max_row_groups(cfg) -> int:
    return -(-cfg.cols // cfg.pes)


def header_bits(cfg) -> tuple[int, int]:
    """(bits of ``row_groups - 1``, bits of ``column_rounds - 1``) in the header beat."""
    return max(1, clog2(max_row_groups(cfg))), max(1, clog2(max_column_rounds(cfg)))


def header_word(cfg, rows: int) -> int:
    """``tdata`` of the header beat of a matrix of `rows` rows."""
    rg_bits, _ = header_bits(cfg)
    return (cfg.row_groups(rows) - 1) | ((column_rounds(cfg, rows) - 1) << rg_bits)


def frame_beats(cfg, rows: int, nonzero_columns: int) -> int:
    """Beats of one w frame: the header and the beats of every nonzero activation's column."""
    return 1 + nonzero_columns * column_rounds(cfg, rows) * cfg.nnz_per_bank


# -- the pattern -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnViolation:
    """A column bank holding more nonzeros than the pattern allows (the first one found,
    column-major: column by column, banks top to bottom)."""

    column: int
    bank: int
    nonzeros: int
    allowed: int
    bank_size: int

    @property
    def message(self) -> str:
        first = self.bank * self.bank_size
        return (f"column {self.column}, bank {self.bank} (rows {first}.."
                f"{first + self.bank_size - 1}) holds {self.nonzeros} nonzeros; the pattern "
                f"allows {self.allowed}")

    def __str__(self) -> str:
        return self.message


def _pad_rows(W: np.ndarray, bank_size: int) -> np.ndarray:
    rows = W.shape[0]
    padded = np.zeros((-(-rows // bank_size) * bank_size, W.shape[1]), dtype=W.dtype)
    padded[:rows] = W
    return padded


def check_cbs(W, bank_size: int, nnz_per_bank: int) -> ColumnViolation | None:
    """None if every column bank of `W` holds at most `nnz_per_bank` nonzeros, else the
    first that does not. A last bank shorter than `bank_size` (rows not a multiple of it)
    is checked as if padded with zero rows."""
    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"the weights must be a 2-D matrix (rows, cols), not shape {W.shape}")
    violation = check_bbs(_pad_rows(W, bank_size).T, bank_size, nnz_per_bank)
    if violation is None:
        return None
    return ColumnViolation(violation.row, violation.bank, violation.nonzeros,
                           violation.allowed, bank_size)


# -- x ---------------------------------------------------------------------------------------


def pack_x(cfg, x) -> np.ndarray:
    """x fields ``(x_beats, lanes)`` (or ``(batch, x_beats, lanes)``) in column order."""
    return column_order_x(cfg, x)


# -- w ---------------------------------------------------------------------------------------


def _check_matrix(cfg, W) -> np.ndarray:
    W = as_integers(W, "W")
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] > cfg.cols or W.shape[0] > cfg.cols:
        raise ValueError(f"W must be (rows, cols) with 1 <= rows <= {cfg.cols} and cols <= "
                         f"{cfg.cols} (the accumulators hold cols rows), not shape {W.shape}")
    check_signed(W, cfg.weight_width, "W", "weight_width")
    violation = check_cbs(W, cfg.bank_size, cfg.nnz_per_bank)
    if violation is not None:
        raise PatternError(violation.message)
    return W


def column_slots(cfg, W) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices) of every column's beats: ``(cols_w, column_rounds * nnz, M)``.

    Beat ``s`` of a column carries, at entry ``m``, slot ``s % nnz_per_bank`` of row bank
    ``(s // nnz_per_bank) * M + m``. The nonzeros of a bank fill its slots in increasing row
    order; unused slots (and the padding banks past the matrix) are value 0, index 0.
    """
    W = _check_matrix(cfg, W)
    rows, cols_w = W.shape
    lanes, n, bank = column_lanes(cfg), cfg.nnz_per_bank, cfg.bank_size
    rounds = column_rounds(cfg, rows)
    padded = np.zeros((rounds * lanes * bank, cols_w), dtype=np.int64)
    padded[:rows] = W
    banks = padded.T.reshape(cols_w, rounds * lanes, bank)
    # A stable sort on "is zero" puts a bank's nonzeros first, in increasing row order.
    order = np.argsort(banks == 0, axis=-1, kind="stable")[..., :n]
    values = np.take_along_axis(banks, order, axis=-1)
    indices = np.where(values != 0, order, 0)
    # (cols, rounds, M, n) -> (cols, rounds, n, M): beat round*n + slot, entry m.
    shape = (cols_w, rounds, lanes, n)
    values = values.reshape(shape).transpose(0, 1, 3, 2).reshape(cols_w, rounds * n, lanes)
    indices = indices.reshape(shape).transpose(0, 1, 3, 2).reshape(cols_w, rounds * n, lanes)
    return values, indices


def pack_w_frames(cfg, W, X) -> list[list[int]]:
    """One w frame (``tdata`` words) per vector of `X` ``(batch, cols_w)``: the header, then
    the beats of the columns of the vector's nonzero activations, in column order."""
    values, indices = column_slots(cfg, W)
    X = np.atleast_2d(as_integers(X, "X"))
    column_words = [w_beat_ints(cfg, values[j], indices[j]) for j in range(values.shape[0])]
    header = header_word(cfg, W.shape[0])
    frames = []
    for x in X:
        frame = [header]
        for j in np.flatnonzero(x[:values.shape[0]]):
            frame += column_words[j]
        frames.append(frame)
    return frames


def unpack_frame(cfg, words, x, cols_w: int) -> np.ndarray:
    """The columns of W a frame carries (zero where x is zero): inverse of
    :func:`pack_w_frames` for one vector. Slots of one bank that share an index add up."""
    from .csb import w_fields_from_ints

    rg_bits, round_bits = header_bits(cfg)
    header = int(words[0])
    row_groups = (header & ((1 << rg_bits) - 1)) + 1
    rounds = ((header >> rg_bits) & ((1 << round_bits) - 1)) + 1
    lanes, n, bank = column_lanes(cfg), cfg.nnz_per_bank, cfg.bank_size
    per_column = rounds * n
    W = np.zeros((rounds * lanes * bank, cols_w), dtype=np.int64)
    columns = np.flatnonzero(np.asarray(x)[:cols_w])
    if len(words) != 1 + len(columns) * per_column:
        raise ValueError(f"a frame of {len(words)} beats; {len(columns)} nonzero columns of "
                         f"{per_column} beats and the header make {1 + len(columns) * per_column}")
    if len(columns):
        values, indices = w_fields_from_ints(cfg, words[1:])
        for k, j in enumerate(columns):
            for s in range(per_column):
                beat = k * per_column + s
                for m in range(lanes):
                    if values[beat, m]:
                        row = ((s // n) * lanes + m) * bank + indices[beat, m]
                        W[row, j] += values[beat, m]
    return W[:row_groups * cfg.pes]


# -- the result and the cycles ----------------------------------------------------------------


def column_spmv(cfg, W, x) -> np.ndarray:
    """y computed the way the engine does: per nonzero activation, column by column, each
    product added into its row's accumulator, which wraps at ``acc_width`` after every add.
    Equal to :func:`bbsparse.golden.spmv.spmv` (wrapping is a ring homomorphism); kept as
    the dataflow's own statement and checked against it."""
    W = as_integers(W, "W").astype(object)
    x = as_integers(x, "x").astype(object)
    acc = np.zeros(W.shape[0], dtype=object)
    for j in np.flatnonzero(x != 0):
        acc = wrap(acc + W[:, j] * x[j], cfg.acc_width)
    return output_stage(acc, cfg).astype(np.int64) if cfg.out_width <= 64 \
        else output_stage(acc, cfg)


def useful_macs(cfg, rows: int, X) -> int:
    """Slots that meet a nonzero activation: every slot of every real bank of the columns
    the frames carry, ``sum over vectors of nnz(x) * ceil(rows / bank_size) * nnz_per_bank``."""
    X = np.atleast_2d(np.asarray(X))
    banks = -(-rows // cfg.bank_size)
    return int(np.count_nonzero(X)) * banks * cfg.nnz_per_bank


@dataclass
class RunCycles:
    """The cycle figures of a whole run, counted from the cycle the first x beat is
    accepted (cycle 0), without stalls on any stream."""

    cycles: int  # first x beat accepted to last y beat transferred, inclusive
    first_w: int  # the header of the first matrix
    last_w: int  # the last beat of the last matrix
    steady_cycles: int
    #: per matrix: cycle its header is accepted, its last w beat, its first and last read
    headers: list[int]
    ends: list[int]
    readouts: list[tuple[int, int]]


def run_cycles(cfg, rows: int, nonzero_columns: list[int]) -> RunCycles:
    """The exact cycles of the RTL (:mod:`bbsparse.hdl.cbs`) for one matrix of `rows` rows
    and one vector per entry of `nonzero_columns` (its count of nonzero activations), with x
    and w offered every cycle and y always ready.

    The rules, each one register or handshake of the RTL:

    - x frame ``k`` goes into list buffer ``k % 2`` at one beat a cycle, once that buffer is
      free: for ``k >= 2``, from the cycle after the last w beat of matrix ``k - 2``;
    - matrix ``k``'s header is taken in the cycle after the later of: its x frame's last
      beat, the previous matrix's last w beat, and (``k >= 2``) the last read-out read of
      matrix ``k - 2``, which frees the accumulator set ``k % 2``; the column beats follow
      back to back, ``column_rounds * nnz_per_bank`` per nonzero activation;
    - matrix ``k``'s read-out reads one row group a cycle, from :data:`DRAIN` cycles after
      its last w beat, and not before the read-out of matrix ``k - 1`` has made its last
      read; each y beat leaves :data:`READOUT_LATENCY` cycles after its read.
    """
    x_beats = cfg.x_beats
    per_column = column_rounds(cfg, rows) * cfg.nnz_per_bank
    groups = cfg.row_groups(rows)
    headers, ends, readouts, x_ends = [], [], [], []
    x_start = 0
    for k, nonzeros in enumerate(nonzero_columns):
        if k >= 1:
            x_start = x_ends[k - 1] + 1
        if k >= 2:
            x_start = max(x_start, ends[k - 2] + 1)
        x_ends.append(x_start + x_beats - 1)
        header = x_ends[k] + 1
        if k >= 1:
            header = max(header, ends[k - 1] + 1)
        if k >= 2:
            header = max(header, readouts[k - 2][1] + 1)
        headers.append(header)
        ends.append(header + nonzeros * per_column)
        first_read = ends[k] + DRAIN
        if k >= 1:
            first_read = max(first_read, readouts[k - 1][1] + 1)
        readouts.append((first_read, first_read + groups - 1))
    last_y = readouts[-1][1] + READOUT_LATENCY
    return RunCycles(cycles=last_y + 1, first_w=headers[0], last_w=ends[-1],
                     steady_cycles=ends[-1] - headers[0] + 1, headers=headers, ends=ends,
                     readouts=readouts)
